#include "leafmail/access.hpp"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>

namespace leafmail {

namespace {
constexpr unsigned v4_mapped_prefix = 96; // ::ffff:0:0/96 holds the IPv4 space

std::array<std::uint8_t, 16> mask(std::array<std::uint8_t, 16> address, unsigned prefix)
{
    for (unsigned bit = prefix; bit < 128; ++bit)
        address[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
    return address;
}
} // namespace

std::optional<std::array<std::uint8_t, 16>> parse_ip_address(std::string_view text)
{
    // inet_pton() stops at a NUL: "10.0.0.1\0junk" must not pass as 10.0.0.1 (cidr_fuzzer).
    if (text.empty() || text.size() > INET6_ADDRSTRLEN || text.find('\0') != std::string_view::npos)
        return std::nullopt;
    const std::string z(text);
    std::array<std::uint8_t, 16> out{};
    in_addr v4{};
    if (::inet_pton(AF_INET, z.c_str(), &v4) == 1) {
        out[10] = out[11] = 0xff;
        std::memcpy(out.data() + 12, &v4, 4);
        return out;
    }
    if (::inet_pton(AF_INET6, z.c_str(), out.data()) == 1)
        return out;
    return std::nullopt;
}

std::optional<cidr> cidr::parse(std::string_view text)
{
    const auto slash = text.find('/');
    const auto address = parse_ip_address(text.substr(0, slash));
    if (!address)
        return std::nullopt;
    const bool is_v4 = text.substr(0, slash).find(':') == std::string_view::npos;
    const unsigned family_bits = is_v4 ? 32 : 128;
    unsigned length = family_bits;
    if (slash != std::string_view::npos) {
        const std::string_view digits = text.substr(slash + 1);
        const auto [end, error] =
            std::from_chars(digits.data(), digits.data() + digits.size(), length);
        if (digits.empty() || error != std::errc{} || end != digits.data() + digits.size() ||
            length > family_bits)
            return std::nullopt;
    }
    cidr result;
    result.is_v4_ = is_v4;
    result.prefix_length_ = is_v4 ? v4_mapped_prefix + length : length;
    result.network_ = mask(*address, result.prefix_length_);
    return result;
}

bool cidr::contains(const std::array<std::uint8_t, 16>& address) const
{
    return mask(address, prefix_length_) == network_;
}

std::string cidr::to_string() const
{
    char text[INET6_ADDRSTRLEN] = {};
    if (is_v4_) {
        ::inet_ntop(AF_INET, network_.data() + 12, text, sizeof text);
        return std::string(text) + "/" + std::to_string(prefix_length_ - v4_mapped_prefix);
    }
    ::inet_ntop(AF_INET6, network_.data(), text, sizeof text);
    return std::string(text) + "/" + std::to_string(prefix_length_);
}

access_list access_list::loopback_only()
{
    access_list list;
    list.allow = {*cidr::parse("127.0.0.0/8"), *cidr::parse("::1/128")};
    return list;
}

bool access_list::is_allowed(const std::array<std::uint8_t, 16>& address) const
{
    for (const auto& net : deny)
        if (net.contains(address))
            return false; // deny wins
    for (const auto& net : allow)
        if (net.contains(address))
            return true;
    return false;
}

bool access_list::is_allowed(std::string_view address) const
{
    const auto parsed = parse_ip_address(address);
    return parsed && is_allowed(*parsed);
}

} // namespace leafmail
