#pragma once
// What `leafmail-list --status` shows: the spool-wide status (the last flush per route, and a
// running watcher's view per route; spool/status.hpp), as text above the listing or alone,
// and as JSON (field names documented in leafmail-list(8); stable). Reads only; a status file
// the spool's owner spoiled is shown as a problem, never trusted further.
#include "leafmail/spool/spool.hpp"

#include <cstdint>
#include <ostream>

namespace leafmail::list {

struct status_report {
    spool::status_read<spool::flush_record> flush;
    spool::status_read<spool::watch_record> watch;
    bool watcher_running = false; // a watcher holds watch.lock now
};

/// Reads both status files and whether a watcher runs. Never throws for a bad status file.
[[nodiscard]] status_report read_status(const spool::spool& spool);

/// True when there is anything to say (a flush ran, a watcher runs, or a file is bad): the
/// plain listing shows the status only then, so a spool never flushed lists as before.
[[nodiscard]] bool has_news(const status_report& report);

/// The watcher's words for one route: "ok", "backing off until 10:42:07 (connection
/// refused)", "waiting for the link". until is shown in local time.
[[nodiscard]] std::string describe_route_view(const spool::route_view& view);

/// Text lines: the last flush and its routes, then the watcher and its routes. now: Unix
/// seconds, for ages.
void write_status(std::ostream& out, const status_report& report, std::int64_t now);

/// One JSON object (see leafmail-list(8)).
void write_status_json(std::ostream& out, const status_report& report);

} // namespace leafmail::list
