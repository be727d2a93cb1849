#include "leafmail/relay/delivery.hpp"

#include <cassert>

namespace leafmail::relay {

smtp::outgoing_message outgoing_for(const spool::envelope& env, std::uint64_t tag,
                                    std::vector<std::size_t>& sent_indexes)
{
    smtp::outgoing_message m;
    m.tag = tag;
    m.reverse_path = env.reverse_path;
    m.size = env.content_size;
    m.has_8bit = env.body_8bit != 0;
    sent_indexes.clear();
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
        if (env.recipients[i].state == spool::recipient_state::pending) {
            m.recipients.push_back(env.recipients[i].address);
            sent_indexes.push_back(i);
        }
    }
    return m;
}

std::vector<failed_recipient> apply_result(spool::envelope& env,
                                           const std::vector<std::size_t>& sent_indexes,
                                           const smtp::message_result& result, std::int64_t now)
{
    std::vector<failed_recipient> failed;
    for (const smtp::recipient_result& r : result.recipients) {
        assert(r.index < sent_indexes.size());
        if (r.index >= sent_indexes.size())
            continue;
        spool::recipient& rcpt = env.recipients.at(sent_indexes[r.index]);
        // Only an attempt that reached the smarthost counts (RFC 5321 section 4.5.4.1 retry
        // bookkeeping); a refusal we made ourselves (SIZE) is recorded the same way.
        rcpt.attempts += 1;
        rcpt.last_attempt_at = now;
        rcpt.last_reply = r.why.to_string();
        switch (r.status) {
        case smtp::delivery_status::delivered:
            rcpt.state = spool::recipient_state::delivered;
            break;
        case smtp::delivery_status::failed:
            rcpt.state = spool::recipient_state::failed;
            // The status comes from the reply's structure; the text is only the diagnostic.
            failed.push_back({rcpt.address, status_of(r.why), rcpt.last_reply, result.attempted,
                              rcpt.original_address});
            break;
        case smtp::delivery_status::deferred:
        case smtp::delivery_status::unconfirmed: // may have arrived: stays pending (at-least-once)
            break;
        }
    }
    return failed;
}

bool is_expired(const spool::envelope& env, std::int64_t now, std::chrono::seconds max_age)
{
    return env.has_pending() && now - env.queued_at > max_age.count();
}

std::vector<failed_recipient> expire(spool::envelope& env, std::int64_t now)
{
    std::vector<failed_recipient> failed;
    for (auto& rcpt : env.recipients) {
        if (rcpt.state != spool::recipient_state::pending)
            continue;
        rcpt.state = spool::recipient_state::failed;
        std::string diagnostic = "delivery time expired after " +
                                 std::to_string((now - env.queued_at) / 3600) +
                                 " hours in the queue";
        if (!rcpt.last_reply.empty())
            diagnostic += "; last reply: " + rcpt.last_reply;
        failed.push_back({rcpt.address, "4.4.7", diagnostic, false, rcpt.original_address});
        rcpt.last_reply = diagnostic;
    }
    return failed;
}

} // namespace leafmail::relay
