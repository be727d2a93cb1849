#pragma once
// SMTP command lines as the server reads them (RFC 5321 section 4.1): the verb, its argument,
// and the MAIL FROM / RCPT TO paths with their ESMTP parameters (RFC 1870 SIZE, RFC 6152 BODY).
// Pure functions over one line without its CRLF; they never throw on peer input and know
// nothing of session state.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace leafmail::smtp {

// RFC 5321 4.5.3.1.1: maximum length of a local part.
inline constexpr std::size_t max_local_part_length = 64;
// RFC 5321 4.5.3.1.2: maximum length of a domain.
inline constexpr std::size_t max_domain_length = 255;
// RFC 5321 4.5.3.1.3: maximum length of a reverse- or forward-path, "<" and ">" included.
inline constexpr std::size_t max_path_length = 256;
// RFC 1035 2.3.4: maximum length of one label of a domain.
inline constexpr std::size_t max_label_length = 63;
// RFC 5321 4.5.3.1.4 sets 512 octets with CRLF, but allows more for extensions and real
// clients exceed it with ESMTP parameters; we accept a text line's worth (4.5.3.1.6).
inline constexpr std::size_t max_command_line_length = 1000;
// RFC 1870 section 3: size-value ::= 1*20DIGIT.
inline constexpr std::size_t max_size_value_digits = 20;

enum class verb {
    helo,
    ehlo,
    mail,
    rcpt,
    data,
    rset,
    noop,
    quit,
    vrfy,
    expn,
    help,
    // Known verbs we deliberately do not implement: answered 502 5.5.1 (RFC 5321 4.2.4).
    starttls,
    auth,
    bdat,
    turn,
    atrn,
    etrn,
    send,
    soml,
    saml,
    unknown, // anything else: 500 5.5.1
};

/// The verb's canonical upper-case name ("MAIL"); "unknown" for verb::unknown.
[[nodiscard]] std::string_view verb_name(verb v);

struct command {
    verb what = verb::unknown;
    std::string argument; // after the verb and the spaces following it; trailing blanks removed
};

/// Splits one command line (CRLF already removed). The verb is case-insensitive.
[[nodiscard]] command parse_command(std::string_view line);

enum class body_type { unspecified, seven_bit, eight_bit_mime };

/// Why a MAIL or RCPT argument was refused; the session maps each to its reply.
enum class argument_error {
    syntax,            // no "FROM:"/"TO:", no angle brackets, junk after the path: 501 5.5.2
    bad_address,       // the path itself is malformed or too long: 501 5.1.7 / 501 5.1.3
    invalid_parameter, // malformed parameter, SIZE not a number, a parameter twice: 501 5.5.4
    unknown_parameter, // a keyword we did not advertise (RFC 5321 4.1.1.11): 555 5.5.4
    unsupported_value, // a known keyword with a value we do not do (BODY=BINARYMIME): 504 5.5.4
};

struct mail_argument {
    std::string reverse_path;          // without angle brackets or source route; empty for <>
    std::optional<std::uint64_t> size; // RFC 1870 SIZE=; saturates at the maximum uint64
    body_type body = body_type::unspecified;
};

struct rcpt_argument {
    std::string forward_path; // without angle brackets or source route; "postmaster" allowed
};

/// The argument of MAIL: "FROM:<path> [parameters]" (one space after the colon tolerated).
[[nodiscard]] std::variant<mail_argument, argument_error> parse_mail_argument(std::string_view arg);
/// The argument of RCPT: "TO:<path> [parameters]"; no RCPT parameter is supported.
[[nodiscard]] std::variant<rcpt_argument, argument_error> parse_rcpt_argument(std::string_view arg);

/// True when address is a Mailbox of RFC 5321 section 4.1.2 (Local-part "@" Domain or
/// address-literal) that fits in a path (4.5.3.1): the one address grammar, for the server's
/// MAIL and RCPT and for leafmail-sendmail's envelope alike. A Quoted-string local part may
/// hold '<', '>' or '@' (qtextSMTP); on the wire it stays inside its quotes.
[[nodiscard]] bool is_valid_mailbox(std::string_view address);
/// True when text is a Local-part of RFC 5321 section 4.1.2 (Dot-string or Quoted-string).
[[nodiscard]] bool is_valid_local_part(std::string_view text);

} // namespace leafmail::smtp
