#include "leafmail/receiver/smtp_server.hpp"

#include "leafmail/intake/intake.hpp"

#include "leafmail/log.hpp"
#include "leafmail/smtp/replies.hpp"
#include "leafmail/smtp/server_session.hpp"
#include "leafmail/text.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <functional>
#include <netinet/in.h>
#include <optional>
#include <sys/socket.h>
#include <unistd.h>

namespace leafmail::receiver {
namespace asio = net::asio;

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

// Commands are short; a small buffer keeps an idle connection cheap. DATA gets a large one
// for as long as the content flows, so a big message costs few reads.
constexpr std::size_t command_buffer_size = 1024;
constexpr std::size_t data_buffer_size = 64 * 1024;
constexpr auto sweep_interval = std::chrono::seconds(1);
// A client that does not even read our 421 within this long after its deadline is dropped.
constexpr auto close_after_deadline = std::chrono::seconds(10);

std::string session_label(std::uint64_t number)
{
    char text[17];
    std::snprintf(text, sizeof text, "%llx", static_cast<unsigned long long>(number));
    return text;
}

// The intake's one errno table, in SMTP terms (452 or 451).
smtp::store_error classify(const std::system_error& e)
{
    return intake::classify(e).what == intake::outcome::insufficient_storage
               ? smtp::store_error::insufficient_storage
               : smtp::store_error::local_error;
}

std::string address_text(const tcp::endpoint& endpoint)
{
    auto address = endpoint.address();
    if (address.is_v6() && address.to_v6().is_v4_mapped())
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    return address.to_string();
}

std::string endpoint_text(const tcp::endpoint& endpoint)
{
    const std::string address = address_text(endpoint);
    const bool is_v6 = address.find(':') != std::string::npos;
    return (is_v6 ? "[" + address + "]" : address) + ":" + std::to_string(endpoint.port());
}

// Both directions of an inetd session: stdin and stdout are separate descriptors.
struct descriptor_pair {
    asio::posix::stream_descriptor input;
    asio::posix::stream_descriptor output;

    using executor_type = asio::any_io_executor;
    executor_type get_executor() { return input.get_executor(); }
    template <class Buffers, class Token>
    auto async_read_some(const Buffers& buffers, Token&& token)
    {
        return input.async_read_some(buffers, std::forward<Token>(token));
    }
    template <class Buffers, class Token>
    auto async_write_some(const Buffers& buffers, Token&& token)
    {
        return output.async_write_some(buffers, std::forward<Token>(token));
    }
};

void cancel_stream(tcp::socket& socket)
{
    boost::system::error_code ignored;
    socket.cancel(ignored);
}
void cancel_stream(descriptor_pair& pair)
{
    boost::system::error_code ignored;
    pair.input.cancel(ignored);
    pair.output.cancel(ignored);
}
void close_stream(tcp::socket& socket)
{
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
}
void close_stream(descriptor_pair& pair)
{
    boost::system::error_code ignored;
    pair.input.close(ignored);
    pair.output.close(ignored);
}

} // namespace

tcp::endpoint parse_listen_address(const std::string& text)
{
    const auto parts = text::split_host_port(text);
    if (!parts || !parts->port)
        throw std::invalid_argument("listen address '" + text + "' is not address:port");
    std::string host = parts->host == "localhost" ? "127.0.0.1" : parts->host;
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(host, ec);
    if (ec)
        throw std::invalid_argument("listen address '" + text +
                                    "' does not start with an IP address");
    // Port 0: any free port, which the daemon then logs (tests read it).
    const auto port = text::parse_port(*parts->port, true);
    if (!port)
        throw std::invalid_argument("listen address '" + text + "' has no valid port");
    return {address, static_cast<unsigned short>(*port)};
}

// What the sweep and shut_down() need to reach a running session.
struct smtp_server::session_handle {
    clock_type::time_point deadline = clock_type::time_point::max();
    bool reading = false;       // suspended in a read: the only place a cancel is answered
    bool timed_out = false;     // the sweep cancelled the read: answer 421 and close
    bool shutting_down = false; // stopping and this session may not go on: 421 and close
    bool in_transaction = false;
    std::function<void()> cancel;
    std::function<void()> close;
};

