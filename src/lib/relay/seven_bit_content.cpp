#include "leafmail/relay/seven_bit_content.hpp"

#include <algorithm>
#include <cctype>

namespace leafmail::relay {

namespace {

bool has_8bit(std::string_view bytes)
{
    return std::any_of(bytes.begin(), bytes.end(),
                       [](char c) { return static_cast<unsigned char>(c) > 127; });
}

std::string lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

/// The fields of a header section (RFC 5322 section 2.2.3: unfolded), name in lower case.
struct header_field {
    std::string name;
    std::string value;
    std::size_t begin = 0, end = 0; // its octets in the section, continuation lines included
};

std::vector<header_field> parse_fields(const std::string& section)
{
    std::vector<header_field> fields;
    std::size_t at = 0;
    while (at < section.size()) {
        std::size_t eol = section.find('\n', at);
        std::size_t next = eol == std::string::npos ? section.size() : eol + 1;
        std::string_view line(section.data() + at, next - at);
        if ((line.front() == ' ' || line.front() == '\t') && !fields.empty()) {
            fields.back().value += " " + std::string(trim(line));
            fields.back().end = next;
        } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
            fields.push_back({lower(trim(line.substr(0, colon))),
                              std::string(trim(line.substr(colon + 1))), at, next});
        }
        at = next;
    }
    return fields;
}

/// RFC 2045 section 5.1: type/subtype, then ";"-separated parameters; the value of one.
std::string parameter(std::string_view value, std::string_view name)
{
    std::size_t at = value.find(';');
    while (at != std::string_view::npos) {
        std::size_t next = value.find(';', at + 1);
        std::string_view p =
            trim(value.substr(at + 1, next == std::string_view::npos ? value.npos : next - at - 1));
        std::size_t eq = p.find('=');
        if (eq != std::string_view::npos && lower(trim(p.substr(0, eq))) == name) {
            std::string_view v = trim(p.substr(eq + 1));
            if (v.size() >= 2 && v.front() == '"') {
                std::size_t close = v.find('"', 1);
                v = v.substr(1, close == std::string_view::npos ? v.npos : close - 1);
            }
            return std::string(v);
        }
        at = next;
    }
    return {};
}

std::string media_type(std::string_view value)
{
    return lower(trim(value.substr(0, value.find(';'))));
}

} // namespace

content_filter::content_filter(content_filter_options options) : options_(options) {}

void content_filter::put(std::string_view in, std::string& out)
{
    while (!in.empty()) {
        std::size_t eol = in.find('\n');
        std::size_t take = eol == std::string_view::npos ? in.size() : eol;
        line_.append(in.substr(0, take)); // at most one chunk: memory stays bounded
        in.remove_prefix(take);
        for (;;) {
            // What can no longer be one line goes now, in pieces of `limit` octets; a CR at
            // the end may start the CRLF and does not count. A continuation starts with a
            // space, so it has one octet less.
            std::size_t limit = continuing_ ? max_line - 1 : max_line;
            std::size_t length = line_.size() - (!line_.empty() && line_.back() == '\r' ? 1 : 0);
            if (length <= limit)
                break;
            std::string head = line_.substr(0, limit);
            line_.erase(0, limit);
            piece(head, piece_end::broken, out);
            continuing_ = true;
        }
        if (in.empty())
            return;          // the line goes on in the next chunk
        in.remove_prefix(1); // the LF
        std::string line = std::move(line_);
        line_.clear();
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        piece(line, piece_end::line, out);
        continuing_ = false;
    }
}

void content_filter::finish(std::string& out)
{
    std::string rest = std::move(line_);
    line_.clear();
    if (state_ == state::headers) {
        // Content that ends inside a header section: what is held goes as it is.
        note_8bit(headers_);
        note_8bit(rest);
        out += headers_;
        out += rest;
        headers_.clear();
        return;
    }
    if (!rest.empty())
        emit_body(rest, piece_end::content, out);
}

void content_filter::piece(std::string_view bytes, piece_end end, std::string& out)
{
    if (state_ == state::headers)
        header_line(bytes, end, out);
    else
        body_line(bytes, end, out);
}

void content_filter::note_8bit(std::string_view bytes)
{
    if (!options_.eight_bit_allowed && has_8bit(bytes))
        sent_8bit_unconverted_ = true;
}

void content_filter::header_line(std::string_view line, piece_end end, std::string& out)
{
    bool complete = end == piece_end::line;
    if (complete && line.empty() && !continuing_) {
        end_of_headers(out);
        return;
    }
    // A header line broken with CRLF SPACE is folded (RFC 5322 section 2.2.3): the same field.
    std::string text = std::string(line) + (complete ? "\r\n" : "\r\n ");
    if (!complete)
        ++lines_broken_;
    if (headers_overflow_) {
        note_8bit(text);
        out += text;
        return;
    }
    headers_ += text;
    if (headers_.size() > max_header_section) {
        headers_overflow_ = true;
        note_8bit(headers_);
        out += headers_;
        headers_.clear();
    }
}

