#pragma once
// Client side of one SMTP connection to a smarthost (RFC 5321, RFC 3207 STARTTLS, RFC 4954
// AUTH with RFC 4616 PLAIN, LOGIN, RFC 2195 CRAM-MD5, XOAUTH2 and RFC 7628 OAUTHBEARER,
// RFC 2920 PIPELINING, RFC 1870 SIZE, RFC 6152 8BITMIME). Server bytes in, effects out:
// commands to send, content to stream, per-recipient results. It never blocks, never throws
// on server input and knows nothing of sockets, files, clocks, crypto libraries or logs.
#include "leafmail/smtp/client_tls.hpp"
#include "leafmail/smtp/reply.hpp"
#include "leafmail/smtp/reply_parser.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace leafmail::smtp {

struct client_credentials {
    std::string user;
    std::string password; // for PLAIN, LOGIN and CRAM-MD5; empty: those are never chosen
    std::string token;    // OAuth 2.0 access token for XOAUTH2 and OAUTHBEARER; empty: neither
};

/// The mechanisms used when none are configured, in today's order (CRAM-MD5 moves to the
/// front without TLS, where it does not reveal the password).
inline const std::vector<std::string> default_auth_mechanisms = {"PLAIN", "LOGIN", "CRAM-MD5"};

/// HMAC-MD5(key, message) as 16 raw octets (RFC 2104). Injected so that the core needs no
/// crypto library; empty means CRAM-MD5 is never chosen.
using hmac_md5_function =
    std::function<std::string(std::string_view key, std::string_view message)>;

struct client_options {
    std::string helo = "localhost"; // our name in EHLO/HELO
    client_tls tls = client_tls::starttls;
    std::optional<client_credentials> auth;   // no value: no AUTH
    std::vector<std::string> auth_mechanisms; // upper case, preferred first; empty: the default
    bool auth_over_plaintext = false;         // RFC 4954 section 4 risk accepted explicitly
    hmac_md5_function hmac_md5;
    std::size_t max_messages = 1000; // messages per connection, then QUIT
    // Recipients per transaction: a message for more goes in several transactions on the same
    // connection, so the smarthost need not refuse them (RFC 5321 section 4.5.3.1.8 lets it
    // stop at 100).
    std::size_t max_recipients_per_transaction = 100;
};

/// What the server's EHLO reply offered (RFC 5321 section 4.1.1.1; keywords case-insensitive).
struct server_capabilities {
    bool esmtp = false; // EHLO accepted (false after the HELO fallback)
    bool pipelining = false;
    bool starttls = false;
    bool eight_bit_mime = false;
    bool enhanced_status_codes = false;
    bool size = false;                       // SIZE offered: we may send SIZE= (RFC 1870 section 6)
    std::optional<std::uint64_t> size_limit; // SIZE n with n > 0; SIZE 0 or bare SIZE: no limit
    std::vector<std::string> auth_mechanisms; // upper case

    [[nodiscard]] bool offers_auth(std::string_view mechanism) const;
};

/// Parses the lines of a 250 reply to EHLO (the first line is the server's greeting).
[[nodiscard]] server_capabilities parse_ehlo_reply(const reply& ehlo);

/// One message to relay, holding only the recipients still pending.
struct outgoing_message {
    std::uint64_t tag = 0;    // the caller's handle, echoed in the result
    std::string reverse_path; // without angle brackets; empty is the null path <>
    std::vector<std::string> recipients;
    std::uint64_t size = 0; // content octets (SIZE=, RFC 1870 section 6)
    bool has_8bit = false;  // BODY=8BITMIME when offered (RFC 6152 section 3)
};

// unconfirmed: the final dot went out and the connection ended before its reply came (RFC
// 5321 section 4.1.1.4 puts responsibility on the server only once it replied 250). The
// message may or may not have been delivered; it stays pending (at-least-once), flagged.
enum class delivery_status { delivered, deferred, failed, unconfirmed };

struct recipient_result {
    std::size_t index = 0; // position in outgoing_message::recipients
    std::string address;
    delivery_status status = delivery_status::deferred;
    reply why; // the server's reply that decided it, or one we made up (connection lost)
    // why is the server's own reply about this recipient; false for one we made up (a lost
    // connection, a timeout, not sent), which says nothing about an earlier attempt.
    bool answered = false;
};

