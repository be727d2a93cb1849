#include "leafmail/watch/watcher.hpp"

#include "leafmail/log.hpp"
#include "leafmail/net/asio.hpp"
#include "leafmail/privileges.hpp"
#include "leafmail/relay/flush.hpp"
#include "leafmail/relay/relay_settings.hpp"
#include "leafmail/routes.hpp"
#include "leafmail/spool/queue_id.hpp"
#include "leafmail/spool/spool.hpp"
#include "leafmail/watch/netlink.hpp"
#include "leafmail/watch/route_backoff.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <optional>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace leafmail::watch {

namespace {

namespace asio = net::asio;
using namespace std::chrono_literals;

// Without an answer to our route dump by then, the watcher decides on what it has.
constexpr auto netlink_dump_timeout = 2s;
// One read of either descriptor; netlink datagrams and inotify batches fit comfortably.
constexpr std::size_t read_buffer_size = 64 * 1024;

std::string wall_clock_text(clock::time_point when)
{
    const auto wall =
        std::chrono::system_clock::now() +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(when - clock::now());
    const std::time_t t = std::chrono::system_clock::to_time_t(wall);
    std::tm local{};
    ::localtime_r(&t, &local);
    char text[16];
    std::strftime(text, sizeof text, "%H:%M:%S", &local);
    return text;
}

/// What one inotify read announced: committed entries (queue ids; not state files, not
/// temporaries), or an overflow, when events were lost and anything may be new.
struct queue_news {
    std::vector<std::string> ids;
    bool overflow = false;
    [[nodiscard]] bool is_empty() const { return ids.empty() && !overflow; }
};

queue_news new_entries(const std::uint8_t* data, std::size_t size)
{
    queue_news news;
    std::size_t offset = 0;
    while (size - offset >= sizeof(inotify_event)) {
        inotify_event event{};
        std::memcpy(&event, data + offset, sizeof event);
        const std::size_t total = sizeof event + event.len;
        if (total > size - offset)
            break;
        if (event.mask & IN_Q_OVERFLOW)
            news.overflow = true;
        const char* name = reinterpret_cast<const char*>(data + offset + sizeof event);
        const std::string_view id(name, event.len > 0 ? ::strnlen(name, event.len) : 0);
        if (!id.empty() && spool::is_valid_queue_id(id))
            news.ids.emplace_back(id);
        offset += total;
    }
    return news;
}

std::int64_t unix_now()
{
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// A steady-clock time as Unix seconds (rounded up: "not before").
std::int64_t unix_time_of(clock::time_point when)
{
    const auto ahead = std::chrono::ceil<std::chrono::seconds>(when - clock::now());
    return unix_now() + std::max<std::int64_t>(0, ahead.count());
}

// A watcher's round keeps its connection open this long for mail still arriving (a burst on
// a slow disk), so that the burst goes on it instead of on a second connection.
constexpr std::chrono::milliseconds round_linger{300};

/// One route as the watcher follows it: its own backoff, so that an unreachable smarthost
/// is probed on its schedule while the other routes' mail goes at once (issue 14).
struct route_state {
    route_state(std::string route_name, std::string relay_name, route_backoff initial)
        : name(std::move(route_name)), relay(std::move(relay_name)), backoff(std::move(initial))
    {
    }
    std::string name;  // "default" or a [route NAME]
    std::string relay; // its smarthost as configured, for logs
    route_backoff backoff;
    bool queue_has_mail = false;  // queue/ may hold mail of this route
    bool send_everything = false; // the next round ignores the entries' schedule
    // What was last logged and written to watch.status: one line per change of state.
    std::optional<route_condition> shown_condition;
    std::string shown_failure;
    std::int64_t shown_until = 0;
    std::int64_t since = 0; // Unix seconds the shown condition began
};

class watcher {
public:
    watcher(const config& settings, const watch_options& options, spool::spool& spool)
        : settings_(settings), options_(options), spool_(spool)
    {
        flush_options_.lock_timeout = options.lock_timeout;
        flush_options_.verbose = options.verbose;
        flush_options_.stop = &stop_;
        flush_options_.log_each_connection = false;
        flush_options_.count_unreached_attempts = false;
    }

    void run()
    {
        signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
            if (!ec)
                on_signal(signal);
        });
        start_kick_listener();
        start_queue_watch();
        start_netlink();
        queue_had_mail_ = !spool_.list(spool::area::queue).empty();
        log::info(log::fields({{"event", "watching"},
                               {"auto-connect", to_string(settings_.relay.auto_connect)},
                               {"relay", settings_.relay.smarthost}}));
        io_.run();
        spool_.remove_watcher_socket();
        if (failure_)
            std::rethrow_exception(failure_);
    }

private:
    // --- the kernel's routing table ---

