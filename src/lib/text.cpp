#include "leafmail/text.hpp"

#include <charconv>

namespace leafmail::text {

namespace {

constexpr char to_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

// The length of the UTF-8 sequence at text[i] when it is well formed (shortest form, no
// surrogate, at most U+10FFFF) and encodes a character that may be shown; 0 otherwise.
std::size_t showable_utf8_length(std::string_view text, std::size_t i)
{
    const auto octet = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned lead = octet(i);
    std::size_t length = 0;
    char32_t code = 0;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
        code = lead & 0x1fu;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        code = lead & 0x0fu;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        code = lead & 0x07u;
    } else {
        return 0;
    }
    if (i + length > text.size())
        return 0;
    for (std::size_t k = 1; k < length; ++k) {
        if ((octet(i + k) & 0xc0u) != 0x80)
            return 0;
        code = code << 6 | (octet(i + k) & 0x3fu);
    }
    const bool is_overlong = (length == 3 && code < 0x800) || (length == 4 && code < 0x10000);
    const bool is_surrogate = code >= 0xd800 && code <= 0xdfff;
    // C1 controls (U+0080..U+009F: U+009B is CSI on some terminals), the bidirectional marks,
    // embeddings, overrides and isolates that reorder what is shown (CVE-2021-42574), and
    // the line and paragraph separators.
    const bool is_hidden_control = code < 0xa0 || code == 0x061c || code == 0x200e ||
                                   code == 0x200f || (code >= 0x2028 && code <= 0x202e) ||
                                   (code >= 0x2066 && code <= 0x2069);
    if (is_overlong || is_surrogate || code > 0x10ffff || is_hidden_control)
        return 0;
    return length;
}

} // namespace

bool is_plain_text(std::string_view text)
{
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f || c == '\\')
            return false;
    }
    return true;
}

std::string escape_controls(std::string_view text, bool keep_utf8)
{
    if (is_plain_text(text))
        return std::string(text);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size() + 16);
    for (std::size_t i = 0; i < text.size();) {
        const auto u = static_cast<unsigned char>(text[i]);
        if (u >= 0x20 && u < 0x7f) {
            if (text[i] == '\\')
                out += '\\';
            out += text[i++];
            continue;
        }
        if (const std::size_t length = u >= 0x80 && keep_utf8 ? showable_utf8_length(text, i) : 0) {
            out.append(text.substr(i, length));
            i += length;
            continue;
        }
        out += "\\x";
        out += hex[u >> 4];
        out += hex[u & 0xfu];
        ++i;
    }
    return out;
}

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (to_lower(a[i]) != to_lower(b[i]))
            return false;
    return true;
}

std::string base64_encode(std::string_view bytes)
{
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    auto octet = [&](std::size_t i) {
        return static_cast<unsigned>(static_cast<unsigned char>(bytes[i]));
    };
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        const unsigned v = octet(i) << 16 | octet(i + 1) << 8 | octet(i + 2);
        out += alphabet[v >> 18 & 63];
        out += alphabet[v >> 12 & 63];
        out += alphabet[v >> 6 & 63];
        out += alphabet[v & 63];
    }
    const std::size_t left = bytes.size() - i;
    if (left > 0) {
        const unsigned v = octet(i) << 16 | (left == 2 ? octet(i + 1) << 8 : 0u);
        out += alphabet[v >> 18 & 63];
        out += alphabet[v >> 12 & 63];
        out += left == 2 ? alphabet[v >> 6 & 63] : '=';
        out += '=';
    }
    return out;
}

std::optional<host_port> split_host_port(std::string_view text)
{
    host_port out;
    std::string_view after;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos)
            return std::nullopt;
        out.host = std::string(text.substr(1, close - 1));
        after = text.substr(close + 1);
        if (!after.empty() && after.front() != ':')
            return std::nullopt;
    } else {
        const auto colon = text.rfind(':');
        out.host = std::string(text.substr(0, colon));
        after = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
    }
    if (out.host.empty())
        return std::nullopt;
    if (!after.empty())
        out.port = std::string(after.substr(1));
    return out;
}

std::optional<unsigned> parse_port(std::string_view text, bool allow_zero)
{
    unsigned value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size() || value > 65535 ||
        (value == 0 && !allow_zero))
        return std::nullopt;
    return value;
}

} // namespace leafmail::text
