#pragma once
// One SMTP reply (RFC 5321 section 4.2): a three-digit code, an optional RFC 3463 enhanced
// status code and one or more text lines. A plain value shared by the server and client
// sides; it never touches I/O.
#include <string>
#include <vector>

namespace leafmail::smtp {

struct reply {
    int code = 0;
    std::string enhanced;           // "2.0.0"; empty where RFC 3463 gives none (220, 354, 221 may)
    std::vector<std::string> lines; // at least one, without CRLF

    /// "250-first\r\n250 last\r\n", enhanced code repeated on every line (RFC 2034 section 4).
    /// CR, LF and NUL inside a text line go out as spaces: no text can forge a reply line.
    [[nodiscard]] std::string to_wire() const;
    /// One line for logs: "250 2.0.0 first line", further lines appended after a space.
    [[nodiscard]] std::string to_string() const;

    [[nodiscard]] bool is_positive() const { return code / 100 == 2; }
    [[nodiscard]] bool is_intermediate() const { return code / 100 == 3; }
    [[nodiscard]] bool is_transient_failure() const { return code / 100 == 4; }
    [[nodiscard]] bool is_permanent_failure() const { return code / 100 == 5; }

    friend bool operator==(const reply&, const reply&) = default;
};

} // namespace leafmail::smtp
