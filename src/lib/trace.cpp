#include "leafmail/trace.hpp"

#include "leafmail/text.hpp"

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

namespace {

// RFC 5322 2.1.1: a line SHOULD stay within 78 octets and MUST within 998.
constexpr std::size_t preferred_line_length = 78;
// RFC 5321 4.5.3.1.2 and 4.5.3.1.3: a domain has at most 255 octets, a path 256.
constexpr std::size_t max_name_length = 255;
constexpr std::size_t max_path_length = 256;

// Peer text (HELO name, login, recipient) in the trace field: 7-bit printable, anything else
// as \xNN (text.hpp), cut with "..." beyond max octets. The receiver refuses such HELO names
// already; this keeps the field valid whatever a caller passes.
std::string shown(std::string_view text, std::size_t max)
{
    std::string out = text::escape_controls(text, false);
    if (out.size() > max)
        out = out.substr(0, max - 3) + "...";
    return out;
}

// Builds a field of words, starting a new line at each clause (as we always wrote it) and
// folding between words where a line would pass 78 octets (RFC 5322 2.2.3: a fold is a CRLF
// before white space). No word is longer than 998 - 1 octets, so no line is either.
class folded_field {
public:
    explicit folded_field(std::string_view name) : out_(name), line_(name.size()) {}

    void clause() { fold_at_next_ = true; }
    void word(std::string_view w)
    {
        if (fold_at_next_ || (line_has_word_ && line_ + 1 + w.size() > preferred_line_length)) {
            out_ += "\r\n\t";
            line_ = 1;
        } else {
            out_ += ' ';
            ++line_;
        }
        fold_at_next_ = false;
        line_has_word_ = true;
        out_ += w;
        line_ += w.size();
    }
    std::string done() && { return std::move(out_) + "\r\n"; }

private:
    std::string out_;
    std::size_t line_;
    bool fold_at_next_ = false;
    bool line_has_word_ = false; // a fold needs a word before it on the line
};

} // namespace

std::string received_header(const received_fields& f)
{
    // RFC 5321 4.4: "from" the client, "by" us, "with" the protocol, "id", "for" one recipient.
    folded_field field("Received:");
    const std::string helo = f.helo.empty() ? "unknown" : shown(f.helo, max_name_length);
    if (f.client_address == "local") { // inetd over a pipe or a local socket: no address
        field.word("from " + helo);
        field.word("(local)");
        field.clause();
    } else if (!f.client_address.empty()) {
        const bool is_v6 = f.client_address.find(':') != std::string::npos;
        field.word("from " + helo);
        field.word("([" + std::string(is_v6 ? "IPv6:" : "") + f.client_address + "])");
        field.clause();
    } else if (!f.local_user.empty()) {
        field.word("(from " + shown(f.local_user, max_name_length) + "@localhost)");
        field.clause();
    }
    for (const std::string_view w :
         {std::string_view("by"), std::string_view(f.hostname), std::string_view("(leafmail)"),
          std::string_view("with"), std::string_view(f.protocol), std::string_view("id")})
        field.word(w);
    // The date closes the field after a ';'; "for" is optional (RFC 5321 4.4), so a path
    // longer than a path may be is left out rather than shown cut.
    const bool names_recipient = !f.recipient.empty() && f.recipient.size() <= max_path_length;
    if (names_recipient) {
        field.word(f.queue_id);
        field.clause();
        field.word("for <" + shown(f.recipient, max_path_length + 3) + ">;");
    } else {
        field.word(f.queue_id + ";");
    }
    const std::string date = rfc5322_date(f.when);
    field.word(date);
    return std::move(field).done();
}

} // namespace leafmail
