#pragma once
// The flush: under the spool's flush lock, run relay connections to the smarthost over a
// queue_relay (which walks queue/ in arrival order, records each outcome durably before the
// next message's content goes out, bounces and expires) and sum up. Only orchestration:
// settings come from relay_settings.hpp, the per-entry work is queue_relay.hpp's.
#include "leafmail/config.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace leafmail::relay {

struct flush_options {
    bool dry_run = false; // list what would be sent, change nothing
    /// Only entries whose scheduled next attempt has come (`--due-only`, the watcher); a plain
    /// flush is the user asking now and sends everything pending.
    bool due_only = false;
    std::chrono::milliseconds lock_timeout{std::chrono::minutes(5)};
    bool verbose = false;              // log the SMTP dialogue, secrets masked
    std::function<std::int64_t()> now; // Unix seconds; default the system clock
    std::string route;                 // flush only this route's mail; empty: every route
    /// When set and true, no further message is started: the one in flight finishes and the
    /// flush ends (the watcher's SIGTERM).
    const std::atomic<bool>* stop = nullptr;
    /// Each connection's end at info level; the watcher logs changes of state instead, so
    /// for it these are debug lines (one per probe would flood the log).
    bool log_each_connection = true;
    /// A connection with nothing left to send waits this long for new entries before QUIT
    /// (the watcher: a burst still arriving goes on the same connection); 0: no wait.
    std::chrono::milliseconds linger{0};
    /// A failure before MAIL adds one to each meant entry's attempt counter (a one-shot flush
    /// is someone asking to send now). The watcher records the time and the reason only: its
    /// probes of an unreachable route are not attempts to send (issue 14), however many.
    bool count_unreached_attempts = true;
};

struct flush_summary {
    std::size_t sent = 0;          // entries whose every recipient is now delivered
    std::size_t deferred = 0;      // entries still pending in queue/ afterwards (tried or not)
    std::size_t failed = 0;        // entries moved to failed/ (each with a bounce when allowed)
    std::size_t bounces = 0;       // notifications created
    std::size_t delay_notices = 0; // "delayed" warnings created (warn-after)
    // Entries whose final dot went out without a reply before the connection ended: they
    // may have been delivered and stay pending (counted in deferred too).
    std::size_t unconfirmed = 0;
    /// The earliest scheduled attempt among the entries this flush left pending (Unix
    /// seconds), 0 when none is known.
    std::int64_t next_attempt_at = 0;
    double seconds = 0;
    bool lock_busy = false; // another flush held the lock beyond lock_timeout
    bool smarthost_unreachable = false;
    std::size_t routes_deferred = 0; // routes that could not be used (secret, connection, AUTH)
    bool connected = false;          // at least one connection reached the smarthost
    bool authentication_required = false; // the smarthost wants AUTH, none is configured
    /// Why a connection failed before any message went out (unreachable, TLS, greeting,
    /// AUTH); empty when none did.
    std::string connection_failure;
};

/// Runs a flush. Throws config_error for settings that cannot work (no smarthost, a bad
/// password file, AUTH without TLS not allowed), std::system_error for spool failures.
[[nodiscard]] flush_summary run_flush(const config& settings, const flush_options& options);

/// leafmail-flush --check: for each route (or only `only`), connect, TLS, EHLO, AUTH and QUIT,
/// sending no mail and leaving the spool alone; one line per route on `out`, such as
/// "route work: ok (smtp.example.net:587, STARTTLS TLSv1.3, AUTH PLAIN)". Returns 0 when
/// every route works, 75 when one does not. Throws config_error.
[[nodiscard]] int check_routes(const config& settings, std::string_view only, bool verbose,
                               std::ostream& out);

/// sysexits: 0 when nothing is pending, 75 (EX_TEMPFAIL) when something was deferred or the
/// lock could not be had.
[[nodiscard]] int exit_status_of(const flush_summary& summary);

/// "sent N, deferred N, failed N in X s", with ", unconfirmed N" before " in" when N > 0
[[nodiscard]] std::string summary_line(const flush_summary& summary);

} // namespace leafmail::relay
