#pragma once
// Delivery status notifications (RFC 3464 inside RFC 6522 multipart/report) for recipients
// that failed for good, or whose delivery is delayed (warn-after). Pure: the caller supplies the
// time, the names and the original headers; the result is the content of a new spool entry sent
// with the null reverse-path.
#include "leafmail/smtp/reply.hpp"
#include "leafmail/spool/envelope.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::relay {

struct failed_recipient {
    std::string address;
    std::string status;         // RFC 3463 code for the Status: field, e.g. "5.1.1"
    std::string diagnostic;     // the smarthost's reply as one line ("550 5.1.1 ..."), may be empty
    bool from_smarthost = true; // false when we decided it (expiry, size over the limit)
    std::string original;       // the recipient as given, when an alias replaced it; else ""
};

struct dsn_request {
    std::string reporting_host;    // our host name (Reporting-MTA)
    std::string remote_host;       // the smarthost (Remote-MTA), empty if never reached
    std::string queue_id;          // the failed entry
    std::string message_id;        // for the notification's own Message-ID, unique
    std::string sender;            // the original reverse-path: the notification goes there
    std::int64_t arrival_date = 0; // Unix seconds the original was queued
    std::int64_t now = 0;
    std::vector<failed_recipient> recipients;
    std::string original_headers; // the original's header section, CRLF lines, no blank line
    /// A warning that the message is still being retried (`warn-after`), not a failure:
    /// RFC 3464 section 2.3.3 "Action: delayed", with Will-Retry-Until (section 2.3.7).
    bool delayed = false;
    std::int64_t will_retry_until = 0; // Unix seconds; 0 leaves the field out
};

/// RFC 6522 / RFC 3464 message content with CRLF line ends.
[[nodiscard]] std::string make_dsn(const dsn_request& request);

/// RFC 5321 section 6.1 and RFC 3464 section 1: never notify the null reverse-path, and
/// never about a notification (loops).
[[nodiscard]] bool should_notify(const spool::envelope& env);

/// The RFC 3463 status for a reply: its enhanced code when it has one (the parser keeps only
/// one whose class matches the reply's), else the reply's class with ".0.0" (RFC 3463
/// section 3.1); "5.0.0" for a reply that is no failure code at all.
[[nodiscard]] std::string status_of(const smtp::reply& why);

/// The header section of a message: everything before the first empty line, at most
/// max_bytes and cut at a line end (RFC 3462 text/rfc822-headers).
[[nodiscard]] std::string header_section(std::string_view content_start, std::size_t max_bytes);

} // namespace leafmail::relay
