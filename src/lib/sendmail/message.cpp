#include "leafmail/sendmail/message.hpp"

#include "leafmail/smtp/command.hpp"
#include "leafmail/text.hpp"
#include "leafmail/trace.hpp"

#include <algorithm>
#include <cctype>

namespace leafmail::sendmail {

namespace {

bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (is_blank(s.front()) || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() && (is_blank(s.back()) || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

using text::iequals;

// RFC 5322 section 2.2 field name: printable US-ASCII except ':', then ':' (RFC 5322 4.5.1,
// obsolete syntax, also allows blanks before the colon). Returns the name length, 0 if none.
std::size_t field_name_length(std::string_view line)
{
    std::size_t n = 0;
    while (n < line.size() && line[n] > 32 && line[n] < 127 && line[n] != ':')
        ++n;
    if (n == 0)
        return 0;
    std::size_t colon = n;
    while (colon < line.size() && is_blank(line[colon]))
        ++colon;
    return colon < line.size() && line[colon] == ':' ? n : 0;
}

// RFC 5322 section 3.2.3 atext, plus the blank between words of a phrase.
bool is_phrase_safe(std::string_view name)
{
    static constexpr std::string_view specials = "!#$%&'*+-/=?^_`{|}~ ";
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               specials.find(c) != std::string_view::npos;
    });
}

} // namespace

// ------------------------------------------------------------------------- line_normalizer

namespace {
// A CR not followed by LF ends a line too, as leafmaild stores it: spooled content has CRLF
// line ends only, so no receiver downstream can read "\r.\r" as the end of the data.
void append_bare_crs_as_crlf(std::string& out, std::string_view text)
{
    for (std::size_t cr; (cr = text.find('\r')) != std::string_view::npos;
         text.remove_prefix(cr + 1)) {
        out.append(text.substr(0, cr));
        out += "\r\n";
    }
    out.append(text);
}
} // namespace

void line_normalizer::put(std::string_view bytes, std::string& out)
{
    while (!bytes.empty() && !ended_) {
        const auto newline = bytes.find('\n');
        if (newline == std::string_view::npos) {
            pending_.append(bytes);
            if (pending_.size() > max_pending) {
                // Pass a long line on in pieces; keep a final CR, it may start a CRLF.
                const bool keep_cr = pending_.back() == '\r';
                append_bare_crs_as_crlf(
                    out, std::string_view(pending_).substr(0, pending_.size() - (keep_cr ? 1 : 0)));
                pending_ = keep_cr ? "\r" : "";
                at_line_start_ = false;
            }
            return;
        }
        pending_.append(bytes.substr(0, newline));
        bytes.remove_prefix(newline + 1);
        if (!pending_.empty() && pending_.back() == '\r')
            pending_.pop_back();
        // sendmail's end of input without -i: a line holding only a dot.
        if (at_line_start_ && !ignore_dots_ && pending_ == ".") {
            ended_ = true;
            pending_.clear();
            return;
        }
        append_bare_crs_as_crlf(out, pending_);
        out += "\r\n";
        pending_.clear();
        at_line_start_ = true;
    }
}

void line_normalizer::finish(std::string& out)
{
    if (ended_)
        return;
    if (at_line_start_ && !ignore_dots_ && pending_ == ".") {
        ended_ = true;
        pending_.clear();
        return;
    }
    if (!pending_.empty() || !at_line_start_) {
        if (!pending_.empty() && pending_.back() == '\r')
            pending_.pop_back();
        append_bare_crs_as_crlf(out, pending_);
        out += "\r\n";
    }
    pending_.clear();
    at_line_start_ = true;
}

// ---------------------------------------------------------------------------- header_field

std::string header_field::value() const
{
    const auto colon = raw.find(':');
    std::string unfolded;
    if (colon == std::string::npos)
        return unfolded;
    const std::string_view rest = std::string_view(raw).substr(colon + 1);
    unfolded.reserve(rest.size());
    for (std::size_t i = 0; i < rest.size(); ++i) {
        // RFC 5322 section 2.2.3: unfolding removes each CRLF that precedes whitespace.
        if (rest[i] == '\r' && i + 1 < rest.size() && rest[i + 1] == '\n') {
            ++i;
            continue;
        }
        unfolded += rest[i];
    }
    return std::string(trim(unfolded));
}

bool header_field::is(std::string_view other_name) const
{
    return iequals(name, other_name);
}

// ------------------------------------------------------------------------- header_splitter

void header_splitter::put(std::string_view text, std::string& body)
{
    while (!text.empty()) {
        if (complete_) {
            body.append(text);
            return;
        }
        const auto newline = text.find('\n');
        const std::string_view piece =
            text.substr(0, newline == std::string_view::npos ? text.size() : newline + 1);
        text.remove_prefix(piece.size());
        if (too_large_)
            continue; // the caller refuses the message; drop the rest of the header
        line_.append(piece);
        if (header_size_ + line_.size() > max_header_size_) {
            too_large_ = true;
            line_.clear();
            continue;
        }
        if (newline != std::string_view::npos) {
            std::string line = std::move(line_);
            line_.clear();
            take_line(line, body);
        }
    }
}

void header_splitter::finish(std::string& body)
{
    if (complete_)
        return;
    if (!line_.empty()) {
        std::string line = std::move(line_);
        line_.clear();
        if (!line.ends_with("\r\n"))
            line += "\r\n";
        take_line(line, body);
    }
    end_header();
}

void header_splitter::take_line(std::string_view line, std::string& body)
{
    if (line == "\r\n") {
        end_header(); // the empty separator line; the writer supplies it again
        return;
    }
    if (is_blank(line.front()) && !fields_.empty()) {
        fields_.back().raw.append(line); // RFC 5322 2.2.3 folded continuation
        header_size_ += line.size();
        return;
    }
    if (const auto n = field_name_length(line); n > 0) {
        fields_.push_back({std::string(line.substr(0, n)), std::string(line)});
        header_size_ += line.size();
        return;
    }
    // Neither a field nor a continuation: the header ended without its empty line (or the
    // input has no header at all); this line is the first of the body.
    end_header();
    body.append(line);
}

void header_splitter::end_header()
{
    complete_ = true;
}

// ---------------------------------------------------------------------------- addresses

std::vector<std::string> parse_address_list(std::string_view text)
{
    std::vector<std::string> out;
    std::string plain; // the item outside angle brackets, comments and blanks dropped
    std::string angle; // the content of <...>
    bool has_angle = false;
    bool blank_seen = false; // blanks since the last character kept in plain

    auto end_item = [&] {
        std::string address = has_angle ? angle : plain;
        // RFC 5322 4.4 obsolete source route "<@a,@b:user@c>": only the mailbox counts.
        if (!address.empty() && address.front() == '@') {
            const auto colon = address.find(':');
            address = colon == std::string::npos ? std::string() : address.substr(colon + 1);
        }
        if (!address.empty())
            out.push_back(std::move(address));
        plain.clear();
        angle.clear();
        has_angle = false;
        blank_seen = false;
    };
    // Copies a quoted string (with its quotes and escapes) starting at text[i]; returns the
    // index after it.
    auto copy_quoted = [&](std::size_t i, std::string& into) {
        std::size_t j = i + 1;
        while (j < text.size() && text[j] != '"') {
            if (text[j] == '\\' && j + 1 < text.size())
                ++j;
            ++j;
        }
        const std::size_t end = std::min(j + 1, text.size());
        into.append(text.substr(i, end - i));
        return end;
    };
    auto skip_comment = [&](std::size_t i) { // RFC 5322 3.2.2: comments nest
        int depth = 0;
        for (; i < text.size(); ++i) {
            if (text[i] == '\\') {
                ++i;
            } else if (text[i] == '(') {
                ++depth;
            } else if (text[i] == ')' && --depth == 0) {
                return i + 1;
            }
        }
        return text.size();
    };

    std::size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (c == '"') {
            i = copy_quoted(i, plain);
        } else if (c == '(') {
            i = skip_comment(i);
        } else if (c == '<') {
            angle.clear();
            has_angle = true;
            ++i;
            while (i < text.size() && text[i] != '>') {
                if (text[i] == '"') {
                    i = copy_quoted(i, angle);
                } else {
                    if (!is_blank(text[i]) && text[i] != '\r' && text[i] != '\n')
                        angle += text[i];
                    ++i;
                }
            }
            ++i;
        } else if (c == '[') { // domain literal
            const auto close = text.find(']', i);
            const std::size_t end = close == std::string_view::npos ? text.size() : close + 1;
            plain.append(text.substr(i, end - i));
            i = end;
        } else if (c == ',' || c == ';') { // ';' ends a group
            end_item();
            ++i;
        } else if (c == ':') { // RFC 5322 3.4: "display-name: list;" starts a group
            plain.clear();
            blank_seen = false; // the blanks seen belonged to the display name
            ++i;
        } else {
            if (is_blank(c) || c == '\r' || c == '\n') {
                blank_seen = !plain.empty();
            } else {
                // Blanks between the parts of an addr-spec are allowed around '@' and '.'
                // (RFC 5322 CFWS), but "two words@x" is not an address: keep the blank so
                // that is_acceptable_address() refuses it.
                if (blank_seen && plain.back() != '@' && plain.back() != '.' && c != '@' &&
                    c != '.')
                    plain += ' ';
                plain += c;
            }
            blank_seen = blank_seen && (is_blank(c) || c == '\r' || c == '\n');
            ++i;
        }
    }
    end_item();
    return out;
}