// One connection: the pure session core plus the bytes, the spool writer and the logs.
template <class Stream> struct smtp_server::session_io {
    smtp_server& server;
    Stream& stream;
    session_handle& handle;
    std::string label;
    std::string peer;
    smtp::server_session core;
    std::string out;

    // The message being received.
    // On the heap, and only during a transaction: an idle session's coroutine frame holds a
    // pointer, not an entry writer and an envelope.
    std::unique_ptr<intake::new_entry> writer;
    std::optional<smtp::store_error> failure;
    std::size_t messages = 0;
    // As RCPT checked them, so the commit expands alike; shared by every session started
    // under the same configuration (one copy per session was a third of its idle memory).
    std::shared_ptr<const local_recipients> local;

    void note_failure(smtp::store_error why, const std::string& what)
    {
        if (!failure)
            log::error(
                log::fields({{"event", "spool-error"}, {"session", label}, {"error", what}}));
        failure = why;
        if (writer)
            writer->abort();
        writer.reset();
    }

    void begin_message()
    {
        failure.reset();
        const auto& t = core.current_transaction();
        // A local submission (sendmail -bs) names its submitter like every local one.
        intake::source from = server.local_submitter_.value_or(intake::source{});
        from.helo = core.client_helo();
        if (!server.local_submitter_) {
            from.client_address = peer;
            from.is_esmtp = core.is_esmtp();
        }
        // RCPT refused what cannot be resolved with these same rules, so nothing is refused here.
        const auto expansion = intake::expand_recipients(*local, t.recipients);
        try {
            writer = std::make_unique<intake::new_entry>(intake::begin_entry(
                *server.spool_,
                {server.settings_.hostname, server.settings_.receiver.min_free_space}, from,
                t.reverse_path, expansion.recipients, std::time(nullptr)));
        } catch (const std::system_error& e) {
            note_failure(classify(e), e.what());
        }
    }

    void append(const std::string& bytes)
    {
        if (!writer)
            return;
        try {
            writer->write(bytes);
        } catch (const std::system_error& e) {
            note_failure(classify(e), e.what());
        }
    }

    // fsync and rename on the worker pool; this coroutine resumes on the event loop after.
    awaitable<std::vector<smtp::effect>> commit()
    {
        if (failure || !writer)
            co_return core.store_failed(failure.value_or(smtp::store_error::local_error));
        const std::string id = writer->id();
        // The client waits for us now, not we for it: no idle deadline while the disk works.
        handle.deadline = clock_type::time_point::max();
        try {
            co_await asio::co_spawn(
                server.fsync_pool_,
                [this]() -> awaitable<void> {
                    writer->commit();
                    co_return;
                },
                use_awaitable);
        } catch (const std::system_error& e) {
            note_failure(classify(e), e.what());
            co_return core.store_failed(*failure);
        } catch (const std::exception& e) {
            // Whatever else failed (the envelope archive, say): a 451 for this message, never a
            // dropped connection without an answer.
            note_failure(smtp::store_error::local_error, e.what());
            co_return core.store_failed(*failure);
        }
        const auto size = writer->content_size();
        const spool::envelope committed = std::move(writer->envelope());
        writer.reset();
        ++messages;
        log::info(log::fields({{"event", "accepted"},
                               {"session", label},
                               {"id", id},
                               {"from", "<" + committed.reverse_path + ">"},
                               {"recipients", std::to_string(committed.recipients.size())},
                               {"size", std::to_string(size)}}));
        co_return core.stored(id);
    }

    void queue_reply(const smtp::reply& r)
    {
        out += r.to_wire();
        if (r.code >= 400)
            log::info(
                log::fields({{"event", "reject"}, {"session", label}, {"reply", r.to_string()}}));
    }

    awaitable<void> flush_output()
    {
        if (out.empty())
            co_return;
        handle.deadline = clock_type::now() + server.settings_.receiver.idle_timeout;
        co_await asio::async_write(stream, asio::buffer(out), use_awaitable);
        out.clear();
    }

    /// Carries out the effects in order; false once the connection is to be closed.
    awaitable<bool> carry_out(std::vector<smtp::effect> effects)
    {
        for (std::size_t i = 0; i < effects.size(); ++i) {
            auto& e = effects[i];
            if (auto* reply = std::get_if<smtp::send_reply>(&e)) {
                queue_reply(reply->what);
            } else if (std::holds_alternative<smtp::begin_message>(e)) {
                begin_message();
            } else if (auto* content = std::get_if<smtp::message_content>(&e)) {
                append(content->bytes);
            } else if (std::holds_alternative<smtp::commit_message>(e)) {
                auto more = co_await commit();
                effects.insert(effects.end(), std::make_move_iterator(more.begin()),
                               std::make_move_iterator(more.end()));
            } else if (std::holds_alternative<smtp::discard_message>(e)) {
                writer.reset();
            } else if (std::holds_alternative<smtp::close_connection>(e)) {
                co_await flush_output();
                co_return false;
            }
        }
        co_await flush_output();
        co_return true;
    }
};

