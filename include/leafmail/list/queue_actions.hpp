#pragma once
// The operator's actions on spool entries (leafmail-list --delete/--hold/--release/--requeue),
// as postsuper and masqmail -M do. Each takes the entry's lock first, so an entry that a flush
// is relaying right now is refused ("busy"), never changed under its feet. One id at a time:
// a bad id is reported and the caller goes on with the others.
#include "leafmail/spool/spool.hpp"

#include <ctime>
#include <string>
#include <string_view>

namespace leafmail::list {

enum class queue_action {
    remove,  // --delete: the entry is gone for good, from whatever area
    hold,    // --hold: queue/ → hold/ (leafmail-flush skips held entries)
    release, // --release: hold/ → queue/
    requeue, // --requeue: failed/ (or hold/, queue/) → queue/, failed recipients pending
             // again, attempt counts reset, its age counted from now
};

[[nodiscard]] std::string_view to_string(queue_action action);

struct action_result {
    bool ok = false;
    bool is_transient = false; // busy: the same action may succeed later
    std::string message;       // "ID: deleted" / "ID: no such entry" ..., one line
};

/// Applies one action to one entry. Never throws for a bad id or a busy entry (ok = false);
/// environment failures come back as ok = false with the error named as well.
[[nodiscard]] action_result apply_action(spool::spool& spool, queue_action action,
                                         std::string_view id, std::time_t now);

} // namespace leafmail::list
