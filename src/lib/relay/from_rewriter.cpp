#include "leafmail/relay/from_rewriter.hpp"

#include <utility>
#include <vector>

namespace leafmail::relay {

namespace {

bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view trimmed(std::string_view text)
{
    while (!text.empty() && is_blank(text.front()))
        text.remove_prefix(1);
    while (!text.empty() && is_blank(text.back()))
        text.remove_suffix(1);
    return text;
}

// RFC 5322 section 3.2.4: a quoted-string, with '\' and '"' escaped.
std::string quoted(std::string_view text)
{
    std::string out = "\"";
    for (char c : text) {
        if (c == '\\' || c == '"')
            out += '\\';
        out += c;
    }
    return out + '"';
}

// One mailbox of a mailbox-list, split into what it says (RFC 5322 section 3.4).
struct mailbox_parts {
    std::string display;  // name-addr: the text before '<', as written
    std::string address;  // without angle brackets, comments or blanks
    std::string comments; // addr-spec: the text of its comments, the old-style display name
    bool is_name_addr = false;
};

// Splits `text` at top-level commas (outside quoted strings, comments and angle brackets).
// nullopt for an unbalanced text, or a group (RFC 5322 section 3.4 `group` has a ':').
std::optional<std::vector<std::string_view>> split_mailboxes(std::string_view text)
{
    std::vector<std::string_view> items;
    bool in_quotes = false;
    int comment_depth = 0;
    bool in_angle = false;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if ((in_quotes || comment_depth > 0) && c == '\\') {
            ++i; // quoted-pair
            continue;
        }
        if (in_quotes) {
            in_quotes = c != '"';
            continue;
        }
        if (c == '(')
            ++comment_depth;
        else if (c == ')' && comment_depth > 0)
            --comment_depth;
        else if (comment_depth > 0)
            continue;
        else if (c == '"')
            in_quotes = true;
        else if (c == '<' && !in_angle)
            in_angle = true;
        else if (c == '>' && in_angle)
            in_angle = false;
        else if (c == ':' && !in_angle)
            return std::nullopt;
        else if (c == ',' && !in_angle) {
            items.push_back(text.substr(start, i - start));
            start = i + 1;
        }
    }
    if (in_quotes || comment_depth > 0 || in_angle)
        return std::nullopt;
    items.push_back(text.substr(start));
    return items;
}

mailbox_parts parse_mailbox(std::string_view item)
{
    mailbox_parts parts;
    bool in_quotes = false;
    int comment_depth = 0;
    std::size_t angle = std::string_view::npos;
    std::string outside; // the text outside comments (and, for an addr-spec, the address)
    for (std::size_t i = 0; i < item.size(); ++i) {
        const char c = item[i];
        if (comment_depth > 0) {
            if (c == '\\' && i + 1 < item.size()) {
                parts.comments += item[++i];
                continue;
            }
            if (c == '(')
                ++comment_depth;
            else if (c == ')' && --comment_depth == 0)
                continue;
            parts.comments += c;
            continue;
        }
        if (in_quotes) {
            outside += c;
            if (c == '\\' && i + 1 < item.size())
                outside += item[++i];
            else if (c == '"')
                in_quotes = false;
            continue;
        }
        if (c == '"') {
            in_quotes = true;
            outside += c;
        } else if (c == '(') {
            if (!parts.comments.empty())
                parts.comments += ' ';
            comment_depth = 1;
        } else if (c == '<') {
            angle = i;
            break;
        } else if (!is_blank(c)) {
            outside += c;
        }
    }
    if (angle != std::string_view::npos) {
        parts.is_name_addr = true;
        parts.display = std::string(trimmed(item.substr(0, angle)));
        const auto close = item.find('>', angle);
        std::string_view inside = item.substr(angle + 1, close - angle - 1);
        // RFC 5322 section 4.4 obs-route ("@a,@b:user@c"): only the address counts.
        if (const auto colon = inside.rfind(':'); colon != std::string_view::npos)
            inside = inside.substr(colon + 1);
        parts.address = std::string(trimmed(inside));
        return parts;
    }
    parts.address = outside;
    return parts;
}

} // namespace

