#pragma once
// One SMTP connection to the smarthost: resolves, connects, speaks TLS when configured and
// moves bytes between the socket and a smtp::client_session. It decides nothing about the
// protocol or the spool: messages come from and results go to a relay_job_source. Every
// wait is bounded by a watchdog timer (RFC 5321 section 4.5.3.2).
#include "leafmail/config.hpp"
#include "leafmail/net/asio.hpp"
#include "leafmail/smtp/client_session.hpp"
#include "leafmail/spool/spool.hpp"

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

namespace leafmail::net {

/// One message handed to the connection: its envelope for the session, its content stream.
struct relay_job {
    smtp::outgoing_message message; // message.tag identifies it in finished()
    spool::content_reader content;
};

/// Where messages come from and results go. finished() must record the result durably
/// before it returns: the connection sends later content only afterwards.
class relay_job_source {
public:
    virtual ~relay_job_source() = default;
    [[nodiscard]] virtual std::optional<relay_job> next() = 0;
    virtual void finished(const smtp::message_result& result) = 0;
};

struct relay_endpoint {
    std::string host;
    std::uint16_t port = 25;
    tls_mode tls = tls_mode::starttls;
    bool tls_verify = true;
    std::chrono::seconds connect_timeout{30};
    std::chrono::seconds timeout{300};      // greeting, each command reply, each write
    std::chrono::seconds data_timeout{600}; // the reply to the final dot
    bool verbose = false;                   // log the dialogue (debug level), secrets masked
};

[[nodiscard]] relay_endpoint endpoint_from(const relay_settings& settings, bool verbose);

struct relay_connection_result {
    bool connected = false; // TCP (and implicit TLS) came up
    std::size_t messages_finished = 0;
    std::size_t messages_attempted = 0;   // with MAIL sent
    std::optional<smtp::reply> failure;   // why the connection failed; none after a clean QUIT
    bool authentication_required = false; // refused for want of AUTH we are not configured for
};

/// Runs one connection to the end on its own io_context (blocking the calling thread).
[[nodiscard]] relay_connection_result relay_over_one_connection(asio::ssl::context& tls,
                                                                const relay_endpoint& endpoint,
                                                                const smtp::client_options& options,
                                                                relay_job_source& source);

} // namespace leafmail::net