/// The outcome of one transaction for one message. A message with more recipients than a
/// transaction takes (max_recipients_per_transaction, or a 452 "too many recipients", RFC
/// 5321 section 4.5.3.1.10) gets one result per transaction; all but the last have
/// last == false, and each must be recorded before the next transaction's content goes out.
struct message_result {
    std::uint64_t tag = 0;
    bool attempted = false;                   // MAIL was sent for it on this connection
    std::vector<recipient_result> recipients; // those this transaction decided, by index
    bool last = true;                         // no further transaction follows for this tag
};

// Effects, in the order the transport must carry them out. Bytes of consecutive sends may
// be gathered into one write: the session only emits several commands in a row where
// RFC 2920 allows them to travel together.
struct send_command {
    std::string wire;  // with CRLF
    std::string shown; // for --verbose: without CRLF, AUTH payloads masked
};
struct start_tls {};          // handshake now, then call tls_established()
struct request_message {};    // call message() or no_more_messages()
struct send_message_content { // stream the message's content through a dot_stuffer, end marker
                              // included
    std::uint64_t tag = 0;
    // 8-bit content for a server without 8BITMIME: it must be made 7-bit where it can
    // (RFC 6152 section 3).
    bool needs_seven_bit = false;
};
struct message_finished { // record it durably before sending later content
    message_result result;
};
struct connection_finished { // close the socket; failure set when the connection failed
    std::optional<reply> failure;
    // The smarthost refused us for want of authentication and none is configured: our
    // configuration's fault, not the messages' (all were deferred, none failed).
    bool authentication_required = false;
};
using client_effect = std::variant<send_command, start_tls, request_message, send_message_content,
                                   message_finished, connection_finished>;

/// Which timeout applies while waiting for the next reply (RFC 5321 section 4.5.3.2).
/// quit: the QUIT after a failure, which deserves only a short wait.
enum class wait_kind { nothing, greeting, command, final_dot, quit };

class client_session {
public:
    explicit client_session(client_options options);

    /// Consumes any chunk of server bytes (split anywhere).
    [[nodiscard]] std::vector<client_effect> feed(std::string_view bytes);
    /// The TLS handshake after STARTTLS succeeded: EHLO again (RFC 3207 section 4.2).
    [[nodiscard]] std::vector<client_effect> tls_established();
    /// Answer to request_message.
    [[nodiscard]] std::vector<client_effect> message(outgoing_message next);
    [[nodiscard]] std::vector<client_effect> no_more_messages();
    /// The connection broke (closed, reset, TLS failed, a write timed out): every message in
    /// flight is deferred, or unconfirmed when its final dot went out without a reply. why is
    /// for the recorded reply, e.g. "timeout waiting for DATA reply".
    [[nodiscard]] std::vector<client_effect> connection_lost(std::string_view why);
    /// Our timeout while waiting for a reply: as connection_lost, but the channel still works,
    /// so the session says QUIT before the transport closes it.
    [[nodiscard]] std::vector<client_effect> reply_timed_out(std::string_view why);
    /// The transport could not stream a message's content whole and will not send its final
    /// dot (it drops the connection instead): the message cannot have been delivered.
    void content_abandoned(std::uint64_t tag);

