#pragma once
// What one relay attempt (or the queue's age) does to an envelope: the per-recipient state
// machine pending -> delivered | failed, attempt counts and last replies. Pure: no spool, no
// clock (the time comes in), no sockets.
#include "leafmail/relay/dsn.hpp"
#include "leafmail/smtp/client_session.hpp"
#include "leafmail/spool/envelope.hpp"

#include <chrono>
#include <cstdint>
#include <vector>

namespace leafmail::relay {

/// The outgoing message for an envelope's pending recipients; sent_indexes receives, for
/// each recipient of the message, its index in env.recipients.
[[nodiscard]] smtp::outgoing_message outgoing_for(const spool::envelope& env, std::uint64_t tag,
                                                  std::vector<std::size_t>& sent_indexes);

/// Applies one transaction's results (each recipient_result::index is a position in the
/// message outgoing_for() made). 2xx delivered, 5xx failed, anything else (unconfirmed
/// included) stays pending; attempts and the last reply are recorded for
/// every recipient the attempt reached. Returns the recipients that failed now.
std::vector<failed_recipient> apply_result(spool::envelope& env,
                                           const std::vector<std::size_t>& sent_indexes,
                                           const smtp::message_result& result, std::int64_t now);

/// True when the entry has waited longer than max_age since it was queued.
[[nodiscard]] bool is_expired(const spool::envelope& env, std::int64_t now,
                              std::chrono::seconds max_age);

/// Fails every pending recipient of an expired entry (RFC 3463 4.4.7, delivery time
/// expired) keeping the last reply as the diagnostic. Returns them.
std::vector<failed_recipient> expire(spool::envelope& env, std::int64_t now);

} // namespace leafmail::relay
