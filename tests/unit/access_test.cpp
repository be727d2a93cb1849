#include "leafmail/access.hpp"

#include <catch2/catch.hpp>

using leafmail::access_list;
using leafmail::cidr;

TEST_CASE("CIDR networks parse in both families and refuse malformed text")
{
    CHECK(cidr::parse("127.0.0.0/8")->to_string() == "127.0.0.0/8");
    CHECK(cidr::parse("10.1.2.3")->to_string() == "10.1.2.3/32");
    CHECK(cidr::parse("10.1.2.3/16")->to_string() == "10.1.0.0/16"); // host bits dropped
    CHECK(cidr::parse("::1")->to_string() == "::1/128");
    CHECK(cidr::parse("2001:db8::/32")->to_string() == "2001:db8::/32");
    CHECK(cidr::parse("0.0.0.0/0")->to_string() == "0.0.0.0/0");
    for (const char* bad :
         {"", "/8", "127.0.0.0/", "127.0.0.0/33", "::1/129", "127.0.0.0/-1", "127.0.0.0/8x",
          "256.0.0.1", "1.2.3", "localhost", "127.0.0.0/8/8", "::1 ", "1.2.3.4/ 8"})
        CHECK_FALSE(cidr::parse(bad));
}

TEST_CASE("CIDR matching respects the prefix and the family")
{
    const auto loopback = *cidr::parse("127.0.0.0/8");
    const auto v6_net = *cidr::parse("2001:db8::/32");
    CHECK(loopback.contains(*leafmail::parse_ip_address("127.255.0.1")));
    CHECK_FALSE(loopback.contains(*leafmail::parse_ip_address("128.0.0.1")));
    CHECK(loopback.contains(*leafmail::parse_ip_address("::ffff:127.0.0.1"))); // mapped form
    CHECK_FALSE(loopback.contains(*leafmail::parse_ip_address("::1")));
    CHECK(v6_net.contains(*leafmail::parse_ip_address("2001:db8:ffff::1")));
    CHECK_FALSE(v6_net.contains(*leafmail::parse_ip_address("2001:db9::1")));
    CHECK_FALSE(v6_net.contains(*leafmail::parse_ip_address("10.0.0.1")));
    const auto odd = *cidr::parse("192.168.1.128/25");
    CHECK(odd.contains(*leafmail::parse_ip_address("192.168.1.200")));
    CHECK_FALSE(odd.contains(*leafmail::parse_ip_address("192.168.1.127")));
}

TEST_CASE("the default access list admits loopback only")
{
    const auto list = access_list::loopback_only();
    CHECK(list.is_allowed("127.0.0.1"));
    CHECK(list.is_allowed("127.1.2.3"));
    CHECK(list.is_allowed("::1"));
    CHECK_FALSE(list.is_allowed("10.0.0.1"));
    CHECK_FALSE(list.is_allowed("192.168.0.1"));
    CHECK_FALSE(list.is_allowed("2001:db8::1"));
    CHECK_FALSE(list.is_allowed("not an address"));
}

TEST_CASE("deny wins over allow")
{
    access_list list;
    list.allow = {*cidr::parse("10.0.0.0/8")};
    list.deny = {*cidr::parse("10.9.0.0/16")};
    CHECK(list.is_allowed("10.1.0.1"));
    CHECK_FALSE(list.is_allowed("10.9.0.1"));
    CHECK_FALSE(list.is_allowed("127.0.0.1"));
}