bool is_acceptable_address(std::string_view address)
{
    // The grammar leafmaild applies to MAIL and RCPT (RFC 5321 section 4.1.2): what one
    // accepts, the other accepts. It admits no controls, no 8-bit octets (they would need
    // SMTPUTF8 at the smarthost) and no blanks or brackets outside a quoted local part.
    // A local name ("root") is qualified with the domain later.
    if (address.find('@') == std::string_view::npos)
        return smtp::is_valid_local_part(address);
    return smtp::is_valid_mailbox(address);
}

std::string qualify(std::string_view address, std::string_view domain)
{
    if (domain.empty() || address.find('@') != std::string_view::npos)
        return std::string(address);
    return std::string(address) + "@" + std::string(domain);
}

std::string format_mailbox(std::string_view full_name, std::string_view address)
{
    std::string name;
    for (char c : full_name) // never let a name break the header (CR, LF) or carry controls
        if (static_cast<unsigned char>(c) >= 32 && c != 127)
            name += c;
    name = std::string(trim(name));
    if (name.empty())
        return std::string(address);
    const bool is_ascii = std::all_of(name.begin(), name.end(),
                                      [](char c) { return static_cast<unsigned char>(c) < 128; });
    std::string shown;
    if (!is_ascii) {
        shown = "=?UTF-8?B?" + text::base64_encode(name) + "?="; // RFC 2047 encoded-word
    } else if (is_phrase_safe(name)) {
        shown = name;
    } else {
        shown = "\"";
        for (char c : name) {
            if (c == '"' || c == '\\')
                shown += '\\';
            shown += c;
        }
        shown += '"';
    }
    return shown + " <" + std::string(address) + ">";
}

