#include "leafmail/net/relay_connection.hpp"

#include "leafmail/log.hpp"
#include "leafmail/net/tls_context.hpp"
#include "leafmail/smtp/dot_stuffer.hpp"
#include "leafmail/text.hpp"

#include <map>

namespace leafmail::net {

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

// Content is read from its source and written to the socket in blocks of this size, so a
// message of any size passes through bounded memory.
constexpr std::size_t content_block = 64 * 1024;
// Commands and content gathered beyond this are written before more is added.
constexpr std::size_t write_threshold = 64 * 1024;
constexpr std::size_t read_block = 16 * 1024;
// The wait for the 221 to a QUIT after a failure, and for the peer's TLS close_notify: the
// connection has failed already, it need not hold the flush for a full reply timeout.
constexpr std::chrono::seconds closing_wait{10};

/// The job source failed (a spool error): end the flush, do not blame the smarthost.
struct job_source_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// The state of one connection; run() is its only entry point.
class connection {
public:
    connection(asio::io_context& io, asio::ssl::context& tls, const relay_endpoint& endpoint,
               const smtp::client_options& options, relay_job_source& source)
        : stream_(io, tls), resolver_(io), watchdog_(io), endpoint_(endpoint),
          implicit_tls_(options.tls == smtp::client_tls::implicit), session_(options),
          source_(source)
    {
    }

    relay_connection_result result;

    awaitable<void> run()
    {
        try {
            co_await connect();
        } catch (const std::exception& e) {
            result.failure = smtp::reply{451, "4.4.1", {failure_text("cannot connect to", e)}};
            stop_watchdog();
            co_return;
        }
        result.connected = true;
        std::exception_ptr source_failure;
        // Bounded: each round either ends the session or turns a timeout into its QUIT, and
        // the session times out at most once before it is finished.
        for (int round = 0; round < 3 && !session_.is_finished() && !source_failure; ++round) {
            std::optional<std::string> lost;
            try {
                co_await converse();
            } catch (const job_source_error&) {
                source_failure = std::current_exception();
            } catch (const std::exception& e) {
                // Any I/O error or timeout ends the session through this one boundary.
                lost = timed_out_ ? timeout_text() : std::string(e.what());
            }
            if (!lost || source_failure)
                break;
            try {
                // A timeout while waiting for a reply leaves the channel in step: the session
                // says QUIT (the next round sends it). Anything else broke the channel.
                if (timed_out_ && reading_ && round == 0 && stream_.lowest_layer().is_open())
                    co_await handle(session_.reply_timed_out(*lost));
                else
                    co_await handle(session_.connection_lost(*lost));
            } catch (const job_source_error&) {
                source_failure = std::current_exception();
            }
        }
        if (!source_failure)
            co_await shutdown_tls();
        stop_watchdog();
        close();
        if (source_failure)
            std::rethrow_exception(source_failure); // a spool problem, not the smarthost's
    }

    awaitable<void> watch()
    {
        // RFC 5321 section 4.5.3.2: every wait has a limit. Closing the socket makes the
        // pending operation fail, which ends the session through its error boundary.
        while (!stopped_) {
            armed_for_ = deadline_;
            watchdog_.expires_at(deadline_);
            boost::system::error_code ec;
            co_await watchdog_.async_wait(asio::redirect_error(use_awaitable, ec));
            if (stopped_)
                break;
            if (clock_type::now() >= deadline_) {
                resolver_.cancel();
                if (!timed_out_ && reading_) {
                    // The first timeout on a reply only interrupts the read: the session may
                    // still say QUIT. Any later one, or one in a write, closes the socket.
                    timed_out_ = true;
                    boost::system::error_code ignored;
                    stream_.lowest_layer().cancel(ignored);
                    deadline_ = clock_type::time_point::max();
                    continue;
                }
                timed_out_ = true;
                close();
                break;
            }
        }
    }

private:
    void arm(std::chrono::seconds limit, std::string what)
    {
        // A later deadline needs no wake-up: the watchdog fires at the old one, sees the new
        // one and waits again. Only an earlier one (the first) must interrupt its wait.
        deadline_ = clock_type::now() + limit;
        waiting_for_ = std::move(what);
        if (deadline_ < armed_for_)
            watchdog_.cancel();
    }

    void stop_watchdog()
    {
        stopped_ = true;
        watchdog_.cancel();
    }

    void close()
    {
        boost::system::error_code ignored;
        stream_.lowest_layer().close(ignored);
    }

