#include "leafmail/watch/route_backoff.hpp"

#include <algorithm>
#include <utility>

namespace leafmail::watch {

std::string_view to_string(auto_connect mode)
{
    return mode == auto_connect::always ? "always" : "on-link";
}

std::optional<auto_connect> auto_connect_from_string(std::string_view text)
{
    if (text == "always")
        return auto_connect::always;
    if (text == "on-link")
        return auto_connect::on_link;
    return std::nullopt;
}

std::string_view to_string(route_condition condition)
{
    switch (condition) {
    case route_condition::ok:
        return "ok";
    case route_condition::backing_off:
        return "backing-off";
    case route_condition::waiting_for_link:
        return "waiting-for-link";
    }
    return "ok";
}

route_backoff::route_backoff(retry_policy policy, auto_connect mode, bool has_default_route,
                             random_source random)
    : policy_(policy), mode_(mode), random_(std::move(random)), has_link_(has_default_route),
      retry_at_(clock::time_point{}) // what is queued at start is due at once
{
}

void route_backoff::reset_backoff()
{
    failures_ = 0;
    probe_at_.reset();
    retry_at_ = clock::time_point{}; // everything queued is due at once
}

void route_backoff::link_up(clock::time_point)
{
    // Whatever failed before may work on the new link: every wait starts over.
    has_link_ = true;
    armed_ = true;
    reset_backoff();
}

void route_backoff::link_down(clock::time_point)
{
    has_link_ = false;
    armed_ = false;
}

void route_backoff::kick(clock::time_point)
{
    // A kick is a link-up said by ip-up, a dispatcher or a person. It allows one attempt
    // even when no default route is known (a point-to-point link whose route the kernel has
    // not announced yet); later ones still follow the link.
    armed_ = true;
    kicked_ = true;
    reset_backoff();
}

void route_backoff::new_mail(clock::time_point now)
{
    if (!fresh_mail_at_)
        fresh_mail_at_ = now;
    last_mail_at_ = now;
}

void route_backoff::connecting(clock::time_point)
{
    fresh_mail_at_.reset();
    last_mail_at_.reset();
    kicked_ = false;
}

void route_backoff::connect_failed(clock::time_point now, std::string reason)
{
    ++failures_;
    probe_at_ = now + retry_delay(policy_, failures_, random_ ? random_() : 0.0);
    last_failure_ = std::move(reason);
}

void route_backoff::reached(clock::time_point, std::optional<clock::time_point> mail_due_at)
{
    failures_ = 0;
    probe_at_.reset();
    last_failure_.clear();
    retry_at_ = mail_due_at;
}

bool route_backoff::may_connect() const
{
    if (kicked_)
        return true;
    if (mode_ == auto_connect::on_link)
        return armed_ && has_link_;
    return has_link_;
}

decision route_backoff::decide(clock::time_point now, bool queue_has_mail) const
{
    if (!queue_has_mail && !fresh_mail_at_)
        return {decision::kind::idle, {}};
    if (!may_connect())
        return {decision::kind::paused, {}};
    // An unreachable smarthost is probed on its schedule, new mail or not: no hammering.
    if (probe_at_ && now < *probe_at_ && !kicked_)
        return {decision::kind::wait_until, *probe_at_};
    if (kicked_)
        return {decision::kind::connect_now, {}};
    std::optional<clock::time_point> due;
    if (fresh_mail_at_) {
        // A burst whose messages come slower than one fsync apart (a slow disk, a script
        // sending one by one) is still one burst: wait until it pauses, within the bound.
        const auto quiet = (last_mail_at_ ? *last_mail_at_ : *fresh_mail_at_) + coalesce_quiet;
        due = std::min(quiet, *fresh_mail_at_ + coalesce_limit);
    }
    // Mail already queued goes when its retry time comes; none set means it was tried and
    // nothing was left deferred (what is queued is new and announced itself).
    if (queue_has_mail && retry_at_)
        due = due ? std::min(*due, *retry_at_) : *retry_at_;
    if (!due)
        return {decision::kind::idle, {}};
    if (*due <= now)
        return {decision::kind::connect_now, {}};
    return {decision::kind::wait_until, *due};
}

route_condition route_backoff::condition() const
{
    if (!may_connect())
        return route_condition::waiting_for_link;
    if (probe_at_)
        return route_condition::backing_off;
    return route_condition::ok;
}

round_plan plan_round(const std::vector<route_to_plan>& routes, clock::time_point now)
{
    round_plan plan;
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const decision d = routes[i].backoff->decide(now, routes[i].queue_has_mail);
        if (d.what == decision::kind::connect_now)
            plan.connect_now.push_back(i);
        else if (d.what == decision::kind::wait_until)
            plan.wake_at = plan.wake_at ? std::min(*plan.wake_at, d.when) : d.when;
    }
    return plan;
}

} // namespace leafmail::watch
