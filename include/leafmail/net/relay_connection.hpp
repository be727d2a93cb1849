#pragma once
// One SMTP connection to the smarthost: resolves, connects, speaks TLS when configured and
// moves bytes between the socket and a smtp::client_session. It decides nothing about the
// protocol or the spool: messages come from and results go to a relay_job_source, content
// from a content_source. Every wait is bounded by a watchdog timer (RFC 5321 4.5.3.2).
// Includes neither the spool nor the configuration (relay/relay_settings.hpp maps that).
#include "leafmail/net/asio.hpp"
#include "leafmail/smtp/client_session.hpp"

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace leafmail::net {

/// A message's content as it goes out (not yet dot-stuffed), read from start to end.
class content_source {
public:
    virtual ~content_source() = default;
    [[nodiscard]] virtual std::uint64_t size() const = 0;
    /// Before each transmission: back to the first octet (a message with more recipients than
    /// one transaction takes goes more than once). needs_seven_bit: the server did not offer
    /// 8BITMIME (RFC 6152 section 3), the content must be made 7-bit where it can be.
    virtual void start(bool needs_seven_bit) = 0;
    /// Up to max bytes; an empty string at the end. Throws when the content cannot be read:
    /// the connection then drops instead of ending the message with the final dot.
    [[nodiscard]] virtual std::string read(std::size_t max) = 0;
};

/// One message handed to the connection: its envelope for the session, its content stream.
struct relay_job {
    smtp::outgoing_message message; // message.tag identifies it in finished()
    std::unique_ptr<content_source> content;
};

/// Where messages come from and results go. finished() must record the result durably
/// before it returns: the connection sends later content only afterwards.
class relay_job_source {
public:
    virtual ~relay_job_source() = default;
    [[nodiscard]] virtual std::optional<relay_job> next() = 0;
    virtual void finished(const smtp::message_result& result) = 0;
};

/// Where and how to connect. Whether TLS starts at once or after STARTTLS is the session's
/// smtp::client_options::tls: one setting, obeyed by both.
struct relay_endpoint {
    std::string host;
    std::uint16_t port = 25;
    bool tls_verify = true;
    std::chrono::seconds connect_timeout{30};
    std::chrono::seconds timeout{300};      // greeting, each command reply, each write
    std::chrono::seconds data_timeout{600}; // the reply to the final dot
    bool verbose = false;                   // log the dialogue (debug level), secrets masked
};

struct relay_connection_result {
    bool connected = false; // TCP (and implicit TLS) came up
    std::size_t messages_finished = 0;
    std::size_t messages_attempted = 0;   // with MAIL sent
    std::optional<smtp::reply> failure;   // why the connection failed; none after a clean QUIT
    std::string tls_version;              // "TLSv1.3" once TLS is up; empty without TLS
    std::string auth_mechanism;           // the AUTH mechanism that succeeded; empty without AUTH
    bool authentication_required = false; // refused for want of AUTH we are not configured for
};

/// Runs one connection to the end on its own io_context (blocking the calling thread).
[[nodiscard]] relay_connection_result relay_over_one_connection(asio::ssl::context& tls,
                                                                const relay_endpoint& endpoint,
                                                                const smtp::client_options& options,
                                                                relay_job_source& source);

} // namespace leafmail::net
