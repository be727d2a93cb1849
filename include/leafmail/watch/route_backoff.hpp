#pragma once
// When the watcher may open a connection to one route's smarthost: events in (link up and
// down, kick, new mail, connection failed, smarthost reached), a decision out (connect now,
// wait until a time, idle, paused for the link). Pure: the caller passes the time, the
// jitter is injected, nothing here touches a socket, a file or a clock.
#include "leafmail/watch/auto_connect.hpp"
#include "leafmail/watch/retry_schedule.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::watch {

using clock = std::chrono::steady_clock;

/// What the route looks like from outside, for logs and `leafmail-list --status`.
enum class route_condition { ok, backing_off, waiting_for_link };
[[nodiscard]] std::string_view to_string(route_condition condition);

struct decision {
    enum class kind {
        connect_now, // open a connection and relay what is due
        wait_until,  // nothing to do before `when`; re-decide then (or on any event)
        idle,        // nothing queued: wait for an event
        paused,      // mail waits, but connecting is not allowed until a link event or kick
    };
    kind what = kind::idle;
    clock::time_point when{}; // for wait_until

    friend bool operator==(const decision&, const decision&) = default;
};

class route_backoff {
public:
    /// A burst of new mail is gathered until it goes quiet for this long, so that it goes in
    /// one connection...
    static constexpr std::chrono::milliseconds coalesce_quiet{250};
    /// ...but never longer than this after its first message: new mail leaves within 2 s of
    /// its acceptance (the round itself needs the rest).
    static constexpr std::chrono::milliseconds coalesce_limit{1000};

    /// has_default_route: the link state when the watcher starts (from the kernel's table).
    /// Starting counts as a link event for on_link only when the caller says so by a kick.
    route_backoff(retry_policy policy, auto_connect mode, bool has_default_route,
                  random_source random);

    // Events.
    void link_up(clock::time_point now);    // a new default route or a new global address
    void link_down(clock::time_point now);  // the last default route went away
    void kick(clock::time_point now);       // `leafmail-flush --kick`: as a link-up, and try now
    void new_mail(clock::time_point now);   // an entry appeared in queue/
    void connecting(clock::time_point now); // the caller acts on connect_now
    /// The smarthost could not be reached (refused, timeout, TLS or greeting failure before
    /// any message): probe again later, with backoff.
    void connect_failed(clock::time_point now, std::string reason);
    /// The smarthost was reached. mail_due_at: when the earliest entry it left pending is
    /// scheduled (each entry carries its next attempt time); nullopt when nothing was left.
    void reached(clock::time_point now, std::optional<clock::time_point> mail_due_at);

    /// What to do now. queue_has_mail: queue/ holds entries (new or deferred).
    [[nodiscard]] decision decide(clock::time_point now, bool queue_has_mail) const;

    [[nodiscard]] route_condition condition() const;
    [[nodiscard]] std::optional<clock::time_point> backing_off_until() const { return probe_at_; }
    [[nodiscard]] const std::string& last_failure() const { return last_failure_; }
    [[nodiscard]] std::uint32_t consecutive_failures() const { return failures_; }
    [[nodiscard]] bool has_default_route() const { return has_link_; }

private:
    [[nodiscard]] bool may_connect() const;
    void reset_backoff();

    retry_policy policy_;
    auto_connect mode_;
    random_source random_;
    bool has_link_ = false;
    bool armed_ = false;  // on_link: a link-up event or kick happened and the link stayed up
    bool kicked_ = false; // one attempt now whatever the link says
    std::optional<clock::time_point> fresh_mail_at_; // first new mail since the last connect
    std::optional<clock::time_point> last_mail_at_;  // latest new mail since the last connect
    std::uint32_t failures_ = 0;                     // consecutive unreachable probes
    std::optional<clock::time_point> probe_at_;      // unreachable: no connection before
    std::uint32_t deferrals_ = 0;                    // consecutive rounds that left mail
    std::optional<clock::time_point> retry_at_;      // deferred mail: next full attempt
    std::string last_failure_;
};

/// One route as plan_round sees it.
struct route_to_plan {
    const route_backoff* backoff = nullptr;
    bool queue_has_mail = false; // queue/ may hold mail of this route
};

/// Several routes, each with its own backoff (issue 14): which connect now, and when to look
/// again for the others. A route backing off never holds back another route's mail.
struct round_plan {
    std::vector<std::size_t> connect_now;     // indexes into the routes given
    std::optional<clock::time_point> wake_at; // the earliest wait_until among the rest
};
[[nodiscard]] round_plan plan_round(const std::vector<route_to_plan>& routes,
                                    clock::time_point now);

} // namespace leafmail::watch
