#include "leafmail/spool/handover.hpp"

#include "leafmail/text.hpp"
#include "unix_socket.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace leafmail::spool::handover {
namespace {

struct socket_guard {
    int fd = -1;
    ~socket_guard()
    {
        if (fd >= 0)
            ::close(fd);
    }
};

using clock_type = std::chrono::steady_clock;

// Waits until fd is ready for `events` or the deadline passes.
bool wait_for(int fd, short events, clock_type::time_point deadline)
{
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
        if (left.count() <= 0)
            return false;
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, static_cast<int>(left.count()));
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

bool send_all(int fd, std::string_view bytes, clock_type::time_point deadline)
{
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_for(fd, POLLOUT, deadline))
            continue;
        return false;
    }
    return true;
}

} // namespace

std::string encode_request(std::string_view id, std::size_t size)
{
    std::string line(request_magic);
    line += ' ';
    line += id;
    line += ' ';
    line += std::to_string(size);
    line += '\n';
    return line;
}

std::optional<request> parse_request(std::string_view line)
{
    const std::string_view magic_and_space = "LMHAND1 ";
    if (line.substr(0, magic_and_space.size()) != magic_and_space)
        return std::nullopt;
    line.remove_prefix(magic_and_space.size());
    const auto space = line.find(' ');
    if (space == std::string_view::npos || space == 0)
        return std::nullopt;
    request parsed;
    parsed.id = std::string(line.substr(0, space));
    const std::string_view digits = line.substr(space + 1);
    if (digits.empty() || digits.size() > 12 || digits.front() == '0')
        return std::nullopt;
    const auto [end, error] =
        std::from_chars(digits.data(), digits.data() + digits.size(), parsed.size);
    if (error != std::errc{} || end != digits.data() + digits.size())
        return std::nullopt;
    return parsed;
}

std::string encode_accepted(std::string_view id)
{
    std::string line(accepted_prefix);
    line += id;
    line += '\n';
    return line;
}

std::string encode_refused(std::string_view why)
{
    std::string line = "451 4.3.0 " + text::escape_controls(why.substr(0, 200), false);
    line += '\n';
    return line;
}

bool send_entry(const std::string& socket_path, unsigned receiver_uid, std::string_view id,
                std::string_view entry, std::chrono::milliseconds timeout)
{
    sockaddr_un address{};
    try {
        address = detail::unix_address(socket_path);
    } catch (const std::system_error&) {
        return false; // a spool path too long for a socket: commit it ourselves
    }
    socket_guard s{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
    if (s.fd < 0)
        return false;
    // A local connect completes at once or fails (ENOENT, ECONNREFUSED, EACCES, EAGAIN when
    // the backlog is full): each means "commit it yourself".
    if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
        return false;
    ucred peer{};
    socklen_t peer_size = sizeof peer;
    if (::getsockopt(s.fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_size) != 0 ||
        peer.uid != static_cast<uid_t>(receiver_uid))
        return false; // whoever listens there is not the spool's owner: do not trust it
    const auto deadline = clock_type::now() + timeout;
    if (!send_all(s.fd, encode_request(id, entry.size()), deadline) ||
        !send_all(s.fd, entry, deadline))
        return false;
    const std::string expected = encode_accepted(id);
    std::string answer;
    char buffer[128];
    while (answer.size() < expected.size()) {
        const ssize_t n = ::recv(s.fd, buffer, sizeof buffer, 0);
        if (n > 0) {
            answer.append(buffer, static_cast<std::size_t>(n));
            if (answer.compare(0, std::min(answer.size(), expected.size()), expected, 0,
                               std::min(answer.size(), expected.size())) != 0)
                return false; // a refusal, or nonsense
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_for(s.fd, POLLIN, deadline))
            continue;
        return false; // closed, failed or timed out before the whole answer
    }
    return answer == expected;
}

int listen_at(const std::string& path)
{
    const sockaddr_un address = detail::unix_address(path);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::system_error(EEXIST, std::generic_category(),
                                    "cannot listen at " + path +
                                        ": something else than a socket is there");
        ::unlink(path.c_str()); // a previous daemon's socket
    }
    socket_guard s{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
    if (s.fd < 0)
        throw std::system_error(errno, std::generic_category(), "cannot make a socket for " + path);
    // Owner and group only, whatever the umask: the group is the setgid injector's.
    const mode_t old_mask = ::umask(0117);
    const int bound = ::bind(s.fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
    const int bind_error = errno;
    ::umask(old_mask);
    if (bound != 0)
        throw std::system_error(bind_error, std::generic_category(), "cannot bind " + path);
    if (::listen(s.fd, 128) != 0)
        throw std::system_error(errno, std::generic_category(), "cannot listen at " + path);
    return std::exchange(s.fd, -1);
}

} // namespace leafmail::spool::handover
