#include "leafmail/relay/credentials.hpp"

#include "leafmail/config.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace leafmail::relay {

std::string read_password_file(const std::filesystem::path& file)
{
    auto fail = [&](const std::string& why) {
        return config_error("auth-password-file " + file.string() + ": " + why);
    };
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        throw fail(std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int error = errno;
        ::close(fd);
        throw fail(std::strerror(error));
    }
    // Checked on the opened file, not the name, so a swap between check and read cannot win.
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw fail("not a regular file");
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        ::close(fd);
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw fail(std::string("permissions ") + mode +
                   " are too open: it must not be accessible by "
                   "group or others (chmod 600)");
    }
    std::string content;
    char buffer[4096];
    for (;;) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int error = errno;
            ::close(fd);
            throw fail(std::strerror(error));
        }
        if (n == 0)
            break;
        content.append(buffer, static_cast<std::size_t>(n));
        if (content.size() > 64 * 1024) {
            ::close(fd);
            throw fail("too large for a password file");
        }
    }
    ::close(fd);
    std::size_t end = content.find_first_of("\r\n");
    if (end != std::string::npos)
        content.resize(end);
    if (content.empty())
        throw fail("empty");
    return content;
}

} // namespace leafmail::relay
