#pragma once
// Client-side reader of SMTP replies (RFC 5321 section 4.2): bytes in any chunking, whole
// replies out, multi-line replies joined and RFC 3463 enhanced status codes split off.
// Pure: no I/O. Malformed input becomes an error state, never an exception.
#include "leafmail/smtp/reply.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace leafmail::smtp {

class reply_parser {
public:
    // RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers send longer ones,
    // so accept up to this much and call anything longer a protocol error (bounded memory).
    static constexpr std::size_t max_line_length = 8192;
    // A multi-line reply longer than this is not a server we want to talk to.
    static constexpr std::size_t max_lines = 200;

    /// Appends bytes from the server.
    void feed(std::string_view bytes);

    /// The next complete reply, or nullopt when more bytes are needed or after an error.
    [[nodiscard]] std::optional<reply> next();

    [[nodiscard]] bool has_error() const { return !error_.empty(); }
    [[nodiscard]] const std::string& error() const { return error_; }

    /// True when bytes follow the last complete reply. After the 220 to STARTTLS this
    /// must be false: anything else was injected in plaintext (RFC 3207 section 4.2).
    [[nodiscard]] bool has_buffered_input() const { return position_ < buffer_.size(); }

    /// Forgets buffered input and any partial reply (at the TLS handshake).
    void clear();

private:
    std::string buffer_;
    std::size_t position_ = 0;     // start of the first unconsumed line
    std::optional<reply> partial_; // lines of a multi-line reply read so far
    std::string error_;
};

/// Splits "5.1.1 text" into the enhanced code and the text when the class digit matches
/// the reply code's (RFC 3463 section 2, RFC 2034 section 4); otherwise returns nullopt.
[[nodiscard]] std::optional<std::size_t> enhanced_code_length(int code, std::string_view text);

} // namespace leafmail::smtp
