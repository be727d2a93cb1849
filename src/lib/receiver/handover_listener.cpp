#include "leafmail/receiver/handover_listener.hpp"

#include "leafmail/log.hpp"
#include "leafmail/receiver/smtp_server.hpp"
#include "leafmail/spool/handover.hpp"

#include <chrono>
#include <string>
#include <sys/socket.h>

namespace leafmail::receiver {
namespace asio = net::asio;
using asio::awaitable;
using asio::use_awaitable;
using local_protocol = asio::local::stream_protocol;

namespace {

// A well-behaved injector sends its entry at once and waits only for the disk.
constexpr auto client_deadline = std::chrono::seconds(30);

std::string peer_uid(int fd)
{
    ucred peer{};
    socklen_t size = sizeof peer;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0)
        return "unknown";
    return std::to_string(peer.uid);
}

} // namespace

handover_listener::handover_listener(asio::io_context& io, asio::thread_pool& workers,
                                     spool::spool& spool, std::size_t max_connections)
    : io_(io), workers_(workers), spool_(spool),
      acceptor_(io, local_protocol(), spool.listen_for_handovers()),
      max_connections_(max_connections)
{
}

void handover_listener::start()
{
    asio::co_spawn(io_, accept_loop(), asio::detached);
}

void handover_listener::stop()
{
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    // A connection still waiting for its client would keep the event loop, and so the daemon,
    // alive until its deadline: the injector commits the entry itself instead.
    for (const auto& weak : *open_)
        if (const auto socket = weak.lock())
            socket->close(ignored);
}

awaitable<void> handover_listener::accept_loop()
{
    while (!stopping_) {
        boost::system::error_code ec;
        auto socket = std::make_shared<socket_type>(
            co_await acceptor_.async_accept(asio::redirect_error(use_awaitable, ec)));
        if (ec == asio::error::operation_aborted || stopping_)
            break;
        if (ec) {
            co_await pause_after_accept_error(io_, ec);
            continue;
        }
        if (open_->size() >= max_connections_)
            continue; // closed unanswered: the injector commits the entry itself
        asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
    }
}

awaitable<void> handover_listener::serve(std::shared_ptr<socket_type> socket)
{
    struct leaving {
        std::shared_ptr<open_connections> open;
        open_connections::iterator at;
        ~leaving() { open->erase(at); }
    } on_exit{open_, open_->insert(open_->end(), socket)};
    const std::string uid = peer_uid(socket->native_handle());
    // A client that does not send its whole entry in time loses its connection.
    asio::steady_timer deadline(io_, client_deadline);
    deadline.async_wait([weak = std::weak_ptr<socket_type>(socket)](boost::system::error_code ec) {
        if (auto alive = weak.lock(); alive && !ec) {
            boost::system::error_code ignored;
            alive->close(ignored);
        }
    });

    boost::system::error_code ec;
    std::string line;
    const std::size_t line_end = co_await asio::async_read_until(
        *socket, asio::dynamic_buffer(line, spool::handover::max_request_line), '\n',
        asio::redirect_error(use_awaitable, ec));
    std::optional<spool::handover::request> request;
    if (ec == asio::error::not_found)
        ec = {}; // longer than any request line: answered as not one
    else if (!ec)
        request = spool::handover::parse_request(std::string_view(line).substr(0, line_end - 1));
    std::string answer;
    std::string entry;
    if (!request) {
        answer = spool::handover::encode_refused("not a handover request");
    } else {
        // The journal bounds what it takes; refusing here keeps a hostile size from being
        // allocated at all.
        if (request->size > spool::journal_options{}.max_entry_size) {
            answer = spool::handover::encode_refused("entry too large for the journal");
        } else {
            entry = line.substr(line_end);
            const std::size_t have = entry.size();
            if (have > request->size) {
                answer = spool::handover::encode_refused("more octets than announced");
            } else {
                entry.resize(request->size);
                co_await asio::async_read(*socket,
                                          asio::buffer(entry.data() + have, entry.size() - have),
                                          asio::redirect_error(use_awaitable, ec));
            }
        }
    }
    if (ec) {
        deadline.cancel();
        co_return; // the client left or was too slow: it commits the entry itself, if alive
    }
    if (answer.empty()) {
        std::string why;
        bool durable = false;
        try {
            co_await asio::co_spawn(
                workers_,
                [&]() -> awaitable<void> {
                    spool_.commit_handed_over(request->id, std::move(entry));
                    co_return;
                },
                use_awaitable);
            durable = true;
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (durable) {
            answer = spool::handover::encode_accepted(request->id);
            log::info(log::fields({{"event", "accepted"},
                                   {"session", "handover"},
                                   {"id", request->id},
                                   {"uid", uid},
                                   {"size", std::to_string(request->size)}}));
        } else {
            answer = spool::handover::encode_refused(why);
            log::warning(
                log::fields({{"event", "handover-refused"}, {"uid", uid}, {"error", why}}));
        }
    } else {
        log::warning(log::fields({{"event", "handover-refused"},
                                  {"uid", uid},
                                  {"error", answer.substr(10, answer.size() - 11)}}));
    }
    co_await asio::async_write(*socket, asio::buffer(answer),
                               asio::redirect_error(use_awaitable, ec));
    deadline.cancel();
}

} // namespace leafmail::receiver