smtp_server::smtp_server(asio::io_context& io, const config& settings)
    : io_(io), settings_(settings),
      local_recipients_(std::make_shared<const local_recipients>(local_recipients_of(settings))),
      fsync_pool_(settings.receiver.fsync_workers), sweep_timer_(io), grace_timer_(io)
{
}

smtp_server::~smtp_server()
{
    fsync_pool_.join();
}

void smtp_server::bind()
{
    for (const auto& text : settings_.receiver.listen) {
        tcp::endpoint endpoint;
        try {
            endpoint = parse_listen_address(text);
        } catch (const std::invalid_argument& e) {
            throw std::system_error(std::make_error_code(std::errc::invalid_argument), e.what());
        }
        tcp::acceptor acceptor(io_);
        try {
            acceptor.open(endpoint.protocol());
            // A restart must bind at once even while old connections sit in TIME_WAIT.
            acceptor.set_option(tcp::acceptor::reuse_address(true));
            if (endpoint.address().is_v6())
                acceptor.set_option(asio::ip::v6_only(true));
            acceptor.bind(endpoint);
            acceptor.listen(asio::socket_base::max_listen_connections);
        } catch (const boost::system::system_error& e) {
            throw std::system_error(e.code().value(), std::generic_category(),
                                    "cannot listen on " + text);
        }
        acceptors_.push_back(std::move(acceptor));
    }
}

std::vector<tcp::endpoint> smtp_server::local_endpoints() const
{
    std::vector<tcp::endpoint> out;
    for (const auto& acceptor : acceptors_)
        out.push_back(acceptor.local_endpoint());
    return out;
}

void smtp_server::start(spool::spool& spool)
{
    spool_ = &spool;
    for (auto& acceptor : acceptors_) {
        log::info(log::fields(
            {{"event", "listening"}, {"address", endpoint_text(acceptor.local_endpoint())}}));
        asio::co_spawn(io_, accept_loop(acceptor), asio::detached);
    }
    asio::co_spawn(io_, sweep_idle_sessions(), asio::detached);
    // The injector hands its small entries over only when they can share the journal's
    // group commit; without a journal it commits them itself, as fast as we could.
    if (spool.has_journal()) {
        try {
            handover_ = std::make_unique<handover_listener>(io_, fsync_pool_, spool,
                                                            settings_.receiver.max_connections);
            handover_->start();
            log::info(log::fields({{"event", "listening"}, {"handover", "<spool>/handover"}}));
        } catch (const std::system_error& e) {
            log::warning(log::fields({{"event", "handover-unavailable"}, {"why", e.what()}}));
        }
    }
}

awaitable<void> pause_after_accept_error(asio::io_context& io,
                                         const boost::system::error_code& error)
{
    log::warning(log::fields({{"event", "accept-error"}, {"error", error.message()}}));
    asio::steady_timer pause(io, std::chrono::milliseconds(100));
    boost::system::error_code ignored;
    co_await pause.async_wait(asio::redirect_error(use_awaitable, ignored));
}

awaitable<void> smtp_server::accept_loop(tcp::acceptor& acceptor)
{
    while (!stopping_) {
        boost::system::error_code ec;
        tcp::socket socket =
            co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
        if (ec == asio::error::operation_aborted || stopping_)
            break;
        if (ec) {
            co_await pause_after_accept_error(io_, ec);
            continue;
        }
        socket.set_option(tcp::no_delay(true), ec);
        const auto remote = socket.remote_endpoint(ec);
        if (ec)
            continue; // the client left before we looked
        asio::co_spawn(io_,
                       run_session(std::move(socket), address_text(remote), next_session_number_++),
                       asio::detached);
    }
}

