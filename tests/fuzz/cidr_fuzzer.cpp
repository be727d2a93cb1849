// cidr::parse() and parse_ip_address() fed arbitrary text (issue 6): nullopt or a network that
// prints back to text parsing to itself and contains its own network address; matching never
// reads outside the 16 octets.
#include "fuzz_check.hpp"
#include "leafmail/access.hpp"

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    using leafmail::cidr;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto address = leafmail::parse_ip_address(text);
    const auto network = cidr::parse(text);
    if (network) {
        const std::string printed = network->to_string();
        const auto again = cidr::parse(printed);
        FUZZ_CHECK(again.has_value());
        FUZZ_CHECK(*again == *network);
        FUZZ_CHECK(again->to_string() == printed);
        // The network address (the text before '/') is inside the network.
        const auto base = leafmail::parse_ip_address(printed.substr(0, printed.find('/')));
        FUZZ_CHECK(base.has_value());
        FUZZ_CHECK(network->contains(*base));
    }
    if (address) {
        FUZZ_CHECK(network.has_value()); // an address alone is a host network
        FUZZ_CHECK(network->contains(*address));
    }
    // Matching arbitrary 16 octets from the input against the parsed network.
    if (network && size >= 16) {
        std::array<std::uint8_t, 16> raw{};
        std::memcpy(raw.data(), data, 16);
        (void)network->contains(raw);
    }
    leafmail::access_list list = leafmail::access_list::loopback_only();
    (void)list.is_allowed(text);
    return 0;
}
