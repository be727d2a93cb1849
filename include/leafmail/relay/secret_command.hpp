#pragma once
// auth-password-command and auth-token-command: a program that hands leafmail a password or
// an OAuth 2.0 access token on its standard output (pass, secret-tool, a vault client, an
// OAuth helper). Runs it with a deadline and kills only the child it started; the secret is
// never logged, its stderr goes to the log line by line.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace leafmail::relay {

struct secret_result {
    std::optional<std::string> secret; // the first line of standard output
    std::string failure;               // without a secret: why (exit status, no output, timeout)
};

/// Runs `command` through /bin/sh -c with stdin from /dev/null, and returns the first line
/// of its standard output once it exits with status 0. A non-zero exit, a signal, an empty
/// first line or more than `timeout` (the child is then killed with SIGKILL) is a failure.
/// `key` ("auth-password-command") names it in messages and log lines. Throws
/// std::system_error when the command cannot be started at all (no pipe, no process).
[[nodiscard]] secret_result run_secret_command(const std::string& command,
                                               std::chrono::milliseconds timeout,
                                               std::string_view key);

} // namespace leafmail::relay
