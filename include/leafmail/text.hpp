#pragma once
// Small text helpers several modules need, each written once: ASCII case-insensitive
// comparison, base64 (RFC 4648), the split of "host", "host:port" or "[v6]:port", and the
// escaping of peer text before a person sees it.
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

/// Text that a peer wrote (a header, an address, a reply, a HELO name), made safe to show on a
/// terminal or in a log line: C0 controls, DEL, C1 controls (raw or UTF-8 encoded), octets
/// that are not UTF-8, and Unicode's bidirectional controls and line separators become "\xNN",
/// one per octet, and '\' becomes "\\". An ESC can then neither retitle the window nor clear
/// the screen, and nothing can pass for a line of our own. Other UTF-8 is kept as it is,
/// unless keep_utf8 is false (7-bit output such as a header field): then every octet above
/// 127 is escaped.
[[nodiscard]] std::string escape_controls(std::string_view text, bool keep_utf8 = true);

/// True when escape_controls(text) would return text unchanged (the common case, checked
/// cheaply).
[[nodiscard]] bool is_plain_text(std::string_view text);

} // namespace leafmail::text
