#pragma once
// leafmail-sendmail's work: read a message from a descriptor, fix it for submission and
// commit it durably into the spool with the same writer as leafmaild; plus the privilege
// rules of a setgid injector (which files it may trust, when it must drop its group).
// Never runs threads or an event loop on this path: a cron job's sendmail must start fast.
#include "leafmail/config.hpp"
#include "leafmail/program.hpp"
#include "leafmail/sendmail/sendmail_args.hpp"
#include "leafmail/spool/spool.hpp"

#include <ctime>
#include <filesystem>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <vector>

namespace leafmail::sendmail {

/// Who is submitting: the real user id, never the environment.
struct submitter {
    unsigned uid = 0;
    std::string login;     // "uid1234" when the user is not in the password database
    std::string full_name; // first GECOS field, may be empty
};
[[nodiscard]] submitter current_submitter();

/// A message that cannot be spooled; exit_status() is the sysexits code to leave with.
class submission_error : public program_error {
public:
    using program_error::program_error;
};

struct submission_result {
    std::string id;
    std::vector<std::string> recipients;
    std::string reverse_path;
    std::uint64_t size = 0;
};

/// Largest header accepted from a local program (the rest of the message is streamed).
inline constexpr std::size_t max_submitted_header_size = 1024 * 1024;

/// Reads the message from input_fd until end of input (or the lone dot), fixes it
/// (Received:, From:, Date:, Message-ID: added, Bcc: removed, CRLF line ends) and commits
/// it. Returns only once the entry is durable. Throws submission_error; nothing is left in
/// the spool when it does.
[[nodiscard]] submission_result submit_message(spool::spool& spool, const config& settings,
                                               const sendmail_options& options,
                                               const submitter& who, int input_fd, std::time_t now);

/// The sysexits code for a spool failure (75 for a full disk or quota, 77 for permissions...).
[[nodiscard]] int exit_status_for(const std::system_error& error);

/// True when running with more group privilege than the real user has (the setgid install).
[[nodiscard]] bool has_setgid_privilege();
/// Gives up the setgid group for good (real, effective and saved). Throws std::system_error.
void drop_setgid_privilege();

/// Reads a configuration file named on the command line. With the setgid privilege the file
/// is trusted only when owned by root and writable by nobody else (as Postfix trusts only
/// root's alternate configuration directories); otherwise the privilege is dropped first, so
/// a user can never point the privileged injector at a spool or file of their choosing.
[[nodiscard]] config load_submission_config(const std::string& named_file);

/// newaliases and -bi: checks the aliases file the configuration names, printing each problem
/// as FILE:LINE: message on `err`. Returns 0 (good, or no file set) or 65 (EX_DATAERR).
/// Throws config_error when the file cannot be read.
[[nodiscard]] int check_aliases(const std::string& config_file, std::ostream& out,
                                std::ostream& err);

/// Full path of a program installed beside this executable (for -bp and -q).
[[nodiscard]] std::filesystem::path sibling_program(const std::string& name);

/// leafmail-sendmail as the runner sees it. Its command line is sendmail's, not ours
/// (sendmail_args.hpp), so it runs under run_guarded, not run_program.
[[nodiscard]] program sendmail_program();

/// The whole leafmail-sendmail command; returns its exit status. Throws usage_error (64),
/// config_error (78), submission_error (its status) and std::system_error (exit_status_for).
[[nodiscard]] int run_sendmail(int argc, char* argv[]);

} // namespace leafmail::sendmail
