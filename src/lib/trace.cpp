#include "leafmail/trace.hpp"

#include <cstdio>

namespace leafmail {

std::string rfc5322_date(std::time_t when)
{
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::tm utc{};
    ::gmtime_r(&when, &utc);
    char text[40];
    std::snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[utc.tm_wday],
                  utc.tm_mday, months[utc.tm_mon], utc.tm_year + 1900, utc.tm_hour, utc.tm_min,
                  utc.tm_sec);
    return text;
}

std::string received_header(const received_fields& f)
{
    // Continuation lines start with a tab (RFC 5322 folding), keeping each under 78 octets
    // for ordinary names.
    std::string out = "Received: ";
    if (f.client_address == "local") { // inetd over a pipe or a local socket: no address
        out += "from " + (f.helo.empty() ? std::string("unknown") : f.helo) + " (local)\r\n\t";
    } else if (!f.client_address.empty()) {
        const bool is_v6 = f.client_address.find(':') != std::string::npos;
        out += "from " + (f.helo.empty() ? std::string("unknown") : f.helo) + " ([" +
               (is_v6 ? "IPv6:" : "") + f.client_address + "])\r\n\t";
    } else if (!f.local_user.empty()) {
        out += "(from " + f.local_user + "@localhost)\r\n\t";
    }
    out += "by " + f.hostname + " (leafmail) with " + f.protocol + " id " + f.queue_id;
    if (!f.recipient.empty())
        out += "\r\n\tfor <" + f.recipient + ">";
    out += "; " + rfc5322_date(f.when) + "\r\n";
    return out;
}

} // namespace leafmail