    void start_netlink()
    {
        try {
            netlink_.open(asio::generic::raw_protocol(AF_NETLINK, NETLINK_ROUTE));
            sockaddr_nl address{};
            address.nl_family = AF_NETLINK;
            address.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR |
                                RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
            netlink_.bind(asio::generic::raw_protocol::endpoint(&address, sizeof address));
            sockaddr_nl kernel{};
            kernel.nl_family = AF_NETLINK;
            const auto request = route_dump_request(1);
            netlink_.send_to(asio::buffer(request),
                             asio::generic::raw_protocol::endpoint(&kernel, sizeof kernel));
        } catch (const boost::system::system_error& e) {
            // Without netlink (a sandbox without it) the link cannot be watched: assume it is
            // there, as a one-shot flush would, and say so.
            log::warning(log::fields({{"event", "no-link-monitor"}, {"error", e.what()}}));
            start_deciding(true);
            return;
        }
        dump_timer_.expires_after(netlink_dump_timeout);
        dump_timer_.async_wait([this](const boost::system::error_code& ec) {
            if (!ec && !deciding_) {
                log::warning(log::fields({{"event", "route-dump-timeout"}}));
                start_deciding(link_.has_default_route());
            }
        });
        read_netlink();
    }

    void read_netlink()
    {
        netlink_.async_receive_from(
            asio::buffer(netlink_buffer_), netlink_sender_,
            [this](const boost::system::error_code& ec, std::size_t n) {
                if (ec == asio::error::operation_aborted || stopping_)
                    return;
                if (ec) {
                    // ENOBUFS: the kernel dropped events. Ask for the table again.
                    log::warning(
                        log::fields({{"event", "netlink-error"}, {"error", ec.message()}}));
                    resend_dump();
                } else if (is_from_kernel()) {
                    on_netlink(std::span<const std::uint8_t>(netlink_buffer_.data(), n));
                }
                read_netlink();
            });
    }

    /// Only the kernel (port id 0) speaks for the routing table; a local process that sends
    /// a datagram to our port is not believed.
    bool is_from_kernel() const
    {
        sockaddr_nl sender{};
        if (netlink_sender_.size() < sizeof sender)
            return false;
        std::memcpy(&sender, netlink_sender_.data(), sizeof sender);
        return sender.nl_family == AF_NETLINK && sender.nl_pid == 0;
    }

    void resend_dump()
    {
        sockaddr_nl kernel{};
        kernel.nl_family = AF_NETLINK;
        boost::system::error_code ignored;
        const auto request = route_dump_request(++dump_sequence_);
        netlink_.send_to(asio::buffer(request),
                         asio::generic::raw_protocol::endpoint(&kernel, sizeof kernel), 0, ignored);
    }

