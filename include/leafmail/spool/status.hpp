#pragma once
// The spool-wide status: what the last flush did per route (flush.status, written by every
// flush under the flush lock) and what a running watcher sees per route (watch.status,
// written by the watcher under watch.lock), so that `leafmail-list --status` can say why
// mail waits. Pure encoding and decoding here; spool.hpp reads and writes the files. The
// files belong to the spool's owner, who may be hostile: decoding bounds every size and
// never throws; a bad file is a problem to show, not a crash.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::spool {

/// How one route fared the last time a flush had mail for it.
struct route_attempt {
    std::string route;          // "default" or a [route NAME]
    std::string smarthost;      // host:port it tried
    std::int64_t at = 0;        // Unix seconds the attempt ended
    std::string result;         // "ok", "deferred" (some mail left) or "failed" (before MAIL)
    std::string reason;         // why, one line; empty for ok
    std::uint64_t sent = 0;     // entries delivered to every recipient
    std::uint64_t deferred = 0; // entries of this route still pending afterwards
    std::uint64_t failed = 0;   // entries moved to failed/

    friend bool operator==(const route_attempt&, const route_attempt&) = default;
};

/// The last flush (one-shot or a watcher's round).
struct flush_record {
    std::int64_t finished_at = 0;      // Unix seconds
    std::string result;                // "ok" (nothing left pending) or "deferred"
    std::string summary;               // the flush's summary line
    std::vector<route_attempt> routes; // each route's last attempt, in configuration order

    friend bool operator==(const flush_record&, const flush_record&) = default;
};

/// What the watcher makes of one route right now.
struct route_view {
    std::string route;
    std::string condition;  // "ok", "backing-off", "waiting-for-link"
    std::int64_t since = 0; // Unix seconds the condition began
    std::int64_t until = 0; // backing-off: no probe before this (Unix seconds)
    std::string reason;     // backing-off: the last failure, one line

    friend bool operator==(const route_view&, const route_view&) = default;
};

/// The watcher's view, rewritten on each change of state.
struct watch_record {
    std::int64_t updated_at = 0; // Unix seconds
    bool has_link = false;       // a default route is known
    std::vector<route_view> routes;

    friend bool operator==(const watch_record&, const watch_record&) = default;
};

/// A status file as read: a value, or a problem (one line saying what is wrong with the
/// file), or neither when there is no file.
template <class record> struct status_read {
    std::optional<record> value;
    std::string problem;
};

/// Largest status file read; anything bigger is refused unread.
inline constexpr std::size_t max_status_size = 64 * 1024;
/// Bounds on what a status holds (a reason is one reply line; routes are a handful).
inline constexpr std::size_t max_status_text = 1024;
inline constexpr std::size_t max_status_routes = 256;

/// JSON texts (spool-format/README.md, "Status files"). Text fields are cut to their first
/// line and to max_status_text octets; whoever shows them escapes control characters.
[[nodiscard]] std::string encode_flush_record(const flush_record& record);
[[nodiscard]] std::string encode_watch_record(const watch_record& record);
/// Never throws: malformed, wrongly typed, oversized or future-version input gives a problem.
[[nodiscard]] status_read<flush_record> decode_flush_record(std::string_view text);
[[nodiscard]] status_read<watch_record> decode_watch_record(std::string_view text);

/// A reason fit for a status: the first line only, at most max_status_text octets.
[[nodiscard]] std::string one_line(std::string_view text);

} // namespace leafmail::spool
