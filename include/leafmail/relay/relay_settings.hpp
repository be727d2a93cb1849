#pragma once
// The one place that turns the configuration into what relaying needs: the SMTP client's
// options (name, TLS, AUTH with the password read from its file), where and how to connect,
// the TLS context and the queue side's policy. Everything that can refuse to start refuses
// here, with a config_error, before the spool is touched.
#include "leafmail/config.hpp"
#include "leafmail/net/asio.hpp"
#include "leafmail/net/relay_connection.hpp"
#include "leafmail/relay/queue_relay.hpp"
#include "leafmail/smtp/client_session.hpp"

#include <boost/asio/ssl.hpp>
#include <cstdint>
#include <functional>

namespace leafmail::relay {

/// Checks what a flush needs before it touches anything. Throws config_error.
void check_relay_settings(const config& settings);

/// The client session's options. Reads the AUTH password file: throws config_error.
[[nodiscard]] smtp::client_options client_options_for(const config& settings);

/// Where and how to connect: host, port, certificate checks, timeouts.
[[nodiscard]] net::relay_endpoint endpoint_for(const config& settings, bool verbose);

/// The client TLS context (system store plus ca-file). Throws config_error.
[[nodiscard]] net::asio::ssl::context tls_context_for(const config& settings);

/// The queue side's policy: names for logs and notifications, max-queue-age, the clock.
[[nodiscard]] queue_relay_options queue_options_for(const config& settings,
                                                    std::function<std::int64_t()> now);

} // namespace leafmail::relay