    /// RFC 8446 section 6.1 (and RFC 5246 7.2.1): end TLS with close_notify so the server sees
    /// a proper end rather than a truncation (Exim: "TLS connection was non-properly
    /// terminated"). The peer's answering close_notify is waited for briefly, never needed.
    awaitable<void> shutdown_tls()
    {
        if (!tls_active_ || !stream_.lowest_layer().is_open())
            co_return;
        arm(closing_wait, "closing TLS");
        boost::system::error_code ignored;
        co_await stream_.async_shutdown(asio::redirect_error(use_awaitable, ignored));
    }

    std::string timeout_text() const { return "timeout " + waiting_for_; }

    std::string failure_text(std::string_view verb, const std::exception& e) const
    {
        std::string text =
            std::string(verb) + " " + endpoint_.host + ":" + std::to_string(endpoint_.port) + ": ";
        return text + (timed_out_ ? timeout_text() : std::string(e.what()));
    }

    awaitable<void> connect()
    {
        arm(endpoint_.connect_timeout, "connecting");
        auto endpoints = co_await resolver_.async_resolve(
            endpoint_.host, std::to_string(endpoint_.port), use_awaitable);
        co_await asio::async_connect(stream_.next_layer(), endpoints, use_awaitable);
        stream_.next_layer().set_option(tcp::no_delay(true));
        if (implicit_tls_)
            co_await handshake(); // RFC 8314 section 3.3: TLS from the first byte
    }

    awaitable<void> handshake()
    {
        arm(endpoint_.timeout, "in the TLS handshake");
        prepare_client_tls(stream_, endpoint_.host, endpoint_.tls_verify);
        boost::system::error_code ec;
        co_await stream_.async_handshake(asio::ssl::stream_base::client,
                                         asio::redirect_error(use_awaitable, ec));
        if (ec) {
            std::string why = tls_verify_error(stream_);
            throw std::runtime_error("TLS handshake failed: " +
                                     (why.empty() ? ec.message() : "certificate refused: " + why));
        }
        tls_active_ = true;
        result.tls_version = SSL_get_version(stream_.native_handle());
        if (endpoint_.verbose)
            log::debug(log::fields({{"event", "tls"},
                                    {"version", SSL_get_version(stream_.native_handle())},
                                    {"cipher", SSL_get_cipher_name(stream_.native_handle())}}));
    }

    awaitable<void> converse()
    {
        std::string buffer(read_block, '\0');
        // The reply timeout bounds the whole reply, not each read: a server that dribbles
        // one byte just inside the limit must not hold the flush for ever. The deadline is
        // set again only when something moved (a write, or a reply that produced effects).
        bool progressed = true;
        while (!session_.is_finished()) {
            if (!out_.empty())
                progressed = true;
            co_await flush();
            if (session_.is_finished())
                break;
            if (progressed)
                arm_for_reply();
            std::size_t n = co_await read_some(buffer);
            std::string_view bytes(buffer.data(), n);
            if (endpoint_.verbose)
                show_server_lines(bytes);
            auto effects = session_.feed(bytes);
            progressed = !effects.empty();
            co_await handle(std::move(effects));
        }
        co_await flush();
    }

    void arm_for_reply()
    {
        switch (session_.waiting_for()) {
        case smtp::wait_kind::greeting:
            arm(endpoint_.timeout, "waiting for the greeting");
            break;
        case smtp::wait_kind::final_dot:
            arm(endpoint_.data_timeout, "waiting for the reply to the end of data");
            break;
        case smtp::wait_kind::quit:
            arm(std::min(endpoint_.timeout, closing_wait), "waiting for the reply to QUIT");
            break;
        default:
            arm(endpoint_.timeout, "waiting for a reply");
            break;
        }
    }

    awaitable<std::size_t> read_some(std::string& buffer)
    {
        reading_ = true;
        std::size_t n = 0;
        if (tls_active_)
            n = co_await stream_.async_read_some(asio::buffer(buffer), use_awaitable);
        else
            n = co_await stream_.next_layer().async_read_some(asio::buffer(buffer), use_awaitable);
        reading_ = false;
        co_return n;
    }

    awaitable<void> flush()
    {
        if (out_.empty())
            co_return;
        arm(endpoint_.timeout, "sending to the smarthost");
        if (tls_active_)
            co_await asio::async_write(stream_, asio::buffer(out_), use_awaitable);
        else
            co_await asio::async_write(stream_.next_layer(), asio::buffer(out_), use_awaitable);
        out_.clear();
    }

    void show_server_lines(std::string_view bytes)
    {
        shown_partial_.append(bytes);
        std::size_t start = 0;
        for (std::size_t end; (end = shown_partial_.find('\n', start)) != std::string::npos;
             start = end + 1) {
            std::string_view line(shown_partial_.data() + start, end - start);
            if (!line.empty() && line.back() == '\r')
                line.remove_suffix(1);
            log::debug("S: " + text::escape_controls(line)); // the smarthost's bytes, escaped
        }
        shown_partial_.erase(0, start);
        if (shown_partial_.size() > 4096)
            shown_partial_.clear();
    }

