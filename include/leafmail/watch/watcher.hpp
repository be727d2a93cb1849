#pragma once
// `leafmail-flush --watch`: one event loop that listens to the kernel's routing netlink, to
// queue/ (inotify) and to kicks on the spool's watcher socket, and runs relaying rounds (the
// one-shot flush, under the same flush lock) when route_backoff says so. Owns no policy of
// its own: when to connect is route_backoff's, what to send is the flush's.
#include "leafmail/config.hpp"

#include <chrono>

namespace leafmail::watch {

struct watch_options {
    bool verbose = false; // log the SMTP dialogue of each round
    /// How long a round waits for a one-shot flush beside it before trying again later.
    std::chrono::milliseconds lock_timeout{std::chrono::seconds(10)};
};

/// Runs until SIGTERM or SIGINT; a round in flight finishes its current message first.
/// Returns normally after a signal. Throws config_error for unusable settings, and
/// std::system_error when the spool cannot be watched or another watcher already runs
/// (EBUSY).
void run_watcher(const config& settings, const watch_options& options);

enum class kick_result { kicked, no_watcher };

/// Tells a running watcher that the link is up: it resets every backoff and tries at once.
/// Throws std::system_error when a watcher runs but does not answer.
[[nodiscard]] kick_result kick_watcher(const config& settings);

} // namespace leafmail::watch
