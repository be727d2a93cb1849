#pragma once
// The one runner every leafmail program's main() goes through: --help, --version, the
// configuration and --log read once, and one error boundary that turns what escapes into a
// <sysexits.h> status (config_error 78, usage 64). A fatal error always reaches stderr, also
// when the log goes to syslog: whoever started the program must see why it stopped.
#include "leafmail/config.hpp"
#include "leafmail/log.hpp"

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/positional_options.hpp>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace leafmail {

/// A failure that ends the program with a chosen sysexits status; what() is the message.
class program_error : public std::runtime_error {
public:
    program_error(int exit_status, const std::string& what)
        : std::runtime_error(what), exit_status_(exit_status)
    {
    }
    [[nodiscard]] int exit_status() const noexcept { return exit_status_; }

private:
    int exit_status_;
};

/// A command line that cannot be obeyed (exit 64, "Try 'PROGRAM --help'"), for programs
/// whose command line is not parsed by Boost.Program_options (leafmail-sendmail).
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// What the runner needs to know of a program.
struct program {
    std::string name;  // "leafmail-flush": stderr prefix, syslog ident, --version line
    std::string usage; // the --help text above the flags
    /// The program's own flags; the runner adds --help, --version and (with a log) --log.
    boost::program_options::options_description flags{""};
    const boost::program_options::positional_options_description* positional = nullptr;
    unsigned keys = config_keys::all; // configuration keys its --help lists (config_keys::)
    /// Default of --log; nullopt: the program has no log and speaks to stderr only.
    std::optional<log::destination> log;
    /// The status of an environment failure (std::system_error) that ends the program.
    std::function<int(const std::system_error&)> status_of_system_error;
};

/// What a program's function gets: the parsed command line, and a way to read the same
/// command line and configuration again (leafmaild's SIGHUP).
class program_context {
public:
    program_context(parsed_command_line command_line, std::function<config()> reread)
        : parsed(std::move(command_line)), reread_(std::move(reread))
    {
    }
    parsed_command_line parsed;
    /// Reads the configuration again as at start; throws config_error or a po::error.
    [[nodiscard]] config reread_config() const { return reread_(); }

private:
    std::function<config()> reread_;
};

/// Parses the command line and configuration, answers --help and --version, opens the log,
/// sets --verbose when the program has it, then runs body inside run_guarded. Returns the
/// exit status for main().
[[nodiscard]] int run_program(int argc, char* argv[], const program& description,
                              const std::function<int(const program_context&)>& body);

/// The error boundary alone, for a program with a command line of its own: runs body and
/// maps what escapes: program_error to its status, config_error 78, usage_error and
/// boost::program_options::error 64, std::system_error by status_of_system_error (default 71),
/// anything else 70. Each is reported once on stderr, and in the log when one was opened.
[[nodiscard]] int run_guarded(const program& description, const std::function<int()>& body);

/// "leafmail-flush 0.1.0": the --version line.
[[nodiscard]] std::string version_line(const std::string& program_name);

} // namespace leafmail