    awaitable<void> handle(std::vector<smtp::client_effect> effects)
    {
        for (auto& effect : effects) {
            if (auto* command = std::get_if<smtp::send_command>(&effect)) {
                if (endpoint_.verbose)
                    // AUTH payloads are masked by the core; addresses come from the spool.
                    log::debug("C: " + text::escape_controls(command->shown));
                out_ += command->wire;
            } else if (std::get_if<smtp::start_tls>(&effect)) {
                co_await flush();
                // RFC 3207 section 4.2: the handshake starts right after the 220; nothing
                // read before it is used afterwards (the session cleared its parser).
                co_await handshake();
                co_await handle(session_.tls_established());
            } else if (std::get_if<smtp::request_message>(&effect)) {
                result.auth_mechanism = session_.auth_mechanism(); // ready: AUTH is behind us
                std::optional<relay_job> job;
                try {
                    job = source_.next();
                } catch (const std::exception& e) {
                    throw job_source_error(e.what());
                }
                if (job) {
                    auto message = job->message;
                    contents_.insert_or_assign(message.tag, std::move(job->content));
                    co_await handle(session_.message(std::move(message)));
                } else {
                    co_await handle(session_.no_more_messages());
                }
            } else if (auto* content = std::get_if<smtp::send_message_content>(&effect)) {
                co_await send_content(content->tag, content->needs_seven_bit);
            } else if (auto* done = std::get_if<smtp::message_finished>(&effect)) {
                if (done->result.last)
                    contents_.erase(done->result.tag);
                ++result.messages_finished;
                if (done->result.attempted)
                    ++result.messages_attempted;
                try {
                    source_.finished(done->result); // durable before any later content is sent
                } catch (const std::exception& e) {
                    throw job_source_error(e.what());
                }
            } else if (auto* finished = std::get_if<smtp::connection_finished>(&effect)) {
                result.failure = finished->failure;
                result.authentication_required = finished->authentication_required;
            }
        }
    }

    awaitable<void> send_content(std::uint64_t tag, bool needs_seven_bit)
    {
        auto it = contents_.find(tag);
        if (it == contents_.end())
            throw std::logic_error("content of an unknown message requested");
        content_source& reader = *it->second;
        // From the first octet (the same message may go again, for recipients of a later
        // transaction), made 7-bit where it must be.
        reader.start(needs_seven_bit);
        smtp::dot_stuffer stuffer;
        if (endpoint_.verbose)
            log::debug("C: <content of " + std::to_string(reader.size()) + " octets>");
        for (;;) {
            std::string block;
            try {
                block = reader.read(content_block);
            } catch (const std::exception& e) {
                // Never end a message that could not be read whole with the final dot: the
                // connection is dropped instead, so the server discards the partial message.
                session_.content_abandoned(tag);
                throw std::runtime_error(std::string("cannot read spooled content: ") + e.what());
            }
            if (block.empty())
                break;
            stuffer.stuff(block, out_);
            if (out_.size() >= write_threshold)
                co_await flush();
        }
        stuffer.finish(out_); // CRLF "." CRLF, RFC 5321 section 4.1.1.4
    }

    asio::ssl::stream<tcp::socket> stream_;
    tcp::resolver resolver_;
    asio::steady_timer watchdog_;
    clock_type::time_point deadline_ = clock_type::time_point::max();
    clock_type::time_point armed_for_ = clock_type::time_point::max();
    std::string waiting_for_;
    bool timed_out_ = false;
    bool reading_ = false; // a read is waiting for the server (a timeout there may QUIT)
    bool stopped_ = false;
    bool tls_active_ = false;
    relay_endpoint endpoint_;
    bool implicit_tls_;
    smtp::client_session session_;
    relay_job_source& source_;
    std::string out_;
    std::string shown_partial_;
    std::map<std::uint64_t, std::unique_ptr<content_source>> contents_;
};

} // namespace

relay_connection_result relay_over_one_connection(asio::ssl::context& tls,
                                                  const relay_endpoint& endpoint,
                                                  const smtp::client_options& options,
                                                  relay_job_source& source)
{
    asio::io_context io;
    connection c(io, tls, endpoint, options, source);
    std::exception_ptr failure;
    asio::co_spawn(io, c.run(), [&](std::exception_ptr e) { failure = e; });
    asio::co_spawn(io, c.watch(), asio::detached);
    io.run();
    if (failure)
        std::rethrow_exception(failure); // from the job source (spool errors): not a peer problem
    return c.result;
}

} // namespace leafmail::net
