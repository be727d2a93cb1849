#pragma once
// Small text helpers several modules need, each written once: ASCII case-insensitive
// comparison, base64 (RFC 4648), and the split of "host", "host:port" or "[v6]:port".
// Standard library only and locale-free, so the pure protocol core (smtp/) may use them:
// peer bytes above 127 are never case-folded by a locale.
#include <optional>
#include <string>
#include <string_view>

namespace leafmail::text {

/// ASCII case-insensitive equality (SMTP verbs, keywords and header field names).
[[nodiscard]] bool iequals(std::string_view a, std::string_view b);

/// Base64 with padding (RFC 4648 section 4), no line breaks.
[[nodiscard]] std::string base64_encode(std::string_view bytes);

/// A host and an optional port as written in the configuration.
struct host_port {
    std::string host;                // without the brackets of "[v6]"
    std::optional<std::string> port; // the text after the ':' (not checked), if any
};

/// Splits "host", "host:port", "[v6]" or "[v6]:port". nullopt for an empty host, a '['
/// without its ']', or text after ']' that is not ":port". A bare IPv6 address ("::1") is
/// read as host and port at its last colon: IPv6 hosts take brackets.
[[nodiscard]] std::optional<host_port> split_host_port(std::string_view text);

/// A port number from 1 to 65535 (0 when allow_zero: "any free port"); nullopt otherwise.
[[nodiscard]] std::optional<unsigned> parse_port(std::string_view text, bool allow_zero = false);

} // namespace leafmail::text
