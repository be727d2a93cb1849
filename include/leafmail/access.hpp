#pragma once
// Who may hand us mail: CIDR allow and deny lists over IPv4 and IPv6 (deny wins; a client
// matching neither is refused). Pure: addresses come in as text or bytes, no sockets.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail {

/// An IPv4 or IPv6 network; IPv4 is held as an IPv4-mapped IPv6 network (::ffff:a.b.c.d/96+n)
/// so that one comparison serves both families.
class cidr {
public:
    /// "127.0.0.0/8", "::1/128", "10.1.2.3" (a host); nullopt on any syntax error.
    [[nodiscard]] static std::optional<cidr> parse(std::string_view text);
    [[nodiscard]] bool contains(const std::array<std::uint8_t, 16>& address) const;
    [[nodiscard]] std::string to_string() const;
    friend bool operator==(const cidr&, const cidr&) = default;

private:
    std::array<std::uint8_t, 16> network_{};
    unsigned prefix_length_ = 0; // of the 128-bit form
    bool is_v4_ = false;
};

/// Parses "1.2.3.4" or "::1" (also "::ffff:1.2.3.4") to the 16-byte IPv6 form.
[[nodiscard]] std::optional<std::array<std::uint8_t, 16>> parse_ip_address(std::string_view text);

class access_list {
public:
    [[nodiscard]] static access_list loopback_only(); // allow 127.0.0.0/8 and ::1
    std::vector<cidr> allow;
    std::vector<cidr> deny;
    [[nodiscard]] bool is_allowed(const std::array<std::uint8_t, 16>& address) const;
    [[nodiscard]] bool is_allowed(std::string_view address) const; // false if unparsable
};

} // namespace leafmail