void content_filter::end_of_headers(std::string& out)
{
    state_ = state::body;
    mode_ = body_mode::pass;
    qp_column_ = 0;
    bool top = top_level_;
    top_level_ = false;
    if (headers_overflow_) {
        headers_overflow_ = false; // unread: passes as it is
        out += "\r\n";
        return;
    }
    auto fields = parse_fields(headers_);
    auto find = [&](std::string_view name) -> const header_field* {
        for (const auto& f : fields)
            if (f.name == name)
                return &f;
        return nullptr;
    };
    if (top)
        mime_ = find("mime-version") != nullptr;
    const header_field* type_field = find("content-type");
    // RFC 2045 section 5.2: no Content-Type means text/plain (message/rfc822 in a digest,
    // which we treat the same: it is passed on, never re-encoded).
    std::string type = type_field ? media_type(type_field->value) : "text/plain";
    const header_field* cte_field = find("content-transfer-encoding");
    std::string cte = cte_field ? lower(trim(cte_field->value)) : "";
    if (mime_ && type.starts_with("multipart/") && type_field) {
        std::string boundary = parameter(type_field->value, "boundary");
        if (!boundary.empty())
            boundaries_.push_back(boundary);
    } else if (mime_ && !options_.eight_bit_allowed && !type.starts_with("message/") &&
               (cte == "8bit" || cte == "binary")) {
        // RFC 6152 section 3 / RFC 2045 section 6.7: the part becomes quoted-printable, as
        // Postfix does for a server without 8BITMIME. message/* parts may not be encoded
        // (RFC 2046 section 5.2.1) and pass as they are.
        headers_.erase(cte_field->begin, cte_field->end - cte_field->begin);
        headers_ += "Content-Transfer-Encoding: quoted-printable\r\n";
        mode_ = body_mode::quoted_printable;
        ++parts_converted_;
    }
    note_8bit(headers_); // 8-bit in a header is sent as it is (RFC 6532 is not ours to do)
    out += headers_;
    out += "\r\n";
    headers_.clear();
}

bool content_filter::is_boundary(std::string_view line, bool& closing, std::size_t& level) const
{
    // RFC 2046 section 5.1.1: "--" boundary, then "--" for the last, then optional white
    // space. An outer boundary also ends the parts inside it.
    if (!line.starts_with("--"))
        return false;
    for (std::size_t i = boundaries_.size(); i-- > 0;) {
        std::string_view b = boundaries_[i];
        std::string_view rest = line.substr(2);
        if (!rest.starts_with(b))
            continue;
        rest.remove_prefix(b.size());
        closing = rest.starts_with("--");
        if (closing)
            rest.remove_prefix(2);
        if (!trim(rest).empty())
            continue;
        level = i;
        return true;
    }
    return false;
}

void content_filter::body_line(std::string_view line, piece_end end, std::string& out)
{
    bool complete = end == piece_end::line;
    bool closing = false;
    std::size_t level = 0;
    if (complete && !continuing_ && !boundaries_.empty() && is_boundary(line, closing, level)) {
        out += line;
        out += "\r\n";
        qp_column_ = 0;
        mode_ = body_mode::pass;
        if (closing) {
            boundaries_.resize(level); // the epilogue follows: plain text, passed on
        } else {
            boundaries_.resize(level + 1);
            state_ = state::headers; // the next part's header section
        }
        return;
    }
    emit_body(line, end, out);
}

void content_filter::emit_body(std::string_view bytes, piece_end end, std::string& out)
{
    if (mode_ == body_mode::quoted_printable) {
        encode_qp(bytes, end, out);
        return;
    }
    note_8bit(bytes);
    out += bytes;
    if (end == piece_end::line) {
        out += "\r\n";
    } else if (end == piece_end::broken) {
        // RFC 5321 section 4.5.3.1.6: as Postfix (smtp_line_length_limit), CRLF SPACE.
        out += "\r\n ";
        ++lines_broken_;
    }
}

void content_filter::encode_qp(std::string_view bytes, piece_end end, std::string& out)
{
    // A broken piece goes on in the next one: soft line breaks carry it, no CRLF SPACE.
    bool line_ends = end != piece_end::broken;
    static constexpr char digits[] = "0123456789ABCDEF";
    // RFC 2045 section 6.7: encoded lines of at most 76 octets, "=" soft breaks included.
    constexpr std::size_t max_encoded = 75;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        auto c = static_cast<unsigned char>(bytes[i]);
        bool last = i + 1 == bytes.size();
        // Rule 3: white space at the end of an encoded line must be encoded.
        bool literal =
            (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !(last && line_ends));
        std::size_t width = literal ? 1 : 3;
        if (qp_column_ + width > max_encoded) {
            out += "=\r\n";
            qp_column_ = 0;
        }
        if (literal) {
            out += static_cast<char>(c);
        } else {
            out += '=';
            out += digits[c >> 4];
            out += digits[c & 15];
        }
        qp_column_ += width;
    }
    if (end == piece_end::line) {
        out += "\r\n";
        qp_column_ = 0;
    }
}

} // namespace leafmail::relay