void smtp_server::serve_inetd(spool::spool& spool, int input_fd, int output_fd,
                              std::optional<intake::source> local_submitter)
{
    spool_ = &spool;
    local_submitter_ = std::move(local_submitter);
    inetd_ = true;
    std::string peer = "local";
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getpeername(input_fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
        char text[INET6_ADDRSTRLEN] = {};
        if (address.ss_family == AF_INET)
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&address)->sin_addr, text,
                        sizeof text);
        else if (address.ss_family == AF_INET6)
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr, text,
                        sizeof text);
        if (text[0] != '\0')
            peer = text;
        if (peer.starts_with("::ffff:") && peer.find('.') != std::string::npos)
            peer = peer.substr(7);
    }
    descriptor_pair pair{asio::posix::stream_descriptor(io_, ::dup(input_fd)),
                         asio::posix::stream_descriptor(io_, ::dup(output_fd))};
    asio::co_spawn(io_, run_session(std::move(pair), peer, next_session_number_++), asio::detached);
    asio::co_spawn(io_, sweep_idle_sessions(), asio::detached);
}

awaitable<void> smtp_server::sweep_idle_sessions()
{
    while (!stopping_ || !sessions_.empty()) {
        sweep_timer_.expires_after(sweep_interval);
        boost::system::error_code ec;
        co_await sweep_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
        if (ec == asio::error::operation_aborted && stopping_ && sessions_.empty())
            break;
        const auto now = clock_type::now();
        for (session_handle* session : sessions_) {
            if (now < session->deadline)
                continue;
            if (session->reading && !session->timed_out) {
                session->timed_out = true;
                session->cancel(); // the read ends, the session answers 421 and closes
            } else {
                // Stuck writing (a client that does not read our replies, or our 421): there
                // is nobody to tell, just let go of the socket.
                session->close();
            }
        }
    }
}

template <class Stream> awaitable<void> smtp_server::refuse(Stream& stream, std::string reply_wire)
{
    boost::system::error_code ec;
    co_await asio::async_write(stream, asio::buffer(reply_wire),
                               asio::redirect_error(use_awaitable, ec));
}

template <class Stream>
awaitable<void> smtp_server::run_session(Stream stream, std::string peer, std::uint64_t number)
{
    session_handle handle;
    handle.cancel = [&stream] { cancel_stream(stream); };
    handle.close = [&stream] { close_stream(stream); };
    const auto registered = sessions_.insert(sessions_.end(), &handle);
    const std::string label = session_label(number);
    const auto started = clock_type::now();
    log::info(log::fields({{"event", "connect"}, {"session", label}, {"client", peer}}));

    // A local recipient that reaches nobody (no alias, no admin-address) is refused at RCPT
    // rather than bounced later; the session keeps the rules it started with.
    const std::shared_ptr<const local_recipients> local = local_recipients_;
    smtp::server_options options{settings_.hostname,
                                 settings_.receiver.max_message_size,
                                 settings_.receiver.max_recipients,
                                 settings_.receiver.max_bad_commands,
                                 {}};
    options.refuse_recipient = [local](std::string_view address) -> std::optional<std::string> {
        auto resolved = resolve_recipient(*local, address);
        if (resolved.refusal.empty())
            return std::nullopt;
        return std::move(resolved.refusal);
    };
    session_io<Stream> io{
        *this, stream, handle, label, peer, smtp::server_session(std::move(options)),
        {},    {},     {},     0,     local};
    std::string end_reason = "quit";
    try {
        const bool is_local_pipe = peer == "local";
        if (!is_local_pipe && !settings_.receiver.access.is_allowed(peer)) {
            log::warning(log::fields({{"event", "refused"},
                                      {"session", label},
                                      {"client", peer},
                                      {"reason", "access-denied"}}));
            co_await refuse(stream, smtp::replies::access_denied().to_wire());
            end_reason = "refused";
        } else if (sessions_.size() > settings_.receiver.max_connections) {
            log::warning(log::fields({{"event", "refused"},
                                      {"session", label},
                                      {"client", peer},
                                      {"reason", "too-many-connections"}}));
            co_await refuse(stream,
                            smtp::replies::too_many_connections(settings_.hostname).to_wire());
            end_reason = "refused";
        } else {
            io.out = io.core.greeting().to_wire();
            co_await io.flush_output();
            std::vector<char> buffer(command_buffer_size);
            bool command_progress = true;
            for (;;) {
                handle.in_transaction = io.core.is_in_transaction();
                // Stopping: a session outside a transaction ends now; one inside it ends when the
                // grace period is over (shut_down() sets shutting_down then).
                if (handle.shutting_down || (stopping_ && !handle.in_transaction)) {
                    io.queue_reply(smtp::replies::service_shutting_down(settings_.hostname));
                    co_await io.flush_output();
                    end_reason = "shutdown";
                    break;
                }
                const std::size_t wanted =
                    io.core.is_receiving_data() ? data_buffer_size : command_buffer_size;
                if (buffer.size() != wanted) {
                    buffer.resize(wanted);
                    buffer.shrink_to_fit();
                }
                // RFC 5321 4.5.3.2.7: a command line must arrive whole within idle-timeout;
                // bytes that end no line (slow-loris, one byte at a time) do not renew it.
                if (command_progress || io.core.is_receiving_data())
                    handle.deadline = clock_type::now() + settings_.receiver.idle_timeout;
                boost::system::error_code ec;
                handle.reading = true;
                const std::size_t n = co_await stream.async_read_some(
                    asio::buffer(buffer), asio::redirect_error(use_awaitable, ec));
                handle.reading = false;
                if (!ec)
                    handle.timed_out =
                        false; // the data beat the sweep's cancel: not idle after all
                if (ec) {
                    if (ec == asio::error::operation_aborted &&
                        (handle.timed_out || handle.shutting_down)) {
                        const bool was_timeout =
                            handle.timed_out && !handle.shutting_down && !stopping_;
                        handle.timed_out = handle.shutting_down = false;
                        io.queue_reply(
                            was_timeout ? smtp::replies::timeout(settings_.hostname)
                                        : smtp::replies::service_shutting_down(settings_.hostname));
                        co_await io.flush_output();
                        end_reason = was_timeout ? "timeout" : "shutdown";
                    } else {
                        end_reason = io.core.is_receiving_data() ? "lost-during-data" : "lost";
                    }
                    break;
                }
                command_progress = std::memchr(buffer.data(), '\n', n) != nullptr;
                if (!co_await io.carry_out(io.core.feed(std::string_view(buffer.data(), n))))
                    break;
            }
        }
    } catch (const std::exception& e) {
        end_reason = "error";
        log::warning(
            log::fields({{"event", "session-error"}, {"session", label}, {"error", e.what()}}));
    }
    io.writer.reset(); // an unfinished message leaves nothing behind
    close_stream(stream);
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started);
    log::info(log::fields({{"event", "disconnect"},
                           {"session", label},
                           {"reason", end_reason},
                           {"messages", std::to_string(io.messages)},
                           {"ms", std::to_string(elapsed.count())}}));
    sessions_.erase(registered);
    if (inetd_)
        shut_down(std::chrono::seconds(0));
    stop_if_done();
}

