#include "leafmail/watch/netlink.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

namespace leafmail::watch {

namespace {

// Netlink structures sit at 4-octet boundaries in the kernel's buffer, but our span may not;
// every structure is copied out with memcpy after its size was checked, never cast in place.
template <typename T>
bool read_struct(std::span<const std::uint8_t> bytes, std::size_t offset, T& out)
{
    if (offset > bytes.size() || bytes.size() - offset < sizeof(T))
        return false;
    std::memcpy(&out, bytes.data() + offset, sizeof(T));
    return true;
}

constexpr std::size_t align4(std::size_t n)
{
    return (n + 3) & ~std::size_t(3);
}

/// Calls f(type, payload) for each well-formed attribute in bytes; stops at the first bad one.
template <typename F> void for_each_attribute(std::span<const std::uint8_t> bytes, F&& f)
{
    std::size_t offset = 0;
    for (;;) {
        rtattr header{};
        if (!read_struct(bytes, offset, header))
            return;
        const std::size_t length = header.rta_len;
        if (length < sizeof(rtattr) || length > bytes.size() - offset)
            return; // a length pointing outside the message: the rest cannot be trusted
        f(header.rta_type, bytes.subspan(offset + sizeof(rtattr), length - sizeof(rtattr)));
        offset += align4(length);
        if (offset >= bytes.size())
            return;
    }
}

std::uint32_t u32_of(std::span<const std::uint8_t> payload, std::uint32_t otherwise)
{
    std::uint32_t value = 0;
    if (payload.size() != sizeof value)
        return otherwise;
    std::memcpy(&value, payload.data(), sizeof value);
    return value;
}

void parse_route(std::uint16_t type, std::span<const std::uint8_t> body,
                 std::vector<netlink_event>& out)
{
    rtmsg route{};
    if (!read_struct(body, 0, route))
        return;
    // A default route has no destination prefix; only unicast routes carry traffic.
    if (route.rtm_dst_len != 0 || route.rtm_type != RTN_UNICAST)
        return;
    if (route.rtm_family != AF_INET && route.rtm_family != AF_INET6)
        return;
    route_key key;
    key.family = route.rtm_family;
    key.table = route.rtm_table;
    bool has_destination = false;
    const std::size_t attributes_at = align4(sizeof(rtmsg));
    if (attributes_at < body.size())
        for_each_attribute(body.subspan(attributes_at), [&](std::uint16_t attribute, auto payload) {
            switch (attribute) {
            case RTA_TABLE:
                key.table = u32_of(payload, key.table);
                break;
            case RTA_OIF:
                key.output_interface = u32_of(payload, 0);
                break;
            case RTA_PRIORITY:
                key.priority = u32_of(payload, 0);
                break;
            case RTA_GATEWAY:
                if (payload.size() <= 16)
                    key.gateway.assign(payload.begin(), payload.end());
                break;
            case RTA_DST:
                has_destination = true;
                break;
            default:
                break;
            }
        });
    if (has_destination || key.table != RT_TABLE_MAIN)
        return;
    netlink_event e;
    e.what = type == RTM_NEWROUTE ? netlink_event::kind::default_route_added
                                  : netlink_event::kind::default_route_removed;
    e.route = std::move(key);
    out.push_back(std::move(e));
}

void parse_address(std::uint16_t type, std::span<const std::uint8_t> body,
                   std::vector<netlink_event>& out)
{
    ifaddrmsg address{};
    if (!read_struct(body, 0, address))
        return;
    // Global scope only: link-local and loopback addresses do not reach a smarthost.
    if (address.ifa_scope != RT_SCOPE_UNIVERSE)
        return;
    netlink_event e;
    e.what = type == RTM_NEWADDR ? netlink_event::kind::global_address_added
                                 : netlink_event::kind::global_address_removed;
    e.interface = address.ifa_index;
    out.push_back(e);
}

} // namespace

std::vector<netlink_event> parse_netlink(std::span<const std::uint8_t> datagram)
{
    std::vector<netlink_event> out;
    std::size_t offset = 0;
    while (offset < datagram.size()) {
        nlmsghdr header{};
        if (!read_struct(datagram, offset, header))
            break;
        const std::size_t length = header.nlmsg_len;
        if (length < sizeof(nlmsghdr) || length > datagram.size() - offset)
            break; // truncated or lying about its length: drop the rest of the datagram
        // nlmsghdr is 16 octets, already aligned: the body follows it directly.
        static_assert(sizeof(nlmsghdr) == NLMSG_ALIGN(sizeof(nlmsghdr)));
        const auto body = datagram.subspan(offset + sizeof(nlmsghdr), length - sizeof(nlmsghdr));
        switch (header.nlmsg_type) {
        case NLMSG_DONE:
            out.push_back({netlink_event::kind::dump_done, {}, 0, 0});
            break;
        case NLMSG_ERROR: {
            nlmsgerr error{};
            if (read_struct(body, 0, error) && error.error != 0) {
                netlink_event e;
                e.what = netlink_event::kind::error;
                e.error_code = error.error < 0 && error.error > -4096 ? -error.error : EPROTO;
                out.push_back(e);
            }
            break;
        }
        case RTM_NEWROUTE:
        case RTM_DELROUTE:
            parse_route(header.nlmsg_type, body, out);
            break;
        case RTM_NEWADDR:
        case RTM_DELADDR:
            parse_address(header.nlmsg_type, body, out);
            break;
        case RTM_NEWLINK:
        case RTM_DELLINK: {
            ifinfomsg link{};
            if (read_struct(body, 0, link)) {
                netlink_event e;
                e.what = netlink_event::kind::link_changed;
                e.interface = static_cast<std::uint32_t>(link.ifi_index);
                out.push_back(e);
            }
            break;
        }
        default:
            break;
        }
        const std::size_t next = align4(length);
        if (next >= datagram.size() - offset)
            break;
        offset += next;
    }
    return out;
}

link_state::change link_state::apply(const netlink_event& event)
{
    using kind = netlink_event::kind;
    switch (event.what) {
    case kind::default_route_added:
        if (std::find(routes_.begin(), routes_.end(), event.route) != routes_.end())
            return change::none; // a replacement or a repeated dump line
        // Bounded: a flood of distinct announcements cannot grow this without end.
        if (routes_.size() < 256)
            routes_.push_back(event.route);
        return change::link_up;
    case kind::default_route_removed: {
        const auto it = std::find(routes_.begin(), routes_.end(), event.route);
        if (it == routes_.end())
            return change::none;
        routes_.erase(it);
        return routes_.empty() ? change::link_down : change::none;
    }
    case kind::global_address_added:
        return change::link_up;
    default:
        return change::none;
    }
}

std::vector<std::uint8_t> route_dump_request(std::uint32_t sequence)
{
    struct {
        nlmsghdr header;
        rtmsg route;
    } request{};
    request.header.nlmsg_len = sizeof request;
    request.header.nlmsg_type = RTM_GETROUTE;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = sequence;
    request.route.rtm_family = AF_UNSPEC;
    std::vector<std::uint8_t> bytes(sizeof request);
    std::memcpy(bytes.data(), &request, sizeof request);
    return bytes;
}

} // namespace leafmail::watch
