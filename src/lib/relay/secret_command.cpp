#include "leafmail/relay/secret_command.hpp"

#include "leafmail/log.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>

extern char** environ;

namespace leafmail::relay {

namespace {

// A secret is one short line; more output than this is a misbehaving command.
constexpr std::size_t max_output = 64 * 1024;
// Each line of the command's stderr becomes one log line, cut at this length.
constexpr std::size_t max_logged_line = 500;

class file_descriptor {
public:
    explicit file_descriptor(int fd = -1) : fd_(fd) {}
    file_descriptor(const file_descriptor&) = delete;
    file_descriptor& operator=(const file_descriptor&) = delete;
    ~file_descriptor() { reset(); }
    void reset()
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }
    [[nodiscard]] int get() const { return fd_; }

private:
    int fd_;
};

struct pipe_pair {
    file_descriptor read_end, write_end;
};

pipe_pair make_pipe()
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw std::system_error(errno, std::generic_category(), "cannot create a pipe");
    return {file_descriptor(fds[0]), file_descriptor(fds[1])};
}

void log_stderr_line(std::string_view key, std::string_view line)
{
    if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
    if (line.empty())
        return;
    log::warning(log::fields({{"event", "secret-command-stderr"},
                              {"key", key},
                              {"line", line.substr(0, max_logged_line)}}));
}

} // namespace

secret_result run_secret_command(const std::string& command, std::chrono::milliseconds timeout,
                                 std::string_view key)
{
    pipe_pair out = make_pipe();
    pipe_pair err = make_pipe();

    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_adddup2(&actions, out.write_end.get(), 1);
    ::posix_spawn_file_actions_adddup2(&actions, err.write_end.get(), 2);
    // The command line is the configured command, never the secret: nothing to hide in ps.
    const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
    pid_t pid = -1;
    const int spawned =
        ::posix_spawn(&pid, "/bin/sh", &actions, nullptr, const_cast<char* const*>(argv), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0)
        throw std::system_error(spawned, std::generic_category(),
                                "cannot start " + std::string(key) + " with /bin/sh");
    out.write_end.reset();
    err.write_end.reset();

    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string output;
    std::string error_line;
    bool timed_out = false;
    bool too_long = false;
    int status = 0;
    bool exited = false;
    // Reads until both pipes are closed, or the shell has exited and nothing is left to read
    // (a background grandchild may keep a pipe open), or the deadline passes.
    for (int open_pipes = 2; open_pipes > 0;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd fds[2] = {{out.read_end.get(), POLLIN, 0}, {err.read_end.get(), POLLIN, 0}};
        const int ready = ::poll(fds, 2, static_cast<int>(std::min<long>(left.count(), 100)));
        if (ready < 0 && errno != EINTR)
            throw std::system_error(errno, std::generic_category(),
                                    "cannot wait for " + std::string(key));
        if (ready == 0 && !exited && ::waitpid(pid, &status, WNOHANG) == pid)
            exited = true;
        else if (ready == 0 && exited)
            break;
        for (int i = 0; i < 2 && ready > 0; ++i) {
            if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
                continue;
            char buffer[4096];
            const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                (i == 0 ? out : err).read_end.reset();
                --open_pipes;
                continue;
            }
            if (i == 0) {
                output.append(buffer, static_cast<std::size_t>(n));
                if (output.size() > max_output) {
                    too_long = true;
                    open_pipes = 0;
                }
                continue;
            }
            error_line.append(buffer, static_cast<std::size_t>(n));
            for (auto end = error_line.find('\n'); end != std::string::npos;
                 end = error_line.find('\n')) {
                log_stderr_line(key, std::string_view(error_line).substr(0, end));
                error_line.erase(0, end + 1);
            }
            if (error_line.size() > max_logged_line) {
                log_stderr_line(key, error_line);
                error_line.clear();
            }
        }
    }
    log_stderr_line(key, error_line);
    // The pipes may close before the shell exits (it closed them, or it hangs on): the
    // deadline holds for the wait as well.
    while (!exited && !timed_out && !too_long) {
        if (::waitpid(pid, &status, WNOHANG) == pid)
            exited = true;
        else if (std::chrono::steady_clock::now() >= deadline)
            timed_out = true;
        else
            ::usleep(10000);
    }
    if (!exited) {
        // Only the child we started, by its pid: a timeout or runaway output ends it.
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }

    secret_result result;
    const std::string name(key);
    if (timed_out)
        result.failure =
            name + " did not finish within " +
            (timeout.count() % 1000 == 0 ? std::to_string(timeout.count() / 1000) + " s"
                                         : std::to_string(timeout.count()) + " ms") +
            " (timeout); killed";
    else if (too_long)
        result.failure = name + " printed more than " + std::to_string(max_output) + " octets";
    else if (WIFSIGNALED(status))
        result.failure = name + " was killed by signal " + std::to_string(WTERMSIG(status));
    else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        result.failure = name + " failed with exit status " + std::to_string(WEXITSTATUS(status)) +
                         (WEXITSTATUS(status) == 127 ? " (command not found)" : "");
    if (!result.failure.empty())
        return result;
    std::string first_line = output.substr(0, output.find('\n'));
    if (!first_line.empty() && first_line.back() == '\r')
        first_line.pop_back();
    if (first_line.empty()) {
        result.failure = name + " printed nothing on its first line";
        return result;
    }
    result.secret = std::move(first_line);
    return result;
}

} // namespace leafmail::relay
