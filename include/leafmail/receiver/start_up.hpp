#pragma once
// leafmaild's start-up, step by step: find whom the spool belongs to, set a missing spool up,
// bind, stop being root, open the spool as its owner and recover it. Root never works inside
// the spool: it only binds, and creates a spool that does not exist yet. Each failure is a
// start_up_error naming its step and its <sysexits.h> status, so it is tested without a process.
#include "leafmail/config.hpp"
#include "leafmail/net/asio.hpp"
#include "leafmail/program.hpp"
#include "leafmail/receiver/smtp_server.hpp"
#include "leafmail/spool/spool.hpp"

#include <memory>
#include <stdexcept>
#include <string>

namespace leafmail::receiver {

enum class start_up_step { find_owner, set_up_spool, bind, drop_privileges, open_spool, recover };
[[nodiscard]] std::string_view to_string(start_up_step step);

/// A start-up failure: its step, and (as a program_error) its sysexits status.
class start_up_error : public program_error {
public:
    start_up_error(start_up_step step, int exit_status, const std::string& what)
        : program_error(exit_status, what), step_(step)
    {
    }
    [[nodiscard]] start_up_step step() const { return step_; }

private:
    start_up_step step_;
};

/// A daemon ready to run: its spool (owned and recovered) and its bound server.
struct started_daemon {
    std::unique_ptr<spool::spool> spool;
    std::unique_ptr<receiver::smtp_server> server;
};

/// Runs the start-up sequence. In inetd mode nothing is bound and nothing recovered (other
/// sessions may be running). Throws start_up_error.
[[nodiscard]] started_daemon start_daemon(net::asio::io_context& io, const config& settings,
                                          bool inetd);

/// `leafmaild --setup-spool`: as root, creates or completes the spool tree for the
/// configured user with explicit modes, and refuses a tree someone else owns. Throws
/// start_up_error.
void set_up_spool_for(const config& settings);

/// leafmaild for the program runner: its flags and help, and the body that starts the
/// daemon (or sets the spool up), serves until SIGTERM and rereads the configuration on SIGHUP.
[[nodiscard]] program daemon_program();
[[nodiscard]] int run_daemon(const program_context& context);

} // namespace leafmail::receiver
