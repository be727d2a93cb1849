#pragma once
// TLS for the relay client (OpenSSL through Asio): the client context that verifies the
// smarthost against the system CA store plus an optional CA file, the per-connection SNI and
// host name check, and the HMAC-MD5 that the pure core needs for CRAM-MD5.
#include "leafmail/net/asio.hpp"

#include <boost/asio/ssl.hpp>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace leafmail::net {

/// The trust store cannot be loaded (the system store, or the extra CA file).
class tls_setup_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A client context: TLS 1.2 or newer; when verify, peer verification against the system
/// store and ca_file (when not empty). Throws tls_setup_error.
[[nodiscard]] asio::ssl::context make_client_tls_context(bool verify,
                                                         const std::filesystem::path& ca_file);

/// Prepares one stream before its handshake: SNI (RFC 6066 section 3, never for an IP
/// literal) and, when verifying, the expected name or address (RFC 6125 via OpenSSL).
void prepare_client_tls(asio::ssl::stream<asio::ip::tcp::socket>& stream, const std::string& host,
                        bool verify);

/// After a failed handshake: why the certificate was refused, or empty when it was not.
[[nodiscard]] std::string tls_verify_error(asio::ssl::stream<asio::ip::tcp::socket>& stream);

/// HMAC-MD5 (RFC 2104) as 16 raw octets, for AUTH CRAM-MD5 (RFC 2195).
[[nodiscard]] std::string hmac_md5(std::string_view key, std::string_view message);

} // namespace leafmail::net
