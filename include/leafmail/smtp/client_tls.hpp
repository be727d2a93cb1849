#pragma once
// How the relay client protects its connection: the one TLS setting, read from the `tls`
// configuration key and obeyed by both the session (STARTTLS) and the transport (implicit).
namespace leafmail::smtp {

enum class client_tls {
    none,     // plaintext, STARTTLS not used even when offered
    starttls, // RFC 3207: required; a server that does not offer it is an error, never a downgrade
    implicit  // the transport speaks TLS from the first byte (port 465, RFC 8314)
};

} // namespace leafmail::smtp
