#include "leafmail/relay/flush.hpp"

#include "leafmail/exit_status.hpp"
#include "leafmail/log.hpp"
#include "leafmail/net/relay_connection.hpp"
#include "leafmail/privileges.hpp"
#include "leafmail/relay/delivery.hpp"
#include "leafmail/relay/queue_relay.hpp"
#include "leafmail/relay/relay_settings.hpp"
#include "leafmail/routes.hpp"
#include "leafmail/spool/spool.hpp"
#include "leafmail/text.hpp"
#include "leafmail/watch/retry_schedule.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

namespace leafmail::relay {

namespace {

std::int64_t system_now()
{
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void dry_run(spool::spool& spool, const config& settings, const std::vector<std::string>& routes,
             std::int64_t now, flush_summary& summary)
{
    // Addresses come from whoever queued the mail: shown escaped (text.hpp).
    for (const auto& id : spool.list(spool::area::queue)) {
        std::optional<spool::envelope> env;
        try {
            env = spool.load(spool::area::queue, id);
        } catch (const spool::corrupt_entry& e) {
            std::cout << id << " corrupt (" << text::escape_controls(e.what()) << ")\n";
            continue;
        }
        if (!env || !env->has_pending())
            continue;
        const std::string route = route_name_for_sender(settings, env->reverse_path);
        if (std::find(routes.begin(), routes.end(), route) == routes.end())
            continue;
        const relay_settings& relay = *relay_of_route(settings, route);
        std::string to;
        for (const auto& r : env->recipients)
            if (r.state == spool::recipient_state::pending)
                to += (to.empty() ? "<" : ",<") + text::escape_controls(r.address) + ">";
        std::cout << id << " from=<" << text::escape_controls(env->reverse_path) << "> to=" << to
                  << " size=" << env->content_size << " via=" << relay.host() << ":" << relay.port()
                  << " route=" << route
                  << (is_expired(*env, now, settings.relay.max_queue_age)
                          ? " (expired: would bounce)"
                          : "")
                  << "\n";
        ++summary.deferred;
    }
    std::cout.flush();
}

// Everything one route needs to relay, made before the spool is touched (config errors).
struct route_plan {
    std::string name;
    config settings; // the configuration as this route sees it
    smtp::client_options client;
    std::unique_ptr<net::asio::ssl::context> tls;
    net::relay_endpoint endpoint;
};

route_plan plan_route(const config& settings, const std::string& name, bool verbose)
{
    route_plan plan{name, settings_for_route(settings, name), {}, nullptr, {}};
    try {
        check_relay_settings(plan.settings);
        plan.client = client_options_for(plan.settings);
        plan.tls = std::make_unique<net::asio::ssl::context>(tls_context_for(plan.settings));
    } catch (const config_error& e) {
        if (name == default_route_name)
            throw;
        throw config_error("[route " + name + "]: " + e.what());
    }
    plan.endpoint = endpoint_for(plan.settings, verbose);
    return plan;
}

std::string relay_name_of(const route_plan& plan)
{
    return plan.endpoint.host + ":" + std::to_string(plan.endpoint.port);
}

/// Relays one route's entries over its own connection(s), AUTH once per connection. Returns
/// why the route could not be used (its mail waits, each entry it meant to send records the
/// attempt; the other routes go on), or nullopt when it could.
std::optional<std::string> relay_route(route_plan& plan, queue_relay& source,
                                       const flush_options& options, flush_summary& summary,
                                       std::mutex& summary_mutex)
{
    const std::string relay_name = relay_name_of(plan);
    // The secret is asked for only when the route has mail (a password manager may prompt).
    if (const auto why = fetch_command_secrets(plan.settings.relay, plan.client)) {
        log::warning(
            log::fields({{"event", "route-deferred"}, {"route", plan.name}, {"reason", *why}}));
        source.record_unreached(*why, options.count_unreached_attempts);
        return why;
    }
    bool usable = true;
    std::string unusable_because; // guarded by summary_mutex
    auto connection_loop = [&] {
        while (source.has_work()) {
            net::relay_connection_result r =
                net::relay_over_one_connection(*plan.tls, plan.endpoint, plan.client, source);
            std::string why = r.failure ? r.failure->to_string() : std::string();
            log::write(
                options.log_each_connection ? log::level::info : log::level::debug,
                log::fields({{"event", r.failure ? "connection-failed" : "connection-closed"},
                             {"route", plan.name},
                             {"relay", relay_name},
                             {"messages", std::to_string(r.messages_attempted)},
                             {"reason", why.empty() ? "done" : why}}));
            {
                std::lock_guard lock(summary_mutex);
                summary.connected = summary.connected || r.connected;
                if (!r.connected || (r.failure && r.messages_attempted == 0))
                    summary.connection_failure = why.empty() ? "connection failed" : why;
            }
            if (!r.connected) {
                std::lock_guard lock(summary_mutex);
                summary.smarthost_unreachable = true;
                usable = false;
                unusable_because = why.empty() ? "connection failed" : why;
                break;
            }
            if (r.authentication_required) {
                // Our configuration's fault: every message waits, nothing bounces (the core
                // deferred them), and the operator gets one line saying what to set.
                log::error(log::fields({{"event", "authentication-required"},
                                        {"route", plan.name},
                                        {"relay", relay_name},
                                        {"hint", "the smarthost requires AUTH: set auth-user and "
                                                 "auth-password-file"}}));
                std::lock_guard lock(summary_mutex);
                summary.authentication_required = true;
                summary.connection_failure = why;
                usable = false;
                unusable_because = why + " (the smarthost requires AUTH: set auth-user and "
                                         "auth-password-file)";
                break;
            }
            // A connection that failed before any message went out would fail again the same
            // way (authentication, TLS, a refusing greeting): stop, the rest waits.
            if (r.failure && r.messages_attempted == 0) {
                std::lock_guard lock(summary_mutex);
                usable = false;
                unusable_because = why;
                break;
            }
        }
    };
    const std::size_t connections = std::max<std::size_t>(1, plan.settings.relay.connections);
    std::exception_ptr failure;
    if (connections == 1) {
        connection_loop();
    } else {
        std::vector<std::thread> threads;
        std::mutex failure_mutex;
        for (std::size_t i = 0; i < connections; ++i)
            threads.emplace_back([&] {
                try {
                    connection_loop();
                } catch (...) {
                    std::lock_guard lock(failure_mutex);
                    failure = std::current_exception();
                }
            });
        for (auto& t : threads)
            t.join();
    }
    if (failure)
        std::rethrow_exception(failure);
    if (usable)
        return std::nullopt;
    // Issue 11: a failure before MAIL is not hidden in the log; every entry the route meant
    // to send says why it waits (leafmail-list shows it).
    source.record_unreached(unusable_because, options.count_unreached_attempts);
    return unusable_because;
}

// Entries still pending whose route was run: the deferred count when routes split the queue
// (each relay saw only its own entries).
std::size_t count_pending_on_routes(spool::spool& spool, const config& settings,
                                    const std::vector<std::string>& routes)
{
    std::size_t n = 0;
    for (const auto& id : spool.list(spool::area::queue)) {
        try {
            const auto env = spool.load(spool::area::queue, id);
            if (env && env->has_pending() &&
                std::find(routes.begin(), routes.end(),
                          route_name_for_sender(settings, env->reverse_path)) != routes.end())
                ++n;
        } catch (const std::exception&) {
            ++n; // unreadable now (being moved, corrupt): counted rather than missed
        }
    }
    return n;
}

spool::route_attempt attempt_of(const route_plan& plan, const queue_relay& source,
                                const std::optional<std::string>& unusable, std::int64_t now)
{
    spool::route_attempt a;
    a.route = plan.name;
    a.smarthost = relay_name_of(plan);
    a.at = now;
    a.sent = source.sent();
    a.failed = source.failed();
    a.deferred = source.count_still_pending();
    if (unusable) {
        a.result = "failed";
        a.reason = *unusable;
    } else if (a.deferred > 0) {
        a.result = "deferred";
        a.reason = source.last_deferral();
    } else {
        a.result = "ok";
    }
    return a;
}

/// Writes flush.status (under the flush lock): this flush's routes replace their earlier
/// attempts, routes it had no mail for keep theirs, routes no longer configured go. A status
/// that cannot be written is logged; it never fails the flush, whose work is recorded.
void record_status(spool::spool& spool, const config& settings, const flush_summary& summary,
                   std::vector<spool::route_attempt> attempts, std::int64_t now)
{
    spool::flush_record record;
    record.finished_at = now;
    record.result = exit_status_of(summary) == exit_status::ok ? "ok" : "deferred";
    record.summary = summary_line(summary);
    const auto previous = spool.load_flush_status();
    if (!previous.problem.empty())
        log::warning(log::fields({{"event", "status-replaced"}, {"reason", previous.problem}}));
    for (const auto& name : route_names(settings)) {
        auto by_name = [&](const spool::route_attempt& a) { return a.route == name; };
        if (auto it = std::find_if(attempts.begin(), attempts.end(), by_name); it != attempts.end())
            record.routes.push_back(std::move(*it));
        else if (previous.value)
            if (auto old = std::find_if(previous.value->routes.begin(),
                                        previous.value->routes.end(), by_name);
                old != previous.value->routes.end())
                record.routes.push_back(*old);
    }
    try {
        spool.save_flush_status(record);
    } catch (const std::exception& e) {
        log::warning(log::fields({{"event", "status-not-written"}, {"error", e.what()}}));
    }
}

} // namespace

flush_summary run_flush(const config& settings, const flush_options& options)
{
    auto started = std::chrono::steady_clock::now();
    auto now = options.now ? options.now : std::function<std::int64_t()>(system_now);
    flush_summary summary;
    auto finish = [&] {
        summary.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return summary;
    };

    check_relay_settings(settings);
    const std::vector<std::string> routes = route_names(settings, options.route);
    // RFC 5321 section 4.1.1.1 wants our fully qualified name in EHLO; many smarthosts refuse
    // a bare host name. Said once per flush, as no DNS is asked to complete it.
    if (!is_dotted_name(settings.relay.helo))
        log::warning(log::fields({{"event", "helo-not-qualified"},
                                  {"helo", settings.relay.helo},
                                  {"hint", "set hostname, domain or helo to a dotted name"}}));
    become_spool_owner(settings.spool, settings.receiver.user); // root never works in it
    spool::spool spool(settings.spool, false);
    if (options.dry_run) {
        // What a real run would refuse to start with (password file, ca-file) is said now,
        // not at the first flush that has mail. Secret commands are not run: they may prompt.
        for (const auto& name : routes)
            static_cast<void>(plan_route(settings, name, options.verbose));
        dry_run(spool, settings, routes, now(), summary);
        summary.deferred = 0; // nothing was attempted; the listing is the answer
        return finish();
    }
    // Everything that can refuse to start does so before the spool is touched.
    std::vector<route_plan> plans;
    for (const auto& name : routes)
        plans.push_back(plan_route(settings, name, options.verbose));

    // One flush at a time (cron and ip-up firing together): the second waits, then flushes
    // what the first left.
    auto flush_lock = spool.lock_flush(options.lock_timeout);
    if (!flush_lock) {
        summary.lock_busy = true;
        log::warning(
            log::fields({{"event", "busy"}, {"reason", "another flush holds the spool lock"}}));
        return finish();
    }
    spool.recover();

    // With one route (no sections), the relay takes every entry, as it always did.
    const bool split = !settings.routes.empty();
    std::mutex summary_mutex;
    bool expired = false;
    std::size_t pending_single = 0;
    std::vector<spool::route_attempt> attempts; // the routes that had mail, in order
    for (auto& plan : plans) {
        queue_relay_options queue_options = queue_options_for(plan.settings, now);
        queue_options.due_only = options.due_only;
        queue_options.stop = options.stop;
        queue_options.linger = options.linger;
        queue_options.random = watch::system_random_source();
        if (split)
            queue_options.takes = [&settings, name = plan.name](const spool::envelope& env) {
                return route_name_for_sender(settings, env.reverse_path) == name;
            };
        queue_relay source(spool, std::move(queue_options));
        if (!expired) {
            source.expire_old_entries(); // whatever the route: it is sent nowhere
            source.warn_delayed_entries();
            expired = true;
        }
        if (source.has_work()) {
            const auto unusable = relay_route(plan, source, options, summary, summary_mutex);
            if (unusable)
                ++summary.routes_deferred;
            attempts.push_back(attempt_of(plan, source, unusable, now()));
        }
        summary.sent += source.sent();
        summary.failed += source.failed();
        summary.bounces += source.bounces();
        summary.delay_notices += source.delay_notices();
        summary.unconfirmed += source.count_unconfirmed();
        if (const std::int64_t next = source.next_attempt_at();
            next != 0 && (summary.next_attempt_at == 0 || next < summary.next_attempt_at))
            summary.next_attempt_at = next;
        if (!split)
            pending_single = source.count_still_pending();
    }
    summary.deferred = split ? count_pending_on_routes(spool, settings, routes) : pending_single;
    finish();
    record_status(spool, settings, summary, std::move(attempts), now());
    return summary;
}

namespace {

// A job source with nothing to send: the session goes greeting, EHLO, TLS, AUTH, QUIT.
class no_jobs : public net::relay_job_source {
public:
    std::optional<net::relay_job> next() override { return std::nullopt; }
    void finished(const smtp::message_result&) override {}
};

std::string describe_success(const route_plan& plan, const net::relay_connection_result& r)
{
    std::string text = "ok (" + plan.endpoint.host + ":" + std::to_string(plan.endpoint.port);
    switch (plan.client.tls) {
    case smtp::client_tls::none:
        text += ", no TLS";
        break;
    case smtp::client_tls::starttls:
        text += ", STARTTLS " + r.tls_version;
        break;
    case smtp::client_tls::implicit:
        text += ", TLS " + r.tls_version;
        break;
    }
    text += r.auth_mechanism.empty() ? ", no AUTH" : ", AUTH " + r.auth_mechanism;
    return text + ")";
}

} // namespace

int check_routes(const config& settings, std::string_view only, bool verbose, std::ostream& out)
{
    check_relay_settings(settings);
    std::vector<route_plan> plans;
    for (const auto& name : route_names(settings, only))
        plans.push_back(plan_route(settings, name, verbose)); // config errors before any line
    int status = exit_status::ok;
    for (auto& plan : plans) {
        std::string line;
        if (const auto why = fetch_command_secrets(plan.settings.relay, plan.client)) {
            line = "failed (" + *why + ")";
        } else {
            no_jobs nothing;
            const auto r =
                net::relay_over_one_connection(*plan.tls, plan.endpoint, plan.client, nothing);
            line = r.failure ? "failed (" + plan.endpoint.host + ":" +
                                   std::to_string(plan.endpoint.port) + ": " +
                                   r.failure->to_string() + ")"
                             : describe_success(plan, r);
        }
        if (line.rfind("ok", 0) != 0)
            status = exit_status::temp_fail;
        // The failure may quote the smarthost's reply: escaped (text.hpp).
        out << "route " << plan.name << ": " << text::escape_controls(line) << std::endl;
        log::info(log::fields({{"event", "check"}, {"route", plan.name}, {"result", line}}));
    }
    return status;
}

int exit_status_of(const flush_summary& summary)
{
    if (summary.lock_busy || summary.deferred > 0)
        return exit_status::temp_fail;
    return exit_status::ok;
}

std::string summary_line(const flush_summary& summary)
{
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.2f", summary.seconds);
    std::string line = "sent " + std::to_string(summary.sent) + ", deferred " +
                       std::to_string(summary.deferred) + ", failed " +
                       std::to_string(summary.failed);
    if (summary.unconfirmed > 0)
        line += ", unconfirmed " + std::to_string(summary.unconfirmed);
    return line + " in " + seconds + " s";
}

} // namespace leafmail::relay
