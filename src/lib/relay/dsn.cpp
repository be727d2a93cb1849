#include "leafmail/relay/dsn.hpp"

#include "leafmail/trace.hpp"

#include <arpa/inet.h>
#include <ctime>

namespace leafmail::relay {

namespace {

/// RFC 3464 section 2.3.5: the dns name-type holds a host name. A smarthost configured by
/// address is written as an address literal (RFC 5321 section 4.1.3), never as a name.
std::string remote_mta_name(const std::string& host)
{
    in_addr v4{};
    in6_addr v6{};
    if (::inet_pton(AF_INET, host.c_str(), &v4) == 1)
        return "[" + host + "]";
    if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1)
        return "[IPv6:" + host + "]";
    return host;
}

// RFC 5322 section 2.1.1: lines must stay under 998 octets; replies are cut well below.
constexpr std::size_t max_diagnostic = 900;

std::string one_line(std::string_view text)
{
    std::string out;
    for (char c : text.substr(0, max_diagnostic))
        out += (c == '\r' || c == '\n') ? ' ' : c;
    return out;
}

} // namespace

bool should_notify(const spool::envelope& env)
{
    return !env.reverse_path.empty() && env.is_bounce == 0;
}

std::string status_of(const smtp::reply& why)
{
    if (!why.enhanced.empty())
        return why.enhanced;
    if (why.code >= 200 && why.code <= 599)
        return std::to_string(why.code / 100) + ".0.0";
    return "5.0.0";
}

std::string header_section(std::string_view content, std::size_t max_bytes)
{
    std::size_t end = 0;
    while (end < content.size()) {
        std::size_t lf = content.find('\n', end);
        if (lf == std::string_view::npos)
            break; // an unfinished line is not taken
        std::string_view line = content.substr(end, lf - end);
        if (line.empty() || line == "\r")
            break; // the empty line that ends the header section
        if (lf + 1 > max_bytes)
            break;
        end = lf + 1;
    }
    return std::string(content.substr(0, end));
}

std::string make_dsn(const dsn_request& r)
{
    const std::string boundary = "=_leafmail_" + r.queue_id + "_" + std::to_string(r.now);
    const std::string crlf = "\r\n";
    std::string m;
    // Top-level header: RFC 3464 section 2, RFC 3834 section 5 (Auto-Submitted).
    m += "From: Mail Delivery System <MAILER-DAEMON@" + r.reporting_host + ">" + crlf;
    m += "To: <" + r.sender + ">" + crlf;
    m += std::string(r.delayed ? "Subject: Delayed Mail (still being retried)"
                               : "Subject: Undelivered Mail Returned to Sender") +
         crlf;
    m += "Date: " + rfc5322_date(r.now) + crlf;
    m += "Message-ID: <" + r.message_id + "@" + r.reporting_host + ">" + crlf;
    m += "Auto-Submitted: auto-replied" + crlf;
    m += "MIME-Version: 1.0" + crlf;
    m += "Content-Type: multipart/report; report-type=delivery-status;" + crlf;
    m += "\tboundary=\"" + boundary + "\"" + crlf;
    m += crlf;
    m += "This is a MIME-encapsulated message." + crlf + crlf;

    // Part 1: for humans (RFC 6522 section 3).
    m += "--" + boundary + crlf;
    m += "Content-Type: text/plain; charset=us-ascii" + crlf;
    m += "Content-Description: Notification" + crlf + crlf;
    m += "This is the mail system at host " + r.reporting_host + "." + crlf + crlf;
    if (r.delayed) {
        m += "Your message has not been delivered yet to one or more recipients." + crlf;
        m += "It stays queued and will be tried again" +
             (r.will_retry_until ? " until " + rfc5322_date(r.will_retry_until) : std::string()) +
             "; you need not send it again." + crlf;
        m += "This is the only warning for this message. Its headers are attached below." + crlf +
             crlf;
    } else {
        m += "Your message could not be delivered to one or more recipients." + crlf;
        m += "Its headers are attached below." + crlf + crlf;
    }
    for (const auto& f : r.recipients) {
        m += "<" + f.address + ">: ";
        if (!f.diagnostic.empty())
            m += (f.from_smarthost
                      ? (r.remote_host.empty() ? "the smarthost" : r.remote_host) + " said: "
                      : std::string()) +
                 one_line(f.diagnostic);
        else
            m += "delivery failed (" + f.status + ")";
        m += crlf;
    }
    m += crlf;

    // Part 2: message/delivery-status (RFC 3464 section 2.2 and 2.3).
    m += "--" + boundary + crlf;
    m += "Content-Type: message/delivery-status" + crlf + crlf;
    m += "Reporting-MTA: dns; " + r.reporting_host + crlf;
    m += "X-Leafmail-Queue-ID: " + r.queue_id + crlf;
    m += "Arrival-Date: " + rfc5322_date(static_cast<std::time_t>(r.arrival_date)) + crlf;
    for (const auto& f : r.recipients) {
        m += crlf;
        // RFC 3464 section 2.3.1: the recipient as the sender gave it, before an alias or
        // admin-address replaced it; it comes before Final-Recipient (section 2.3).
        if (!f.original.empty())
            m += "Original-Recipient: rfc822; " + one_line(f.original) + crlf;
        m += "Final-Recipient: rfc822; " + f.address + crlf;
        m += std::string(r.delayed ? "Action: delayed" : "Action: failed") + crlf;
        m += "Status: " + f.status + crlf;
        if (!r.remote_host.empty() && f.from_smarthost)
            m += "Remote-MTA: dns; " + remote_mta_name(r.remote_host) + crlf;
        if (!f.diagnostic.empty())
            m += std::string(f.from_smarthost ? "Diagnostic-Code: smtp; "
                                              : "Diagnostic-Code: X-leafmail; ") +
                 one_line(f.diagnostic) + crlf;
        m += "Last-Attempt-Date: " + rfc5322_date(r.now) + crlf;
        if (r.delayed && r.will_retry_until)
            m += "Will-Retry-Until: " + rfc5322_date(r.will_retry_until) + crlf;
    }
    m += crlf;

    // Part 3: the original's headers (RFC 6522 section 3, text/rfc822-headers).
    m += "--" + boundary + crlf;
    m += "Content-Type: text/rfc822-headers" + crlf + crlf;
    m += r.original_headers;
    if (!r.original_headers.empty() && !r.original_headers.ends_with("\n"))
        m += crlf;
    m += crlf;
    m += "--" + boundary + "--" + crlf;
    return m;
}

} // namespace leafmail::relay
