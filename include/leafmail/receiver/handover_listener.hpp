#pragma once
// leafmaild's side of the handover (spool/handover.hpp): accepts small entries from the
// setgid injector on <spool>/handover and commits them through the spool's journal on the
// receiver's fsync workers, so they share its group-committed fdatasync. One entry per
// connection; a client that is slow, sends nonsense or finds too many others connected is
// refused or dropped, and then commits the entry itself.
#include "leafmail/net/asio.hpp"
#include "leafmail/spool/spool.hpp"

#include <cstddef>
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
    std::size_t connections_ = 0;
    bool stopping_ = false;
};

} // namespace leafmail::receiver
