#pragma once
// Local submission of a message (leafmail-sendmail): turning what a program writes on stdin
// into CRLF lines, splitting off the header, reading address lists (RFC 5322 section 3.4) and
// fixing the header as a submission agent does (RFC 6409 section 8). Pure text: no files, no
// clock, no user database; the caller supplies ids, names and times.
#include <cstddef>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::sendmail {

/// Input bytes → CRLF lines. LF and CRLF line ends are both accepted (a bare LF becomes CRLF,
/// and so does a CR not followed by LF). Unless ignore_dots (-i, -oi), a line holding
/// only "." ends the message, as sendmail does; the rest of the input is then ignored.
class line_normalizer {
public:
    explicit line_normalizer(bool ignore_dots) : ignore_dots_(ignore_dots) {}
    /// Appends what is complete to out. Memory stays bounded: a very long line is passed on
    /// in pieces.
    void put(std::string_view bytes, std::string& out);
    /// End of input: a last line without a line end gets CRLF.
    void finish(std::string& out);
    /// True once the lone-dot line was seen.
    [[nodiscard]] bool ended() const { return ended_; }

private:
    static constexpr std::size_t max_pending = 64 * 1024;
    std::string pending_;       // the current line, not yet ended
    bool at_line_start_ = true; // pending_ starts a line (nothing of it was passed on yet)
    bool ignore_dots_;
    bool ended_ = false;
};

/// One header field as it appeared: name and the whole raw text (continuation lines and the
/// final CRLF included), so content we do not change passes byte for byte.
struct header_field {
    std::string name;
    std::string raw;
    /// The unfolded value after the colon (CRLF before whitespace removed, outer blanks trimmed).
    [[nodiscard]] std::string value() const;
    [[nodiscard]] bool is(std::string_view other_name) const; // case-insensitive name match
};

/// Splits normalized CRLF text into the header fields and the body. The header ends at the
/// empty line, or at the first line that is neither a field nor a continuation (that line
/// then starts the body and the empty separator line is supplied). Bounded by max_header_size.
class header_splitter {
public:
    explicit header_splitter(std::size_t max_header_size) : max_header_size_(max_header_size) {}
    /// Feeds CRLF text; once the header is complete, body bytes are appended to body.
    void put(std::string_view text, std::string& body);
    /// End of input: the header is complete even without an empty line.
    void finish(std::string& body);
    [[nodiscard]] bool is_complete() const { return complete_; }
    [[nodiscard]] bool is_too_large() const { return too_large_; }
    [[nodiscard]] const std::vector<header_field>& fields() const { return fields_; }

private:
    void take_line(std::string_view line, std::string& body);
    void end_header();
    std::size_t max_header_size_;
    std::size_t header_size_ = 0;
    std::string line_;
    std::vector<header_field> fields_;
    bool complete_ = false;
    bool too_large_ = false;
};

/// The addr-specs of an address list (To:, Cc:, Bcc:, or a command-line argument): display
/// names, comments, groups ("undisclosed-recipients:;") and angle brackets removed, source
/// routes dropped. Never throws; what cannot be read as an address is skipped.
[[nodiscard]] std::vector<std::string> parse_address_list(std::string_view text);

/// True for an address that may go into an envelope and onto the SMTP wire: an RFC 5321
/// Mailbox (smtp::is_valid_mailbox, the grammar leafmaild applies to MAIL and RCPT), or a
/// bare local part to be qualified with the domain.
[[nodiscard]] bool is_acceptable_address(std::string_view address);

/// "user" → "user@domain"; addresses with an '@' are returned unchanged.
[[nodiscard]] std::string qualify(std::string_view address, std::string_view domain);

/// `"Full Name" <addr>` with the name quoted or RFC 2047-encoded as needed, or `addr` alone.
[[nodiscard]] std::string format_mailbox(std::string_view full_name, std::string_view address);

struct submission_fix {
    std::string from_address; // for a missing From:
    std::string full_name;    // display name for a missing From:, may be empty
    std::string message_id;   // "<id@host>" for a missing Message-ID:
    std::time_t now = 0;      // for a missing Date:
};

struct fixed_header {
    std::string text;                   // the header to spool, CRLF lines, no empty line
    std::vector<std::string> to_cc_bcc; // addr-specs of To:, Cc: and Bcc: (before Bcc removal)
    bool added_date = false;
    bool added_message_id = false;
    bool added_from = false;
};

/// RFC 6409 section 8: adds Date:, Message-ID: and From: when missing (after the existing
/// fields); removes Bcc: (its addresses stay in to_cc_bcc for -t), Resent-Bcc:,
/// Content-Length: and Return-Path:; keeps the rest unchanged.
[[nodiscard]] fixed_header fix_header(const std::vector<header_field>& fields,
                                      const submission_fix& fix);

} // namespace leafmail::sendmail
