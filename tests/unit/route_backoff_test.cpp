#include "leafmail/watch/route_backoff.hpp"

#include <catch2/catch.hpp>

using namespace leafmail::watch;
using namespace std::chrono_literals;
using kind = decision::kind;

namespace {

const clock::time_point t0 = clock::time_point{} + 1000h;

route_backoff make(auto_connect mode, bool has_route, retry_policy policy = {5s, 60s})
{
    return route_backoff(policy, mode, has_route, [] { return 0.0; });
}

} // namespace

TEST_CASE("auto-connect names read both ways")
{
    CHECK(auto_connect_from_string("always") == auto_connect::always);
    CHECK(auto_connect_from_string("on-link") == auto_connect::on_link);
    CHECK_FALSE(auto_connect_from_string("sometimes"));
    CHECK(to_string(auto_connect::on_link) == "on-link");
}

TEST_CASE("always connects at start when mail is queued and a default route exists")
{
    auto route = make(auto_connect::always, true);
    CHECK(route.decide(t0, true).what == kind::connect_now);
    CHECK(route.decide(t0, false).what == kind::idle);
    CHECK(route.condition() == route_condition::ok);
}

TEST_CASE("always without a default route waits for the link, then goes at once")
{
    auto route = make(auto_connect::always, false);
    CHECK(route.decide(t0, true).what == kind::paused);
    CHECK(route.condition() == route_condition::waiting_for_link);
    route.link_up(t0 + 1s);
    CHECK(route.decide(t0 + 1s, true).what == kind::connect_now);
    route.link_down(t0 + 2s);
    CHECK(route.decide(t0 + 2s, true).what == kind::paused);
}

TEST_CASE("new mail is gathered briefly so that a burst goes in one connection")
{
    auto route = make(auto_connect::always, true);
    route.connecting(t0);
    route.reached(t0, std::nullopt);
    CHECK(route.decide(t0, true).what == kind::idle); // queued mail was tried: nothing due
    route.new_mail(t0 + 1s);
    route.new_mail(t0 + 1s + 100ms);
    const auto d = route.decide(t0 + 1s + 100ms, true);
    CHECK(d.what == kind::wait_until);
    CHECK(d.when == t0 + 1s + 100ms + route_backoff::coalesce_quiet);
    CHECK(route.decide(d.when, true).what == kind::connect_now);
    route.connecting(d.when);
    route.reached(d.when + 1s, std::nullopt);
    CHECK(route.decide(d.when + 1s, false).what == kind::idle);
}

TEST_CASE("an unreachable smarthost is probed with doubling waits, new mail or not")
{
    auto route = make(auto_connect::always, true);
    auto now = t0;
    std::vector<std::chrono::seconds> waits;
    for (int i = 0; i < 6; ++i) {
        REQUIRE(route.decide(now, true).what == kind::connect_now);
        route.connecting(now);
        route.connect_failed(now, "connection refused");
        route.new_mail(now + 1s); // mail keeps arriving: it must not cause a probe
        auto d = route.decide(now + 1s, true);
        REQUIRE(d.what == kind::wait_until);
        waits.push_back(std::chrono::duration_cast<std::chrono::seconds>(d.when - now));
        now = d.when;
    }
    CHECK(waits == std::vector<std::chrono::seconds>{5s, 10s, 20s, 40s, 60s, 60s});
    CHECK(route.condition() == route_condition::backing_off);
    CHECK(route.last_failure() == "connection refused");
    CHECK(route.consecutive_failures() == 6);
}

TEST_CASE("ten minutes of a dead smarthost with retry-min 5s cost at most a dozen probes")
{
    auto route = make(auto_connect::always, true, {5s, 3600s});
    auto now = t0;
    int probes = 0;
    while (now < t0 + 10min) {
        auto d = route.decide(now, true);
        if (d.what == kind::connect_now) {
            ++probes;
            route.connecting(now);
            route.connect_failed(now, "timeout");
            continue;
        }
        REQUIRE(d.what == kind::wait_until);
        now = d.when;
    }
    CHECK(probes <= 12);
    CHECK(probes >= 5);
}

