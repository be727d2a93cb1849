#include "leafmail/watch/watcher.hpp"

#include "leafmail/log.hpp"
#include "leafmail/net/asio.hpp"
#include "leafmail/privileges.hpp"
#include "leafmail/relay/flush.hpp"
#include "leafmail/relay/relay_settings.hpp"
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

/// Names in one inotify read that are committed entries (queue ids; not state files, not
/// temporaries), or true for an overflow, when events were lost and anything may be new.
bool has_new_entry(const std::uint8_t* data, std::size_t size)
{
    bool found = false;
    std::size_t offset = 0;
    while (size - offset >= sizeof(inotify_event)) {
        inotify_event event{};
        std::memcpy(&event, data + offset, sizeof event);
        const std::size_t total = sizeof event + event.len;
        if (total > size - offset)
            break;
        if (event.mask & IN_Q_OVERFLOW)
            found = true;
        const char* name = reinterpret_cast<const char*>(data + offset + sizeof event);
        if (event.len > 0 &&
            spool::is_valid_queue_id(std::string_view(name, ::strnlen(name, event.len))))
            found = true;
        offset += total;
    }
    return found;
}

class watcher {
public:
    watcher(const config& settings, const watch_options& options, spool::spool& spool)
        : settings_(settings), options_(options), spool_(spool)
    {
        flush_options_.lock_timeout = options.lock_timeout;
        flush_options_.verbose = options.verbose;
        flush_options_.stop = &stop_;
        flush_options_.log_each_connection = false;
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
        queue_has_mail_ = !spool_.list(spool::area::queue).empty();
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
            if (!ec && !backoff_) {
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
                if (!backoff_)
                    start_deciding(link_.has_default_route());
                continue;
            }
            const auto change = link_.apply(event);
            if (!backoff_)
                continue; // still reading the table we started with: no event yet
            if (change == link_state::change::link_up) {
                log::info(
                    log::fields({{"event", "link-up"},
                                 {"reason", event.what == netlink_event::kind::global_address_added
                                                ? "new global address"
                                                : "new default route"}}));
                backoff_->link_up(now);
                send_everything_ = true;
            } else if (change == link_state::change::link_down) {
                log::info(log::fields({{"event", "link-down"}, {"reason", "no default route"}}));
                backoff_->link_down(now);
            }
        }
        evaluate();
    }

    void start_deciding(bool has_default_route)
    {
        backoff_.emplace(retry_policy{settings_.relay.retry_min, settings_.relay.retry_max},
                         settings_.relay.auto_connect, has_default_route, system_random_source());
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
                if (has_new_entry(inotify_buffer_.data(), n)) {
                    queue_has_mail_ = true;
                    if (backoff_)
                        backoff_->new_mail(clock::now());
                    else
                        early_mail_ = true;
                    evaluate();
                }
                read_queue_events();
            });
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
                    if (backoff_)
                        backoff_->kick(clock::now());
                    else
                        early_kick_ = true;
                    send_everything_ = true;
                    // The answer is all the peer gets; nothing it sends is read.
                    boost::system::error_code ignored;
                    asio::write(peer, asio::buffer("ok\n", 3), ignored);
                    evaluate();
                }
                accept_kick();
            });
    }

    // --- deciding and relaying ---

    void evaluate()
    {
        if (!backoff_ || stopping_)
            return;
        const auto now = clock::now();
        if (early_mail_ || early_kick_) {
            if (early_mail_)
                backoff_->new_mail(now);
            if (early_kick_)
                backoff_->kick(now);
            early_mail_ = early_kick_ = false;
        }
        log_condition();
        if (round_running_)
            return; // decided again when the round ends
        const decision d = backoff_->decide(now, queue_has_mail_);
        switch (d.what) {
        case decision::kind::connect_now:
            timer_.cancel();
            start_round(now);
            break;
        case decision::kind::wait_until:
            timer_.expires_at(d.when);
            timer_.async_wait([this](const boost::system::error_code& ec) {
                if (!ec)
                    evaluate();
            });
            break;
        case decision::kind::idle:
        case decision::kind::paused:
            timer_.cancel();
            break;
        }
    }

    struct round_result {
        relay::flush_summary summary;
        std::exception_ptr error;
    };

    void start_round(clock::time_point now)
    {
        backoff_->connecting(now);
        round_running_ = true;
        // Entries keep their schedule, except after a link-up or a kick: then every wait
        // ends and everything pending goes.
        relay::flush_options round_options = flush_options_;
        round_options.due_only = !send_everything_;
        send_everything_ = false;
        round_thread_ = std::thread([this, round_options] {
            auto result = std::make_shared<round_result>();
            try {
                result->summary = relay::run_flush(settings_, round_options);
            } catch (...) {
                result->error = std::current_exception();
            }
            asio::post(io_, [this, result] { round_finished(*result); });
        });
    }

    void round_finished(const round_result& result)
    {
        round_thread_.join();
        round_running_ = false;
        const auto now = clock::now();
        if (result.error) {
            try {
                std::rethrow_exception(result.error);
            } catch (const config_error&) {
                fail(result.error);
                return;
            } catch (const std::exception& e) {
                // The spool or the disk: log, and try again on the schedule.
                log::error(log::fields({{"event", "round-failed"}, {"error", e.what()}}));
                backoff_->connect_failed(now, e.what());
            }
        } else {
            const auto& s = result.summary;
            if (s.lock_busy) {
                // A one-shot flush runs beside us: it sends what is there. Look again soon.
                backoff_->new_mail(now);
            } else if (!s.connection_failure.empty() && s.sent == 0) {
                backoff_->connect_failed(now, s.connection_failure);
            } else {
                backoff_->reached(now, mail_due_at(s, now));
            }
            // Mail that arrived during the round was announced by inotify and is fresh mail
            // for route_backoff; what is left over is what the round deferred.
            queue_has_mail_ = s.deferred > 0 || s.lock_busy;
            if (s.sent + s.failed > 0)
                log::info(log::fields({{"event", "relayed"},
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
        const auto unix_now = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
        return now + std::chrono::seconds(std::max<std::int64_t>(0, s.next_attempt_at - unix_now));
    }

    void log_condition()
    {
        const route_condition now_condition = backoff_->condition();
        // One line per change of state, not per probe: a new failure reason is a change, a
        // longer wait after the same reason is not.
        if (last_condition_ && *last_condition_ == now_condition &&
            backoff_->last_failure() == last_failure_)
            return;
        std::string until;
        if (const auto at = backoff_->backing_off_until())
            until = wall_clock_text(*at);
        switch (now_condition) {
        case route_condition::ok:
            log::info(log::fields({{"event", "route-ok"}, {"relay", settings_.relay.smarthost}}));
            break;
        case route_condition::backing_off:
            log::info(log::fields({{"event", "route-backing-off"},
                                   {"relay", settings_.relay.smarthost},
                                   {"until", until},
                                   {"reason", backoff_->last_failure()}}));
            break;
        case route_condition::waiting_for_link:
            log::info(log::fields(
                {{"event", "route-waiting-for-link"}, {"relay", settings_.relay.smarthost}}));
            break;
        }
        last_condition_ = now_condition;
        last_failure_ = backoff_->last_failure();
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
    std::optional<route_backoff> backoff_; // from the moment the route table is known
    bool early_mail_ = false;              // events before that moment
    bool early_kick_ = false;
    bool queue_has_mail_ = false;
    bool send_everything_ = false; // the next round ignores the entries' schedule
    std::optional<route_condition> last_condition_;
    std::string last_failure_;

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
