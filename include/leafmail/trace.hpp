#pragma once
// Header fields we add to messages: the Received: trace line (RFC 5321 section 4.4) and
// RFC 5322 dates. Pure text building; the caller supplies the clock.
#include <ctime>
#include <string>

namespace leafmail {

/// "Sun, 22 Nov 2026 13:07:31 +0000" (RFC 5322 section 3.3), always in UTC.
[[nodiscard]] std::string rfc5322_date(std::time_t when);

struct received_fields {
    std::string helo; // the client's HELO/EHLO argument; empty for local submission
    std::string
        client_address; // IP address of the client; "local" for a pipe; empty for local submission
    std::string local_user; // for local submission: the submitting user's login
    std::string hostname;   // ours
    std::string protocol;   // "SMTP", "ESMTP" (RFC 3848) or "local"
    std::string queue_id;
    std::string recipient; // named in "for" only when there is exactly one
    std::time_t when = 0;
};

/// The whole header field, folded, ending in CRLF.
[[nodiscard]] std::string received_header(const received_fields& fields);

} // namespace leafmail