TEST_CASE("a link-up or a kick ends the backoff at once")
{
    auto route = make(auto_connect::always, true);
    route.connecting(t0);
    route.connect_failed(t0, "refused");
    route.connecting(t0 + 5s);
    route.connect_failed(t0 + 5s, "refused");
    CHECK(route.decide(t0 + 6s, true).what == kind::wait_until);
    route.link_up(t0 + 6s);
    CHECK(route.decide(t0 + 6s, true).what == kind::connect_now);
    CHECK(route.condition() == route_condition::ok);

    route.connecting(t0 + 6s);
    route.connect_failed(t0 + 6s, "refused");
    CHECK(route.decide(t0 + 7s, true).what == kind::wait_until);
    route.kick(t0 + 7s);
    CHECK(route.decide(t0 + 7s, true).what == kind::connect_now);
    CHECK(route.consecutive_failures() == 0);
}

TEST_CASE("on-link never connects by itself, not even with a default route and mail")
{
    auto route = make(auto_connect::on_link, true);
    CHECK(route.decide(t0, true).what == kind::paused);
    route.new_mail(t0 + 1s);
    CHECK(route.decide(t0 + 10s, true).what == kind::paused);
    CHECK(route.condition() == route_condition::waiting_for_link);
}

TEST_CASE("on-link connects after a link-up and keeps delivering new mail while the link stays")
{
    auto route = make(auto_connect::on_link, false);
    route.new_mail(t0);
    CHECK(route.decide(t0 + 1s, true).what == kind::paused);
    route.link_up(t0 + 2s);
    CHECK(route.decide(t0 + 2s, true).what == kind::connect_now);
    route.connecting(t0 + 2s);
    route.reached(t0 + 3s, std::nullopt);
    route.new_mail(t0 + 10s);
    CHECK(route.decide(t0 + 10s + route_backoff::coalesce_quiet, true).what == kind::connect_now);
    route.link_down(t0 + 20s);
    route.new_mail(t0 + 21s);
    CHECK(route.decide(t0 + 30s, true).what == kind::paused);
}

TEST_CASE("on-link connects once on a kick even without a route, then waits for the link")
{
    auto route = make(auto_connect::on_link, false);
    route.kick(t0);
    CHECK(route.decide(t0, true).what == kind::connect_now);
    route.connecting(t0);
    route.reached(t0 + 1s, t0 + 1min);
    CHECK(route.decide(t0 + 1h, true).what == kind::paused);
}

TEST_CASE("mail the smarthost deferred waits for its scheduled time, not retried at once")
{
    auto route = make(auto_connect::always, true);
    route.connecting(t0);
    route.reached(t0 + 1s, t0 + 61s); // the earliest entry left is due in a minute
    auto d = route.decide(t0 + 2s, true);
    CHECK(d.what == kind::wait_until);
    CHECK(d.when == t0 + 61s);
    CHECK(route.decide(t0 + 61s, true).what == kind::connect_now);
    route.connecting(t0 + 61s);
    route.reached(t0 + 62s, std::nullopt);
    CHECK(route.decide(t0 + 62s, true).what == kind::idle);
    // New mail is not held back by the schedule of older entries.
    route.reached(t0 + 63s, t0 + 1h);
    route.new_mail(t0 + 64s);
    CHECK(route.decide(t0 + 64s + route_backoff::coalesce_quiet, true).what == kind::connect_now);
}

TEST_CASE("a slow burst is gathered until it pauses")
{
    auto route = make(auto_connect::always, true);
    route.connecting(t0);
    route.reached(t0, std::nullopt);
    // Messages 200 ms apart (a disk with slow fsync): each one moves the round later.
    auto now = t0 + 1s;
    for (int i = 0; i < 4; ++i) {
        route.new_mail(now);
        const auto d = route.decide(now, true);
        REQUIRE(d.what == kind::wait_until);
        CHECK(d.when == now + route_backoff::coalesce_quiet);
        now += 200ms;
        REQUIRE(now < d.when);
    }
    // Quiet since t0 + 1.6 s: the round starts 250 ms after the last message.
    CHECK(route.decide(t0 + 1s + 600ms + 249ms, true).what == kind::wait_until);
    CHECK(route.decide(t0 + 1s + 600ms + 250ms, true).what == kind::connect_now);
}

