#include "leafmail/list/queue_actions.hpp"

#include "leafmail/list/listing.hpp"
#include "leafmail/spool/queue_id.hpp"

#include <optional>
#include <system_error>

namespace leafmail::list {

namespace {

using spool::area;

action_result fail(std::string_view id, const std::string& why)
{
    return {false, false, std::string(id) + ": " + why};
}

action_result done(std::string_view id, const std::string& what)
{
    return {true, false, std::string(id) + ": " + what};
}

action_result requeue(spool::spool& spool, area where, std::string_view id, std::time_t now)
{
    if (where == area::corrupt)
        return fail(id, "is corrupt and cannot be requeued (inspect it, then --delete it)");
    auto env = spool.load(where, id);
    if (!env)
        return fail(id, "no such entry");
    std::size_t pending = 0;
    for (auto& r : env->recipients) {
        if (r.state == spool::recipient_state::delivered)
            continue;
        r.state = spool::recipient_state::pending;
        r.attempts = 0;
        r.last_attempt_at = 0;
        r.last_reply.clear();
        ++pending;
    }
    if (pending == 0)
        return fail(id, "has no recipient left to deliver");
    // max-queue-age counts from now, or an old entry would expire again at once.
    env->queued_at = static_cast<std::int64_t>(now);
    // State first, move second: a crash in between leaves a failed entry that is already
    // pending again, and running --requeue once more finishes the job.
    spool.save_state(where, *env); // keeps the spool's owner and mode
    if (where != area::queue && !spool.move(id, where, area::queue))
        return fail(id, "vanished while being requeued");
    return done(id, "requeued (" + std::to_string(pending) +
                        (pending == 1 ? " recipient" : " recipients") +
                        " pending, attempts reset)");
}

} // namespace

std::string_view to_string(queue_action action)
{
    switch (action) {
    case queue_action::remove:
        return "delete";
    case queue_action::hold:
        return "hold";
    case queue_action::release:
        return "release";
    case queue_action::requeue:
        return "requeue";
    }
    return "delete";
}

action_result apply_action(spool::spool& spool, queue_action action, std::string_view id,
                           std::time_t now)
{
    if (!spool::is_valid_queue_id(id))
        return fail(id, "not a queue id");
    try {
        for (int attempt = 0; attempt < 3; ++attempt) {
            const auto where = spool.locate(id);
            if (!where)
                return fail(id, "no such entry");
            const auto lock = spool.try_lock_entry(*where, id);
            if (!lock) {
                if (spool.locate(id) != where)
                    continue; // moved or removed meanwhile: look again
                auto busy = fail(id, "busy (being relayed right now); try again later");
                busy.is_transient = true;
                return busy;
            }
            // The lock follows the file; make sure it is still where we found it.
            if (!spool.info(*where, id))
                continue;
            const std::string was(area_label(*where));
            switch (action) {
            case queue_action::remove:
                if (!spool.remove(*where, id))
                    continue;
                return done(id, "deleted (was " + was + ")");
            case queue_action::hold:
                if (*where == area::hold)
                    return done(id, "already held");
                if (*where != area::queue)
                    return fail(id, "is " + was + "; only queued entries can be held");
                if (!spool.move(id, area::queue, area::hold))
                    continue;
                return done(id, "held");
            case queue_action::release:
                if (*where == area::queue)
                    return done(id, "already queued");
                if (*where != area::hold)
                    return fail(id, "is " + was + ", not held" +
                                        (*where == area::failed ? " (use --requeue)" : ""));
                if (!spool.move(id, area::hold, area::queue))
                    continue;
                return done(id, "released");
            case queue_action::requeue:
                return requeue(spool, *where, id, now);
            }
        }
        return fail(id, "keeps moving between areas; try again");
    } catch (const spool::corrupt_entry& e) {
        return fail(id, std::string("unreadable: ") + e.what());
    } catch (const std::exception& e) {
        return fail(id, e.what());
    }
}

} // namespace leafmail::list
