#pragma once
// Reading the kernel's routing netlink (rtnetlink(7)) for what matters to a leaf relay: default
// routes coming and going, global addresses appearing. Pure: datagrams in, events out, no
// socket. Every length in a message is checked before it is used; a malformed or hostile
// datagram yields fewer events, never a crash or an out-of-bounds read.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace leafmail::watch {

/// One default route, as the kernel names it: enough to tell two routes apart.
struct route_key {
    std::uint8_t family = 0; // AF_INET or AF_INET6
    std::uint32_t table = 0;
    std::uint32_t output_interface = 0;
    std::uint32_t priority = 0;
    std::string gateway; // raw address octets, empty for a device route

    friend auto operator<=>(const route_key&, const route_key&) = default;
};

struct netlink_event {
    enum class kind {
        default_route_added,
        default_route_removed,
        global_address_added,
        global_address_removed,
        link_changed, // an interface changed (RTMGRP_LINK); informational
        dump_done,    // NLMSG_DONE: the end of an answer to our dump request
        error,        // NLMSG_ERROR with a non-zero code
    };
    kind what = kind::link_changed;
    route_key route;             // default_route_*
    std::uint32_t interface = 0; // global_address_*, link_changed
    int error_code = 0;          // error: the (positive) errno

    friend bool operator==(const netlink_event&, const netlink_event&) = default;
};

/// Parses one datagram read from a NETLINK_ROUTE socket.
[[nodiscard]] std::vector<netlink_event> parse_netlink(std::span<const std::uint8_t> datagram);

/// The set of default routes in the main table, fed with events; says what changed for the
/// relay. Pure.
class link_state {
public:
    enum class change { none, link_up, link_down };
    /// link_up: a new default route or a new global address (a reason to try at once);
    /// link_down: the last default route went away.
    change apply(const netlink_event& event);
    [[nodiscard]] bool has_default_route() const { return !routes_.empty(); }
    [[nodiscard]] std::size_t default_routes() const { return routes_.size(); }

private:
    std::vector<route_key> routes_; // a handful at most; a vector is simplest
};

/// The request that asks the kernel for its routing table (RTM_GETROUTE with NLM_F_DUMP), so a
/// watcher starts knowing whether a default route exists.
[[nodiscard]] std::vector<std::uint8_t> route_dump_request(std::uint32_t sequence);

} // namespace leafmail::watch
