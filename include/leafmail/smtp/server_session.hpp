#pragma once
// Server side of one SMTP connection (RFC 5321, with RFC 1870 SIZE, RFC 6152 8BITMIME,
// RFC 2920 PIPELINING, RFC 2034 ENHANCEDSTATUSCODES). Bytes in, effects out: it never blocks,
// never throws on peer input and knows nothing of sockets, files, clocks or logs.
#include "leafmail/smtp/command.hpp" // body_type
#include "leafmail/smtp/reply.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace leafmail::smtp {

struct server_options {
    std::string hostname = "localhost";                // in the greeting and EHLO reply
    std::uint64_t max_message_size = 25 * 1024 * 1024; // octets of content; advertised by SIZE
    std::size_t max_recipients = 100;                  // RFC 5321 4.5.3.1.8: at least 100
    std::size_t max_bad_commands = 20;                 // then 421 and close
    /// Why a well-formed recipient is refused with 550 5.1.1 (a local name that reaches
    /// nobody), or nullopt to take it. Unset: every well-formed recipient is taken.
    std::function<std::optional<std::string>(std::string_view forward_path)> refuse_recipient;
};

/// What MAIL, RCPT and DATA built; reset by RSET, HELO/EHLO and after each message.
struct transaction {
    std::string reverse_path; // without angle brackets; empty for the null path <>
    std::vector<std::string> recipients;
    std::optional<std::uint64_t> declared_size; // MAIL FROM ... SIZE=n
    body_type body = body_type::unspecified;
};

// Effects, in the order the transport must carry them out.
struct send_reply {
    reply what;
};
struct begin_message {}; // DATA accepted and 354 queued before it: open the content sink
struct message_content { // dot-unstuffed content with CRLF line ends, to append to the sink
    std::string bytes;
};
struct commit_message {};   // end of DATA, content acceptable: store it, then call stored()
                            // or store_failed(); input after the final dot waits until then
struct discard_message {};  // end of DATA, content refused (size, NUL, line length): drop the
                            // sink; the refusal reply follows as a send_reply
struct close_connection {}; // after the replies before it are written
using effect = std::variant<send_reply, begin_message, message_content, commit_message,
                            discard_message, close_connection>;

enum class store_error { local_error, insufficient_storage };

class server_session {
public:
    explicit server_session(server_options options);

    [[nodiscard]] reply greeting() const; // 220 <hostname> ESMTP ...

    /// Consumes any chunk of client bytes (split anywhere) and returns what to do.
    [[nodiscard]] std::vector<effect> feed(std::string_view bytes);

    /// The transport committed the message: 250 2.0.0 with the id, then the effects of any
    /// pipelined input that arrived after the final dot.
    [[nodiscard]] std::vector<effect> stored(std::string_view queue_id);
    /// The commit failed: 451 4.3.0 or 452 4.3.1, the transaction is reset, then as stored().
    [[nodiscard]] std::vector<effect> store_failed(store_error why);

    [[nodiscard]] const std::string& client_helo() const { return helo_; }
    [[nodiscard]] bool is_esmtp() const { return esmtp_; }
    [[nodiscard]] const transaction& current_transaction() const { return transaction_; }
    /// True between the 354 and the end of DATA (the transport may use a longer timeout).
    [[nodiscard]] bool is_receiving_data() const;
    /// True from an accepted MAIL until the message is stored or the transaction reset.
    [[nodiscard]] bool is_in_transaction() const;
    /// True once close_connection was emitted; further feed() calls return nothing.
    [[nodiscard]] bool is_closed() const;

private:
    enum class phase { need_helo, ready, in_transaction, in_data, awaiting_store, closed };

    // Where the DATA reader stands between two bytes (framing rules in server_session.cpp).
    enum class data_state {
        line_start,   // after a real CRLF: a '.' here is special
        in_line,      // inside a line, or after a bare LF/CR: a '.' here is plain content
        after_cr,     // a CR that may start a CRLF
        after_dot,    // a '.' at line_start: stuffing, or the start of the final "."
        after_dot_cr, // ".<CR>" at line_start: an LF now ends the data
    };
    struct data_reader {
        data_state state = data_state::line_start;
        std::uint64_t size = 0;      // content octets after unstuffing and normalisation
        std::size_t line_length = 0; // octets of the current content line, CRLF excluded
        bool has_nul = false;
        bool has_long_line = false;
        bool too_big = false;
        [[nodiscard]] bool is_refused() const { return has_nul || has_long_line || too_big; }
    };

    server_options options_;
    phase phase_ = phase::need_helo;
    std::string helo_;
    bool esmtp_ = false;
    transaction transaction_;
    std::string pending_input_;            // a partial command line, or input behind the final dot
    bool discarding_command_line_ = false; // skipping an overlong line up to its LF
    std::size_t bad_commands_ = 0;
    data_reader data_;

    void run(std::string_view input, std::vector<effect>& out);
    void resume(std::vector<effect>& out);
    std::size_t read_command_line(std::string_view input, std::vector<effect>& out);
    std::size_t read_data(std::string_view input, std::vector<effect>& out);
    void emit_content(std::string& chunk, std::string_view bytes,
                      std::size_t usable = std::string_view::npos);
    void add_content_text(std::string& chunk, std::string_view bytes);
    void end_content_line(std::string& chunk);
    void finish_data(std::string& chunk, std::vector<effect>& out);

    void execute(const command& cmd, std::vector<effect>& out);
    void handle_helo(const command& cmd, std::vector<effect>& out);
    void handle_mail(const command& cmd, std::vector<effect>& out);
    void handle_rcpt(const command& cmd, std::vector<effect>& out);
    void handle_data(const command& cmd, std::vector<effect>& out);
    void handle_rset(const command& cmd, std::vector<effect>& out);
    void handle_quit(const command& cmd, std::vector<effect>& out);
    void handle_vrfy(const command& cmd, std::vector<effect>& out);

    void respond(std::vector<effect>& out, reply what);
    void close(std::vector<effect>& out);
    void end_transaction();
};

} // namespace leafmail::smtp
