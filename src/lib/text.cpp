#include "leafmail/text.hpp"

#include <charconv>

namespace leafmail::text {

namespace {

constexpr char to_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

} // namespace

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