TEST_CASE("a burst that never pauses goes at most one second after its first message")
{
    auto route = make(auto_connect::always, true);
    route.connecting(t0);
    route.reached(t0, std::nullopt);
    const auto first = t0 + 1s;
    for (auto at = first; at < first + 3s; at += 100ms) {
        route.new_mail(at);
        const auto d = route.decide(at, true);
        if (at >= first + route_backoff::coalesce_limit) {
            CHECK(d.what == kind::connect_now);
            break;
        }
        REQUIRE(d.what == kind::wait_until);
        CHECK(d.when <= first + route_backoff::coalesce_limit);
    }
    // The bound leaves room for the round within the 2-second promise.
    CHECK(route_backoff::coalesce_limit + route_backoff::coalesce_quiet < 2s);
    // After the round started, the next burst is timed from its own first message.
    route.connecting(first + 1s);
    route.reached(first + 1s + 300ms, std::nullopt);
    route.new_mail(first + 2s);
    CHECK(route.decide(first + 2s, true).when == first + 2s + route_backoff::coalesce_quiet);
}

TEST_CASE("each route backs off on its own while the other routes mail goes at once")
{
    auto down = make(auto_connect::always, true);
    auto up = make(auto_connect::always, true);
    const auto plan_at = [&](clock::time_point now) {
        return plan_round({{&down, true}, {&up, true}}, now);
    };
    // At start both have queued mail and go.
    CHECK(plan_at(t0).connect_now == std::vector<std::size_t>{0, 1});
    down.connecting(t0);
    up.connecting(t0);
    down.connect_failed(t0, "connection refused");
    up.reached(t0, std::nullopt);
    // New mail for both: the reachable route goes after the burst, the other waits for its
    // probe, and the plan wakes for whichever comes first.
    down.new_mail(t0 + 1s);
    up.new_mail(t0 + 1s);
    auto plan = plan_round({{&down, true}, {&up, true}}, t0 + 1s);
    CHECK(plan.connect_now.empty());
    REQUIRE(plan.wake_at);
    CHECK(*plan.wake_at == t0 + 1s + route_backoff::coalesce_quiet);
    plan = plan_at(*plan.wake_at);
    CHECK(plan.connect_now == std::vector<std::size_t>{1});
    REQUIRE(plan.wake_at);
    CHECK(*plan.wake_at == t0 + 5s); // retry-min: the down route's next probe
    up.connecting(t0 + 2s);
    up.reached(t0 + 2s, std::nullopt);
    CHECK(plan_round({{&down, true}, {&up, false}}, t0 + 5s).connect_now ==
          std::vector<std::size_t>{0});
    CHECK(down.condition() == route_condition::backing_off);
    CHECK(up.condition() == route_condition::ok);
}

TEST_CASE("a kick or a link-up resets every route's backoff")
{
    auto a = make(auto_connect::always, true);
    auto b = make(auto_connect::always, true);
    for (auto* r : {&a, &b}) {
        r->connecting(t0);
        r->connect_failed(t0, "refused");
    }
    CHECK(plan_round({{&a, true}, {&b, true}}, t0 + 1s).connect_now.empty());
    a.kick(t0 + 1s);
    b.kick(t0 + 1s);
    CHECK(plan_round({{&a, true}, {&b, true}}, t0 + 1s).connect_now ==
          std::vector<std::size_t>{0, 1});
    for (auto* r : {&a, &b}) {
        r->connecting(t0 + 1s);
        r->connect_failed(t0 + 1s, "refused");
    }
    a.link_up(t0 + 2s);
    b.link_up(t0 + 2s);
    CHECK(plan_round({{&a, true}, {&b, true}}, t0 + 2s).connect_now ==
          std::vector<std::size_t>{0, 1});
    CHECK(plan_round({{&a, false}, {&b, false}}, t0 + 2s).connect_now.empty()); // nothing queued
}
