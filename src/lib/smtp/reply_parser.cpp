#include "leafmail/smtp/reply_parser.hpp"

namespace leafmail::smtp {

namespace {

bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

// A run of 1 to max digits starting at text[at]; returns its length (0 if none or too long).
std::size_t digits(std::string_view text, std::size_t at, std::size_t max)
{
    std::size_t n = 0;
    while (at + n < text.size() && is_digit(text[at + n]))
        ++n;
    return n <= max ? n : 0;
}

} // namespace

std::optional<std::size_t> enhanced_code_length(int code, std::string_view text)
{
    // RFC 3463 section 2: class "." subject "." detail; class is 2, 4 or 5, subject and
    // detail 1 to 3 digits. Only taken as such when the class agrees with the reply code.
    if (text.size() < 5 || !is_digit(text[0]) || text[1] != '.')
        return std::nullopt;
    if (text[0] - '0' != code / 100 || (text[0] != '2' && text[0] != '4' && text[0] != '5'))
        return std::nullopt;
    std::size_t subject = digits(text, 2, 3);
    if (subject == 0 || 2 + subject >= text.size() || text[2 + subject] != '.')
        return std::nullopt;
    std::size_t detail = digits(text, 3 + subject, 3);
    if (detail == 0)
        return std::nullopt;
    std::size_t end = 3 + subject + detail;
    if (end < text.size() && text[end] != ' ')
        return std::nullopt;
    return end;
}

void reply_parser::feed(std::string_view bytes)
{
    if (has_error())
        return;
    // Compact before growing so a long session does not accumulate consumed bytes.
    if (position_ > 0 && position_ >= buffer_.size() / 2) {
        buffer_.erase(0, position_);
        position_ = 0;
    }
    buffer_.append(bytes);
}

std::optional<reply> reply_parser::next()
{
    while (!has_error()) {
        std::size_t end = buffer_.find('\n', position_);
        if (end == std::string::npos) {
            if (buffer_.size() - position_ > max_line_length)
                error_ = "reply line too long";
            return std::nullopt;
        }
        std::string_view line(buffer_.data() + position_, end - position_);
        position_ = end + 1;
        // RFC 5321 section 2.3.8 wants CRLF; a bare LF from a sloppy server is tolerated on
        // the client side because it cannot smuggle anything towards us.
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (line.size() > max_line_length) {
            error_ = "reply line too long";
            return std::nullopt;
        }
        // RFC 5321 section 4.2: Reply-code [ SP textstring ] CRLF, or "-" for a continuation.
        if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
            line[0] < '2' || line[0] > '5' ||
            (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
            error_ = "malformed reply line";
            return std::nullopt;
        }
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        bool is_last = line.size() == 3 || line[3] == ' ';
        std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};

        if (!partial_) {
            partial_.emplace();
            partial_->code = code;
        } else if (partial_->code != code) {
            error_ = "reply code changed inside a multi-line reply";
            return std::nullopt;
        }
        if (partial_->lines.size() >= max_lines) {
            error_ = "too many reply lines";
            return std::nullopt;
        }
        // RFC 2034 section 4: the enhanced code prefixes every line; keep the first one seen
        // and strip it from each line's text.
        if (auto n = enhanced_code_length(code, text)) {
            if (partial_->enhanced.empty())
                partial_->enhanced = std::string(text.substr(0, *n));
            text.remove_prefix(*n);
            if (!text.empty())
                text.remove_prefix(1);
        }
        partial_->lines.emplace_back(text);
        if (is_last) {
            reply done = std::move(*partial_);
            partial_.reset();
            return done;
        }
    }
    return std::nullopt;
}

void reply_parser::clear()
{
    buffer_.clear();
    position_ = 0;
    partial_.reset();
}

} // namespace leafmail::smtp