std::optional<std::string> rewrite_from_value(std::string_view value, std::string_view address,
                                              const std::function<bool(std::string_view)>& is_local)
{
    const auto items = split_mailboxes(value);
    if (!items)
        return std::nullopt;
    std::string out;
    bool changed = false;
    for (const auto item : *items) {
        const std::string_view text = trimmed(item);
        if (text.empty())
            continue;
        const mailbox_parts parts = parse_mailbox(text);
        std::string mailbox(text);
        if (!parts.address.empty() && is_local(parts.address)) {
            // Keep the display name: "root (laptop)" <me@example.org>; an old-style comment
            // (`root (Cron Daemon)`) is the display name of its time.
            const std::string display = parts.is_name_addr       ? parts.display
                                        : parts.comments.empty() ? std::string()
                                                                 : quoted(trimmed(parts.comments));
            mailbox = display.empty() ? std::string(address)
                                      : display + " <" + std::string(address) + ">";
            changed = true;
        }
        if (!out.empty())
            out += ", ";
        out += mailbox;
    }
    if (!changed)
        return std::nullopt;
    return out;
}

from_rewriter::from_rewriter(std::string address, std::function<bool(std::string_view)> is_local)
    : address_(std::move(address)), is_local_(std::move(is_local))
{
}

namespace {

bool is_continuation(std::string_view line)
{
    return !line.empty() && (line.front() == ' ' || line.front() == '\t');
}

// "From:" (RFC 5322 section 3.6.2), any case, blanks before the colon as obs-from allows.
bool is_from_field(std::string_view line)
{
    if (line.size() < 5)
        return false;
    for (std::size_t i = 0; i < 4; ++i)
        if ((line[i] | 0x20) != "from"[i])
            return false;
    std::size_t i = 4;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
        ++i;
    return i < line.size() && line[i] == ':';
}

} // namespace

void from_rewriter::put(std::string_view in, std::string& out)
{
    while (!in.empty()) {
        if (state_ == state::body) {
            out.append(in); // the body passes untouched
            return;
        }
        const auto lf = in.find('\n');
        const std::string_view piece =
            in.substr(0, lf == std::string_view::npos ? in.size() : lf + 1);
        in.remove_prefix(piece.size());
        if (state_ == state::passing_line) {
            out.append(piece);
            if (lf != std::string_view::npos)
                state_ = state::line_start;
            continue;
        }
        line_.append(piece);
        if (lf != std::string_view::npos) {
            end_line(out);
            continue;
        }
        state_ = state::in_field_line;
        if (line_.size() > max_field) {
            // A header line this long is nobody's From: to rewrite; it passes, and a From:
            // field it continues passes as it was.
            if (is_continuation(line_))
                out.append(std::exchange(field_, std::string()));
            else
                flush_field(out);
            out.append(std::exchange(line_, std::string()));
            state_ = state::passing_line;
        }
    }
}

void from_rewriter::end_line(std::string& out)
{
    std::string line = std::exchange(line_, std::string());
    state_ = state::line_start;
    if (is_continuation(line)) {
        if (field_.empty()) {
            out += line;
            return;
        }
        field_ += line;
        if (field_.size() > max_field)
            out.append(std::exchange(field_, std::string()));
        return;
    }
    flush_field(out);
    if (line == "\r\n" || line == "\n") { // the end of the header section (RFC 5322 2.1)
        out += line;
        state_ = state::body;
    } else if (is_from_field(line)) {
        field_ = std::move(line);
    } else {
        out += line;
    }
}

void from_rewriter::flush_field(std::string& out)
{
    if (field_.empty())
        return;
    const std::string field = std::exchange(field_, std::string());
    // RFC 5322 section 2.2.3: unfolding removes the line ends, the blanks after them stay.
    std::string value;
    for (char c : std::string_view(field).substr(field.find(':') + 1))
        if (c != '\r' && c != '\n')
            value += c;
    const auto rewritten = rewrite_from_value(value, address_, is_local_);
    if (!rewritten) {
        out += field;
        return;
    }
    out += "From: " + *rewritten + "\r\n";
    rewrote_ = true;
}

void from_rewriter::finish(std::string& out)
{
    if (state_ != state::body && !line_.empty()) {
        // A last header line without its line end still ends its field, or is one.
        std::string line = std::exchange(line_, std::string());
        if (is_continuation(line) && !field_.empty()) {
            field_ += line;
        } else {
            flush_field(out);
            if (is_from_field(line))
                field_ = std::move(line);
            else
                out += line;
        }
    }
    flush_field(out);
}

} // namespace leafmail::relay
