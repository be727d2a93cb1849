#pragma once
// leafmaild's side of the handover (spool/handover.hpp): accepts small entries from the
// setgid injector on <spool>/handover and commits them through the spool's journal on the
// receiver's fsync workers, so they share its group-committed fdatasync. One entry per
// connection; a client that is slow, sends nonsense or finds too many others connected is
// refused or dropped, and then commits the entry itself.
#include "leafmail/net/asio.hpp"
#include "leafmail/spool/spool.hpp"

#include <cstddef>
#include <list>
#include <memory>
#include <optional>

namespace leafmail::receiver {

class handover_listener {
public:
    /// Listens at <spool>/handover (the spool must have its journal open). Throws
    /// std::system_error.
    handover_listener(net::asio::io_context& io, net::asio::thread_pool& workers,
                      spool::spool& spool, std::size_t max_connections);
    void start();
    void stop();

private:
    using socket_type = net::asio::local::stream_protocol::socket;
    net::asio::awaitable<void> accept_loop();
    net::asio::awaitable<void> serve(std::shared_ptr<socket_type> socket);

    net::asio::io_context& io_;
    net::asio::thread_pool& workers_;
    spool::spool& spool_;
    net::asio::local::stream_protocol::acceptor acceptor_;
    std::size_t max_connections_;
    // The connections being served, shared with their coroutines: stop() closes them, and a
    // coroutine still suspended when the daemon exits is destroyed with the io_context,
    // after this listener, so it must not reach into the listener itself.
    using open_connections = std::list<std::weak_ptr<socket_type>>;
    std::shared_ptr<open_connections> open_ = std::make_shared<open_connections>();
    bool stopping_ = false;
};

} // namespace leafmail::receiver
