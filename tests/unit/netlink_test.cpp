#include "leafmail/watch/netlink.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <random>
#include <sys/socket.h>

using namespace leafmail::watch;
using kind = netlink_event::kind;

namespace {

using bytes = std::vector<std::uint8_t>;

template <typename T> void append(bytes& out, const T& value)
{
    const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
    out.insert(out.end(), p, p + sizeof value);
}

void pad4(bytes& out)
{
    while (out.size() % 4)
        out.push_back(0);
}

void attribute(bytes& out, std::uint16_t type, const bytes& payload)
{
    rtattr header{};
    header.rta_len = static_cast<unsigned short>(sizeof(rtattr) + payload.size());
    header.rta_type = type;
    append(out, header);
    out.insert(out.end(), payload.begin(), payload.end());
    pad4(out);
}

bytes u32(std::uint32_t v)
{
    bytes b(4);
    std::memcpy(b.data(), &v, 4);
    return b;
}

/// One netlink message: header with the right length, then body.
bytes message(std::uint16_t type, const bytes& body)
{
    nlmsghdr header{};
    header.nlmsg_len = static_cast<std::uint32_t>(sizeof header + body.size());
    header.nlmsg_type = type;
    bytes out;
    append(out, header);
    out.insert(out.end(), body.begin(), body.end());
    pad4(out);
    return out;
}

bytes route_body(std::uint8_t family, std::uint8_t dst_len, std::uint8_t table, std::uint32_t oif,
                 const bytes& gateway)
{
    rtmsg r{};
    r.rtm_family = family;
    r.rtm_dst_len = dst_len;
    r.rtm_table = table;
    r.rtm_type = RTN_UNICAST;
    bytes body;
    append(body, r);
    attribute(body, RTA_TABLE, u32(table));
    attribute(body, RTA_OIF, u32(oif));
    if (!gateway.empty())
        attribute(body, RTA_GATEWAY, gateway);
    return body;
}

bytes address_body(std::uint8_t family, std::uint8_t scope, std::uint32_t index)
{
    ifaddrmsg a{};
    a.ifa_family = family;
    a.ifa_scope = scope;
    a.ifa_index = index;
    bytes body;
    append(body, a);
    attribute(body, IFA_ADDRESS, bytes{10, 0, 0, 2});
    return body;
}

const bytes gateway4{10, 77, 0, 1};

bytes default_route(std::uint16_t type = RTM_NEWROUTE, std::uint32_t oif = 3)
{
    return message(type, route_body(AF_INET, 0, RT_TABLE_MAIN, oif, gateway4));
}

bytes concat(std::initializer_list<bytes> parts)
{
    bytes out;
    for (const auto& p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}

} // namespace

TEST_CASE("a new IPv4 default route is read with its gateway and interface")
{
    auto events = parse_netlink(default_route());
    REQUIRE(events.size() == 1);
    CHECK(events[0].what == kind::default_route_added);
    CHECK(events[0].route.family == AF_INET);
    CHECK(events[0].route.output_interface == 3);
    CHECK(events[0].route.table == RT_TABLE_MAIN);
    CHECK(events[0].route.gateway == std::string("\x0a\x4d\x00\x01", 4));
    auto removed = parse_netlink(default_route(RTM_DELROUTE));
    REQUIRE(removed.size() == 1);
    CHECK(removed[0].what == kind::default_route_removed);
    CHECK(removed[0].route == events[0].route);
}

TEST_CASE("routes that are not default or not in the main table are ignored")
{
    CHECK(parse_netlink(message(RTM_NEWROUTE, route_body(AF_INET, 24, RT_TABLE_MAIN, 3, {})))
              .empty());
    CHECK(parse_netlink(message(RTM_NEWROUTE, route_body(AF_INET, 0, RT_TABLE_LOCAL, 3, {})))
              .empty());
    auto v6 = parse_netlink(message(RTM_NEWROUTE, route_body(AF_INET6, 0, RT_TABLE_MAIN, 2, {})));
    REQUIRE(v6.size() == 1);
    CHECK(v6[0].route.family == AF_INET6);
}

TEST_CASE("only global addresses count")
{
    auto global = parse_netlink(message(RTM_NEWADDR, address_body(AF_INET, RT_SCOPE_UNIVERSE, 4)));
    REQUIRE(global.size() == 1);
    CHECK(global[0].what == kind::global_address_added);
    CHECK(global[0].interface == 4);
    CHECK(parse_netlink(message(RTM_NEWADDR, address_body(AF_INET, RT_SCOPE_HOST, 1))).empty());
    CHECK(parse_netlink(message(RTM_NEWADDR, address_body(AF_INET6, RT_SCOPE_LINK, 2))).empty());
}

TEST_CASE("several messages in one datagram are all read, a dump ends with done")
{
    nlmsgerr error{};
    error.error = -EPERM;
    bytes error_body;
    append(error_body, error);
    auto events =
        parse_netlink(concat({default_route(), default_route(RTM_NEWROUTE, 5),
                              message(NLMSG_ERROR, error_body), message(NLMSG_DONE, u32(0))}));
    REQUIRE(events.size() == 4);
    CHECK(events[1].route.output_interface == 5);
    CHECK(events[2].what == kind::error);
    CHECK(events[2].error_code == EPERM);
    CHECK(events[3].what == kind::dump_done);
}

TEST_CASE("every truncation of a datagram parses without reading past its end")
{
    const bytes whole =
        concat({default_route(), message(RTM_NEWADDR, address_body(AF_INET, 0, 4))});
    for (std::size_t n = 0; n <= whole.size(); ++n) {
        // A copy of exactly n octets, so a sanitizer sees any read past the end.
        const bytes cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
        const auto events = parse_netlink(cut);
        CHECK(events.size() <= 2);
    }
    CHECK(parse_netlink(whole).size() == 2);
}

TEST_CASE("lying lengths end the parse instead of being followed")
{
    bytes huge = default_route();
    const std::uint32_t too_long = 0xfffffff0;
    std::memcpy(huge.data(), &too_long, 4);
    CHECK(parse_netlink(huge).empty());

    bytes tiny = default_route();
    const std::uint32_t too_short = 4;
    std::memcpy(tiny.data(), &too_short, 4);
    CHECK(parse_netlink(tiny).empty());

    // An attribute claiming more than the message holds, and one of length zero: the route
    // is still reported from what was readable, and nothing loops.
    bytes body = route_body(AF_INET, 0, RT_TABLE_MAIN, 3, {});
    rtattr bad{};
    bad.rta_len = 0xfff0;
    bad.rta_type = RTA_GATEWAY;
    append(body, bad);
    CHECK(parse_netlink(message(RTM_NEWROUTE, body)).size() == 1);
    bytes zero = route_body(AF_INET, 0, RT_TABLE_MAIN, 3, {});
    rtattr empty{};
    append(zero, empty);
    CHECK(parse_netlink(message(RTM_NEWROUTE, zero)).size() == 1);

    // A gateway longer than any address is not taken.
    bytes long_gateway = route_body(AF_INET, 0, RT_TABLE_MAIN, 3, {});
    attribute(long_gateway, RTA_GATEWAY, bytes(64, 0xaa));
    auto events = parse_netlink(message(RTM_NEWROUTE, long_gateway));
    REQUIRE(events.size() == 1);
    CHECK(events[0].route.gateway.empty());
}

TEST_CASE("a datagram at an odd address is read the same")
{
    const bytes whole = default_route();
    bytes shifted(whole.size() + 1);
    std::memcpy(shifted.data() + 1, whole.data(), whole.size());
    auto events = parse_netlink(std::span<const std::uint8_t>(shifted).subspan(1));
    REQUIRE(events.size() == 1);
    CHECK(events[0] == parse_netlink(whole)[0]);
}

TEST_CASE("random and mutated datagrams never crash the parser")
{
    std::mt19937 random(1234);
    const bytes seed = concat({default_route(), message(RTM_NEWADDR, address_body(AF_INET, 0, 4)),
                               message(NLMSG_DONE, u32(0))});
    std::size_t events = 0;
    for (int round = 0; round < 20000; ++round) {
        bytes b = seed;
        const int flips = 1 + static_cast<int>(random() % 8);
        for (int i = 0; i < flips; ++i)
            b[random() % b.size()] = static_cast<std::uint8_t>(random());
        b.resize(random() % (b.size() + 1));
        events += parse_netlink(b).size();
    }
    CHECK(events > 0); // the mutations left some messages intact: the parser did run
}

TEST_CASE("the link is down only when the last default route goes")
{
    link_state link;
    auto first = parse_netlink(default_route(RTM_NEWROUTE, 3))[0];
    auto second = parse_netlink(default_route(RTM_NEWROUTE, 5))[0];
    CHECK(link.apply(first) == link_state::change::link_up);
    CHECK(link.apply(first) == link_state::change::none); // announced twice
    CHECK(link.apply(second) == link_state::change::link_up);
    CHECK(link.default_routes() == 2);
    CHECK(link.apply(parse_netlink(default_route(RTM_DELROUTE, 3))[0]) == link_state::change::none);
    CHECK(link.has_default_route());
    CHECK(link.apply(parse_netlink(default_route(RTM_DELROUTE, 5))[0]) ==
          link_state::change::link_down);
    CHECK_FALSE(link.has_default_route());
    // Removing a route never seen changes nothing.
    CHECK(link.apply(parse_netlink(default_route(RTM_DELROUTE, 9))[0]) == link_state::change::none);
    auto address = parse_netlink(message(RTM_NEWADDR, address_body(AF_INET, 0, 4)))[0];
    CHECK(link.apply(address) == link_state::change::link_up);
    CHECK_FALSE(link.has_default_route());
}

TEST_CASE("the route dump request is one well-formed netlink message")
{
    auto request = route_dump_request(7);
    nlmsghdr header{};
    REQUIRE(request.size() >= sizeof header);
    std::memcpy(&header, request.data(), sizeof header);
    CHECK(header.nlmsg_len == request.size());
    CHECK(header.nlmsg_type == RTM_GETROUTE);
    CHECK((header.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP);
    CHECK(header.nlmsg_seq == 7);
}