    [[nodiscard]] wait_kind waiting_for() const;
    [[nodiscard]] bool is_finished() const { return phase_ == phase::finished; }
    [[nodiscard]] bool is_tls_active() const { return tls_active_; }
    [[nodiscard]] const server_capabilities& capabilities() const { return capabilities_; }
    /// The AUTH mechanism chosen on this connection, empty before AUTH or without it.
    [[nodiscard]] const std::string& auth_mechanism() const { return auth_mechanism_; }
    /// Transactions started on this connection.
    [[nodiscard]] std::size_t messages_started() const { return messages_started_; }

private:
    enum class phase { greeting, hello, starttls, auth, ready, quitting, finished };
    enum class command_kind {
        greeting,
        ehlo,
        helo,
        starttls,
        auth,
        rset,
        mail,
        rcpt,
        data,
        final_dot,
        lone_dot,
        quit
    };
    enum class auth_step {
        none,
        plain,
        login_user,
        login_password,
        cram_md5,
        oauth,       // XOAUTH2 or OAUTHBEARER initial response sent
        oauth_error, // the error challenge was answered; the server's failure reply is next
    };
    struct expectation {
        command_kind kind;
        std::size_t index = 0; // recipient index for rcpt
    };
    struct pending_recipient {
        std::string address;
        std::size_t index = 0; // in the caller's outgoing_message
    };
    struct transaction {
        outgoing_message message;             // recipients: this transaction's only
        std::vector<std::size_t> indexes;     // of message.recipients in the caller's message
        std::vector<pending_recipient> later; // beyond max_recipients_per_transaction
        std::optional<reply> mail_reply;
        std::vector<std::optional<reply>> rcpt_replies;
        std::optional<reply> data_reply;
        bool content_sent = false; // send_message_content emitted; the dot goes with it
    };

    void drain(std::vector<client_effect>& out);
    void on_reply(const reply& r, std::vector<client_effect>& out);
    void on_greeting(const reply& r, std::vector<client_effect>& out);
    void on_ehlo(const reply& r, std::vector<client_effect>& out);
    void on_helo(const reply& r, std::vector<client_effect>& out);
    void on_starttls(const reply& r, std::vector<client_effect>& out);
    void on_auth(const reply& r, std::vector<client_effect>& out);
    void on_mail(const reply& r, std::vector<client_effect>& out);
    void on_rcpt(const reply& r, std::size_t index, std::vector<client_effect>& out);
    void on_data(const reply& r, std::vector<client_effect>& out);
    void on_final_dot(const reply& r, std::vector<client_effect>& out);

    void after_hello(std::vector<client_effect>& out);
    void start_auth(std::vector<client_effect>& out);
    void become_ready(std::vector<client_effect>& out);
    [[nodiscard]] transaction make_transaction(const outgoing_message& base,
                                               std::vector<pending_recipient> recipients) const;
    [[nodiscard]] static bool is_too_many(const transaction& t, std::size_t i);
    [[nodiscard]] static bool needs_continuation(const transaction& t);
    void send_transaction(std::vector<client_effect>& out);
    void send_next_rcpt_or_data(std::vector<client_effect>& out);
    void finish_transaction(bool front, const std::optional<reply>& final_reply,
                            std::vector<client_effect>& out);
    void advance(std::vector<client_effect>& out);
    void quit(std::vector<client_effect>& out);
    /// Ends the connection: every message in flight gets its result, then QUIT unless
    /// the channel is broken (send_quit false).
    void fail(reply why, std::vector<client_effect>& out, bool send_quit = true);
    /// True (and the connection failed) when r refuses us for want of AUTH we do not do.
    bool refused_for_authentication(const reply& r, std::vector<client_effect>& out);
    void report_unsent(const transaction& t, const reply& why, std::vector<client_effect>& out);
    void send(std::string wire, std::string shown, command_kind kind,
              std::vector<client_effect>& out, std::size_t index = 0);

    client_options options_;
    reply_parser parser_;
    phase phase_ = phase::greeting;
    bool tls_active_ = false;
    server_capabilities capabilities_;
    auth_step auth_step_ = auth_step::none;
    std::string auth_mechanism_;
    std::string oauth_error_; // the server's error challenge (JSON), for the failure reason
    std::deque<expectation> expected_;      // replies owed by the server, in order (RFC 2920 3.1)
    std::deque<transaction> in_flight_;     // at most two: one awaiting its final dot, one behind
    std::deque<transaction> continuations_; // recipients of a message left for a new transaction
    std::optional<reply> failure_;          // why the connection failed, reported after QUIT
    bool quit_sent_ = false;
    bool authentication_required_ = false;
    bool need_rset_ = false;         // a transaction was left open without its final dot
    bool message_requested_ = false; // request_message emitted, answer not yet given
    bool no_more_ = false;
    std::size_t messages_started_ = 0;
};

} // namespace leafmail::smtp