void smtp_server::shut_down(std::chrono::seconds grace)
{
    if (!stopping_) {
        stopping_ = true;
        for (auto& acceptor : acceptors_) {
            boost::system::error_code ignored;
            acceptor.close(ignored);
        }
        if (handover_)
            handover_->stop();
        if (!inetd_)
            log::info(log::fields({{"event", "stopping"},
                                   {"sessions", std::to_string(sessions_.size())},
                                   {"grace-seconds", std::to_string(grace.count())}}));
        // A session waiting for a command is told at once; one busy writing or committing
        // sees stopping_ when it comes back to read.
        for (session_handle* session : sessions_)
            if (!session->in_transaction && session->reading) {
                session->shutting_down = true;
                session->cancel();
            }
        grace_timer_.expires_after(grace);
        grace_timer_.async_wait([this](boost::system::error_code ec) {
            if (ec)
                return;
            for (session_handle* session : sessions_) {
                session->shutting_down = true;
                if (session->reading) {
                    session->deadline = clock_type::now() + close_after_deadline;
                    session->cancel();
                }
            }
        });
    }
    stop_if_done();
}

void smtp_server::stop_if_done()
{
    if (stopping_ && sessions_.empty()) {
        sweep_timer_.cancel();
        grace_timer_.cancel();
        if (on_stopped)
            asio::post(io_, on_stopped);
    }
}

void smtp_server::reload(const config& settings)
{
    if (settings.receiver.listen != settings_.receiver.listen)
        log::warning(log::fields(
            {{"event", "reload"}, {"note", "listen addresses change only on restart"}}));
    const auto listen = settings_.receiver.listen;
    settings_ = settings;
    settings_.receiver.listen = listen;
    local_recipients_ = std::make_shared<const local_recipients>(local_recipients_of(settings_));
    log::info(log::fields({{"event", "reloaded"}}));
}

} // namespace leafmail::receiver