    void on_netlink(std::span<const std::uint8_t> datagram)
    {
        const auto now = clock::now();
        for (const auto& event : parse_netlink(datagram)) {
            if (event.what == netlink_event::kind::dump_done) {
                if (!deciding_)
                    start_deciding(link_.has_default_route());
                continue;
            }
            const auto change = link_.apply(event);
            if (!deciding_)
                continue; // still reading the table we started with: no event yet
            if (change == link_state::change::link_up) {
                log::info(
                    log::fields({{"event", "link-up"},
                                 {"reason", event.what == netlink_event::kind::global_address_added
                                                ? "new global address"
                                                : "new default route"}}));
                // Whatever failed may work on the new link: every route starts over.
                for (auto& r : routes_) {
                    r.backoff.link_up(now);
                    r.send_everything = true;
                }
            } else if (change == link_state::change::link_down) {
                log::info(log::fields({{"event", "link-down"}, {"reason", "no default route"}}));
                for (auto& r : routes_)
                    r.backoff.link_down(now);
            }
        }
        evaluate();
    }

    void start_deciding(bool has_default_route)
    {
        // retry-min, retry-max and auto-connect are the watcher's (top-level keys), the same
        // for every route; each route keeps its own count of failures.
        const retry_policy policy{settings_.relay.retry_min, settings_.relay.retry_max};
        for (const auto& name : relay::route_names(settings_)) {
            routes_.emplace_back(name, relay_of_route(settings_, name)->smarthost,
                                 route_backoff(policy, settings_.relay.auto_connect,
                                               has_default_route, system_random_source()));
            routes_.back().queue_has_mail = queue_had_mail_;
        }
        deciding_ = true;
        log::info(log::fields({{"event", has_default_route ? "link-up" : "link-down"},
                               {"reason", has_default_route ? "default route present at start"
                                                            : "no default route at start"}}));
        evaluate();
    }

    // --- queue/ ---

