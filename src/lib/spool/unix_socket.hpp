#pragma once
// The address of a Unix socket in the spool's root (the watcher's kick socket, the handover):
// private to the spool's sources.
#include <cerrno>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <system_error>

namespace leafmail::spool::detail {

/// Throws std::system_error (ENAMETOOLONG) when the path does not fit a socket address.
inline sockaddr_un unix_address(const std::string& path)
{
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path)
        throw std::system_error(ENAMETOOLONG, std::generic_category(),
                                "cannot use " + path + " as a socket address");
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    return address;
}

} // namespace leafmail::spool::detail
