#pragma once
// The receiver's transport: listeners, one coroutine per connection around the pure
// smtp::server_session, access control, connection limits, idle timeouts, and the durable
// commit of each message through the spool on a pool of fsync workers, so the event loop
// never waits for the disk. Also serves one session on stdin/stdout (inetd mode).
#include "leafmail/config.hpp"
#include "leafmail/intake/intake.hpp"
#include "leafmail/net/asio.hpp"
#include "leafmail/receiver/handover_listener.hpp"
#include "leafmail/spool/spool.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace leafmail::receiver {
namespace asio = net::asio;

/// "127.0.0.1:25", "[::1]:2525", "localhost:25" → endpoint. Throws std::invalid_argument.
[[nodiscard]] asio::ip::tcp::endpoint parse_listen_address(const std::string& text);

/// After a failed accept (out of descriptors, say): logs it and waits 100 ms, so a listener
/// breathes instead of spinning. Shared by the SMTP and the handover listeners.
asio::awaitable<void> pause_after_accept_error(asio::io_context& io,
                                               const boost::system::error_code& error);

class smtp_server {
public:
    /// The spool comes later, with start() or serve_inetd(): a daemon started as root binds
    /// first and opens the spool only once it is the spool's owner.
    smtp_server(asio::io_context& io, const config& settings);
    ~smtp_server();

    /// Binds every listen address (SO_REUSEADDR, so a restart binds at once). Throws
    /// std::system_error naming the address.
    void bind();
    [[nodiscard]] std::vector<asio::ip::tcp::endpoint> local_endpoints() const;
    /// Starts accepting into `spool` (which must outlive the server) and the idle sweep.
    void start(spool::spool& spool);
    /// Serves exactly one session over two descriptors (inetd / systemd Accept=yes), then
    /// stops the server. A local_submitter (sendmail -bs) is recorded as the entries' origin.
    void serve_inetd(spool::spool& spool, int input_fd, int output_fd,
                     std::optional<intake::source> local_submitter = std::nullopt);
    /// Stops accepting; sessions in flight get `grace` to finish, then are closed with 421.
    void shut_down(std::chrono::seconds grace);
    /// New limits and access lists for new sessions (listen addresses need a restart).
    void reload(const config& settings);

    [[nodiscard]] std::size_t active_sessions() const { return sessions_.size(); }

    /// Posted to the io_context once stopping and the last session has ended.
    std::function<void()> on_stopped;

private:
    struct session_handle;
    template <class Stream> struct session_io;

    asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor);
    asio::awaitable<void> sweep_idle_sessions();
    template <class Stream>
    asio::awaitable<void> run_session(Stream stream, std::string peer_address,
                                      std::uint64_t session_number);
    template <class Stream> asio::awaitable<void> refuse(Stream& stream, std::string reply_wire);
    void stop_if_done();

    asio::io_context& io_;
    config settings_;
    std::shared_ptr<const local_recipients> local_recipients_; // of settings_, for new sessions
    spool::spool* spool_ = nullptr;
    std::optional<intake::source> local_submitter_;
    asio::thread_pool fsync_pool_;
    std::unique_ptr<handover_listener> handover_; // with the spool's journal only
    std::vector<asio::ip::tcp::acceptor> acceptors_;
    asio::steady_timer sweep_timer_;
    asio::steady_timer grace_timer_;
    std::list<session_handle*> sessions_;
    std::uint64_t next_session_number_ = 1;
    bool stopping_ = false;
    bool inetd_ = false;
};

} // namespace leafmail::receiver