    void start_queue_watch()
    {
        const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0)
            throw std::system_error(errno, std::generic_category(), "cannot start inotify");
        inotify_.assign(fd);
        spool_.watch_area(fd, spool::area::queue);
        read_queue_events();
    }

    void read_queue_events()
    {
        inotify_.async_read_some(
            asio::buffer(inotify_buffer_),
            [this](const boost::system::error_code& ec, std::size_t n) {
                if (ec == asio::error::operation_aborted || stopping_)
                    return;
                if (ec) {
                    fail(std::make_exception_ptr(boost::system::system_error(ec, "inotify read")));
                    return;
                }
                const queue_news news = new_entries(inotify_buffer_.data(), n);
                if (!news.is_empty()) {
                    if (deciding_)
                        announce_mail(news, clock::now());
                    else
                        queue_had_mail_ = true; // counted when deciding starts
                    evaluate();
                }
                read_queue_events();
            });
    }

    /// New mail wakes only its own route (found from its sender, as the flush finds it), so
    /// that a route backing off does not hold back or prompt anything else.
    void announce_mail(const queue_news& news, clock::time_point now)
    {
        std::vector<bool> woken(routes_.size(), routes_.size() == 1 || news.overflow);
        for (const auto& id : news.ids) {
            if (routes_.size() == 1)
                break;
            try {
                const auto env = spool_.load(spool::area::queue, id);
                if (!env)
                    continue; // gone already (a flush beside us sent it)
                const std::string name = route_name_for_sender(settings_, env->reverse_path);
                for (std::size_t i = 0; i < routes_.size(); ++i)
                    if (routes_[i].name == name)
                        woken[i] = true;
            } catch (const std::exception&) {
                // Unreadable now: any route may own it; the flush sorts it out.
                std::fill(woken.begin(), woken.end(), true);
            }
        }
        for (std::size_t i = 0; i < routes_.size(); ++i)
            if (woken[i]) {
                routes_[i].queue_has_mail = true;
                routes_[i].backoff.new_mail(now);
            }
    }

    // --- kicks ---

    void start_kick_listener()
    {
        kicks_.assign(asio::local::stream_protocol(), spool_.listen_watcher_socket());
        accept_kick();
    }

    void accept_kick()
    {
        kicks_.async_accept(
            [this](const boost::system::error_code& ec, asio::local::stream_protocol::socket peer) {
                if (ec == asio::error::operation_aborted || stopping_)
                    return;
                if (!ec) {
                    log::info(log::fields({{"event", "kick"}}));
                    if (deciding_)
                        kick_all(clock::now());
                    else
                        early_kick_ = true;
                    // The answer is all the peer gets; nothing it sends is read.
                    boost::system::error_code ignored;
                    asio::write(peer, asio::buffer("ok\n", 3), ignored);
                    evaluate();
                }
                accept_kick();
            });
    }

    // --- deciding and relaying ---

    void kick_all(clock::time_point now)
    {
        for (auto& r : routes_) {
            r.backoff.kick(now);
            r.send_everything = true;
        }
    }

    void evaluate()
    {
        if (!deciding_ || stopping_)
            return;
        const auto now = clock::now();
        if (early_kick_) {
            kick_all(now);
            early_kick_ = false;
        }
        show_conditions();
        if (round_running_)
            return; // decided again when the round ends
        std::vector<route_to_plan> routes;
        for (const auto& r : routes_)
            routes.push_back({&r.backoff, r.queue_has_mail});
        const round_plan plan = plan_round(routes, now);
        if (!plan.connect_now.empty()) {
            timer_.cancel();
            start_round(plan.connect_now, now);
            return;
        }
        if (!plan.wake_at) {
            timer_.cancel();
            return;
        }
        timer_.expires_at(*plan.wake_at);
        timer_.async_wait([this](const boost::system::error_code& ec) {
            if (!ec)
                evaluate();
        });
    }

    struct route_round {
        std::size_t route = 0; // index into routes_
        bool due_only = true;
        bool ran = false;
        relay::flush_summary summary;
        std::exception_ptr error;
    };

    void start_round(const std::vector<std::size_t>& due, clock::time_point now)
    {
        auto rounds = std::make_shared<std::vector<route_round>>();
        for (std::size_t i : due) {
            routes_[i].backoff.connecting(now);
            // Entries keep their schedule, except after a link-up or a kick: then every wait
            // ends and everything pending goes.
            rounds->push_back({i, !routes_[i].send_everything, false, {}, nullptr});
            routes_[i].send_everything = false;
        }
        round_running_ = true;
        std::vector<std::string> names;
        for (const auto& r : *rounds)
            names.push_back(routes_[r.route].name);
        // One route after the other under the flush lock, each with its own connection; a
        // route that cannot connect fails fast (refused) or within its connect timeout.
        round_thread_ = std::thread([this, rounds, names] {
            for (std::size_t k = 0; k < rounds->size() && !stop_; ++k) {
                auto& r = (*rounds)[k];
                relay::flush_options round_options = flush_options_;
                round_options.route = names[k];
                round_options.due_only = r.due_only;
                round_options.linger = round_linger;
                r.ran = true;
                try {
                    r.summary = relay::run_flush(settings_, round_options);
                } catch (...) {
                    r.error = std::current_exception();
                }
            }
            asio::post(io_, [this, rounds] { round_finished(*rounds); });
        });
    }

    void round_finished(const std::vector<route_round>& rounds)
    {
        round_thread_.join();
        round_running_ = false;
        const auto now = clock::now();
        for (const auto& round : rounds) {
            route_state& route = routes_[round.route];
            if (!round.ran) {
                route.backoff.new_mail(now); // stopped before its turn: still to do
                continue;
            }
            if (round.error) {
                try {
                    std::rethrow_exception(round.error);
                } catch (const config_error&) {
                    fail(round.error);
                    return;
                } catch (const std::exception& e) {
                    // The spool or the disk: log, and try again on the schedule.
                    log::error(log::fields(
                        {{"event", "round-failed"}, {"route", route.name}, {"error", e.what()}}));
                    route.backoff.connect_failed(now, e.what());
                }
                continue;
            }
            const auto& s = round.summary;
            if (s.lock_busy) {
                // A one-shot flush runs beside us: it sends what is there. Look again soon.
                route.backoff.new_mail(now);
            } else if (!s.connection_failure.empty() && s.sent == 0) {
                route.backoff.connect_failed(now, s.connection_failure);
            } else {
                route.backoff.reached(now, mail_due_at(s, now));
            }
            // Mail that arrived during the round was announced by inotify and is fresh mail
            // for route_backoff; what is left over is what the round deferred.
            route.queue_has_mail = s.deferred > 0 || s.lock_busy;
            if (s.sent + s.failed > 0)
                log::info(log::fields({{"event", "relayed"},
                                       {"route", route.name},
                                       {"sent", std::to_string(s.sent)},
                                       {"deferred", std::to_string(s.deferred)},
                                       {"failed", std::to_string(s.failed)}}));
        }
        if (stopping_) {
            shut_down();
            return;
        }
        evaluate();
    }

    /// When the earliest entry the round left is due, on the steady clock.
    std::optional<clock::time_point> mail_due_at(const relay::flush_summary& s,
                                                 clock::time_point now) const
    {
        if (s.deferred == 0)
            return std::nullopt;
        if (s.next_attempt_at == 0) // left for another reason (locked by a tool): look again
            return now + settings_.relay.retry_min;
        return now +
               std::chrono::seconds(std::max<std::int64_t>(0, s.next_attempt_at - unix_now()));
    }

    /// Logs each route's change of state (one line per change, not per probe: a new failure
    /// reason is a change, a longer wait after the same reason is not) and rewrites
    /// watch.status when anything `leafmail-list --status` shows changed, the time of the
    /// next probe included.
    void show_conditions()
    {
        bool changed = shown_link_ != link_.has_default_route();
        shown_link_ = link_.has_default_route();
        for (auto& r : routes_) {
            const route_condition condition = r.backoff.condition();
            const auto at = r.backoff.backing_off_until();
            const std::int64_t until =
                condition == route_condition::backing_off && at ? unix_time_of(*at) : 0;
            const bool is_new_state = !r.shown_condition || *r.shown_condition != condition ||
                                      r.backoff.last_failure() != r.shown_failure;
            if (!is_new_state && until == r.shown_until)
                continue;
            changed = true;
            r.shown_until = until;
            if (!is_new_state)
                continue; // only the next probe moved: the status says so, the log need not
            if (!r.shown_condition || *r.shown_condition != condition)
                r.since = unix_now();
            r.shown_condition = condition;
            r.shown_failure = r.backoff.last_failure();
            log_condition(r, at);
        }
        if (changed)
            write_status();
    }

    void log_condition(const route_state& r, std::optional<clock::time_point> until)
    {
        switch (*r.shown_condition) {
        case route_condition::ok:
            log::info(log::fields({{"event", "route-ok"}, {"route", r.name}, {"relay", r.relay}}));
            break;
        case route_condition::backing_off:
            log::info(log::fields({{"event", "route-backing-off"},
                                   {"route", r.name},
                                   {"relay", r.relay},
                                   {"until", until ? wall_clock_text(*until) : std::string()},
                                   {"reason", r.backoff.last_failure()}}));
            break;
        case route_condition::waiting_for_link:
            log::info(log::fields(
                {{"event", "route-waiting-for-link"}, {"route", r.name}, {"relay", r.relay}}));
            break;
        }
    }

    void write_status()
    {
        spool::watch_record record;
        record.updated_at = unix_now();
        record.has_link = link_.has_default_route();
        for (const auto& r : routes_)
            record.routes.push_back({r.name, std::string(to_string(*r.shown_condition)), r.since,
                                     r.shown_until, r.shown_failure});
        try {
            spool_.save_watch_status(record);
        } catch (const std::exception& e) {
            // The relaying goes on; only `leafmail-list --status` is behind.
            log::warning(log::fields({{"event", "status-not-written"}, {"error", e.what()}}));
        }
    }

    // --- ending ---

    void on_signal(int signal)
    {
        log::info(log::fields({{"event", "stopping"},
                               {"signal", signal == SIGTERM ? "TERM" : "INT"},
                               {"in-flight", round_running_ ? "finishing" : "none"}}));
        stopping_ = true;
        stop_ = true;
        if (!round_running_)
            shut_down();
    }

    void fail(std::exception_ptr error)
    {
        failure_ = error;
        stopping_ = true;
        stop_ = true;
        if (!round_running_)
            shut_down();
    }

    void shut_down()
    {
        boost::system::error_code ignored;
        timer_.cancel();
        dump_timer_.cancel();
        netlink_.close(ignored);
        inotify_.close(ignored);
        kicks_.close(ignored);
        signals_.cancel(ignored);
        io_.stop();
    }

    const config& settings_;
    const watch_options& options_;
    spool::spool& spool_;
    relay::flush_options flush_options_;

    asio::io_context io_;
    asio::signal_set signals_{io_, SIGTERM, SIGINT};
    asio::basic_raw_socket<asio::generic::raw_protocol> netlink_{io_};
    asio::generic::raw_protocol::endpoint netlink_sender_;
    std::vector<std::uint8_t> netlink_buffer_ = std::vector<std::uint8_t>(read_buffer_size);
    std::uint32_t dump_sequence_ = 1;
    asio::steady_timer dump_timer_{io_};
    asio::posix::stream_descriptor inotify_{io_};
    std::vector<std::uint8_t> inotify_buffer_ = std::vector<std::uint8_t>(read_buffer_size);
    asio::local::stream_protocol::acceptor kicks_{io_};
    asio::steady_timer timer_{io_};

    link_state link_;
    std::vector<route_state> routes_; // from the moment the route table is known
    bool deciding_ = false;
    bool queue_had_mail_ = false; // mail before that moment (or at start)
    bool early_kick_ = false;     // a kick before that moment
    std::optional<bool> shown_link_;

    std::thread round_thread_;
    bool round_running_ = false;
    std::atomic<bool> stop_{false};
    bool stopping_ = false;
    std::exception_ptr failure_;
};

} // namespace

