#pragma once
// The one way leafmail includes Asio. Boost 1.74's awaitable.hpp uses std::exchange without
// including <utility>, which g++ 12 no longer pulls in transitively.
#include <utility>

#include <boost/asio.hpp>

namespace leafmail::net {
namespace asio = boost::asio;
}
