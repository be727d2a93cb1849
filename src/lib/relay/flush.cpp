#include "leafmail/relay/flush.hpp"

#include "leafmail/exit_status.hpp"
#include "leafmail/log.hpp"
#include "leafmail/net/relay_connection.hpp"
#include "leafmail/privileges.hpp"
#include "leafmail/relay/delivery.hpp"
#include "leafmail/relay/queue_relay.hpp"
#include "leafmail/relay/relay_settings.hpp"
#include "leafmail/spool/spool.hpp"
#include "leafmail/watch/retry_schedule.hpp"

#include <cstdio>
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

void dry_run(spool::spool& spool, const config& settings, std::int64_t now, flush_summary& summary)
{
    const auto& relay = settings.relay;
    for (const auto& id : spool.list(spool::area::queue)) {
        std::optional<spool::envelope> env;
        try {
            env = spool.load(spool::area::queue, id);
        } catch (const spool::corrupt_entry& e) {
            std::printf("%s corrupt (%s)\n", id.c_str(), e.what());
            continue;
        }
        if (!env || !env->has_pending())
            continue;
        std::string to;
        for (const auto& r : env->recipients)
            if (r.state == spool::recipient_state::pending)
                to += (to.empty() ? "<" : ",<") + r.address + ">";
        std::printf("%s from=<%s> to=%s size=%llu via=%s:%u%s\n", id.c_str(),
                    env->reverse_path.c_str(), to.c_str(),
                    static_cast<unsigned long long>(env->content_size), relay.host().c_str(),
                    static_cast<unsigned>(relay.port()),
                    is_expired(*env, now, relay.max_queue_age) ? " (expired: would bounce)" : "");
        ++summary.deferred;
    }
    std::fflush(stdout);
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
    // RFC 5321 section 4.1.1.1 wants our fully qualified name in EHLO; many smarthosts refuse
    // a bare host name. Said once per flush, as no DNS is asked to complete it.
    if (!is_dotted_name(settings.relay.helo))
        log::warning(log::fields({{"event", "helo-not-qualified"},
                                  {"helo", settings.relay.helo},
                                  {"hint", "set hostname, domain or helo to a dotted name"}}));
    become_spool_owner(settings.spool, settings.receiver.user); // root never works in it
    spool::spool spool(settings.spool, false);
    if (options.dry_run) {
        dry_run(spool, settings, now(), summary);
        summary.deferred = 0; // nothing was attempted; the listing is the answer
        return finish();
    }
    // Everything that can refuse to start does so before the spool is touched.
    const smtp::client_options client = client_options_for(settings);
    net::asio::ssl::context tls = tls_context_for(settings);
    const net::relay_endpoint endpoint = endpoint_for(settings, options.verbose);

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

    queue_relay_options queue_options = queue_options_for(settings, now);
    queue_options.due_only = options.due_only;
    queue_options.stop = options.stop;
    queue_options.random = watch::system_random_source();
    queue_relay source(spool, std::move(queue_options));
    source.expire_old_entries();
    source.warn_delayed_entries();

    std::mutex summary_mutex;
    auto connection_loop = [&] {
        while (source.has_work()) {
            net::relay_connection_result r =
                net::relay_over_one_connection(tls, endpoint, client, source);
            std::string why = r.failure ? r.failure->to_string() : std::string();
            log::write(
                options.log_each_connection ? log::level::info : log::level::debug,
                log::fields({{"event", r.failure ? "connection-failed" : "connection-closed"},
                             {"relay", endpoint.host + ":" + std::to_string(endpoint.port)},
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
                break;
            }
            if (r.authentication_required) {
                // Our configuration's fault: every message waits, nothing bounces (the core
                // deferred them), and the operator gets one line saying what to set.
                log::error(
                    log::fields({{"event", "authentication-required"},
                                 {"relay", endpoint.host + ":" + std::to_string(endpoint.port)},
                                 {"hint", "the smarthost requires AUTH: set auth-user and "
                                          "auth-password-file"}}));
                std::lock_guard lock(summary_mutex);
                summary.authentication_required = true;
                summary.connection_failure = why;
                break;
            }
            // A connection that failed before any message went out would fail again the same
            // way (authentication, TLS, a refusing greeting): stop, the rest waits.
            if (r.failure && r.messages_attempted == 0)
                break;
        }
    };
    std::size_t connections = std::max<std::size_t>(1, settings.relay.connections);
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

    summary.sent = source.sent();
    summary.failed = source.failed();
    summary.bounces = source.bounces();
    summary.delay_notices = source.delay_notices();
    summary.next_attempt_at = source.next_attempt_at();
    summary.deferred = source.count_still_pending();
    summary.unconfirmed = source.count_unconfirmed();
    return finish();
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