// ---------------------------------------------------------------------------- fix_header

fixed_header fix_header(const std::vector<header_field>& fields, const submission_fix& fix)
{
    fixed_header result;
    bool has_date = false;
    bool has_message_id = false;
    bool has_from = false;
    for (const auto& field : fields) {
        has_date = has_date || field.is("Date");
        has_message_id = has_message_id || field.is("Message-ID");
        has_from = has_from || field.is("From");
        if (field.is("To") || field.is("Cc") || field.is("Bcc")) {
            for (auto& address : parse_address_list(field.value()))
                result.to_cc_bcc.push_back(std::move(address));
        }
        // Blind copies must not show: the field goes, its addresses stay in the envelope
        // (RFC 5322 section 3.6.3; Resent-Bcc: section 3.6.6). Content-Length: and Return-Path:
        // from a local program are stale or forged: Return-Path: is the final MTA's to add
        // (RFC 5321 section 4.4), as Postfix's cleanup removes both.
        if (!field.is("Bcc") && !field.is("Resent-Bcc") && !field.is("Content-Length") &&
            !field.is("Return-Path"))
            result.text += field.raw;
    }
    // RFC 6409 section 8.1-8.3 (and RFC 5322 3.6: Date and From are required).
    if (!has_from) {
        result.text += "From: " + format_mailbox(fix.full_name, fix.from_address) + "\r\n";
        result.added_from = true;
    }
    if (!has_date) {
        result.text += "Date: " + rfc5322_date(fix.now) + "\r\n";
        result.added_date = true;
    }
    if (!has_message_id) {
        result.text += "Message-ID: " + fix.message_id + "\r\n";
        result.added_message_id = true;
    }
    return result;
}

} // namespace leafmail::sendmail