void run_watcher(const config& settings, const watch_options& options)
{
    relay::check_relay_settings(settings);
    become_spool_owner(settings.spool, settings.receiver.user); // root never works in it
    spool::spool spool(settings.spool, false);
    const auto watcher_lock = spool.try_lock_watcher();
    if (!watcher_lock)
        throw std::system_error(EBUSY, std::generic_category(),
                                "another watcher already runs on " + settings.spool.string());
    watcher w(settings, options, spool);
    w.run();
}

kick_result kick_watcher(const config& settings)
{
    become_spool_owner(settings.spool, settings.receiver.user); // root never works in it
    spool::spool spool(settings.spool, false);
    if (!spool.is_watcher_running())
        return kick_result::no_watcher;
    const int fd = spool.connect_watcher_socket();
    if (fd < 0) {
        if (errno == ENOENT || errno == ECONNREFUSED)
            return kick_result::no_watcher; // it just ended
        throw std::system_error(errno, std::generic_category(),
                                "cannot connect to the watcher on " + settings.spool.string());
    }
    // The watcher answers "ok" at once; a watcher that does not within a few seconds is hung.
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 5000);
    char answer[8] = {};
    const ssize_t n = ready > 0 ? ::read(fd, answer, sizeof answer) : -1;
    const int error = ready == 0 ? ETIMEDOUT : errno;
    ::close(fd);
    if (n >= 2 && answer[0] == 'o' && answer[1] == 'k')
        return kick_result::kicked;
    throw std::system_error(n < 0 ? error : EPROTO, std::generic_category(),
                            "the watcher on " + settings.spool.string() + " did not answer");
}

} // namespace leafmail::watch
