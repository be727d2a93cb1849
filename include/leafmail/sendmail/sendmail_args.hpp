#pragma once
// The sendmail command line, as programs that call /usr/sbin/sendmail write it (Sendmail 8,
// Postfix and dma conventions). Pure parsing: no files, no environment. Options that other
// sendmails accept and ignore are accepted here too; truly unknown ones are a usage error.
#include "leafmail/program.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::sendmail {

enum class sendmail_mode {
    deliver,       // -bm (default): read a message on stdin and spool it
    smtp_session,  // -bs: one SMTP session on stdin/stdout
    print_queue,   // -bp, or invoked as "mailq": as leafmail-list
    flush_queue,   // -q: as leafmail-flush
    check_aliases, // -bi, or invoked as "newaliases": check the aliases file, report its errors
    help,          // --help
    version,       // --version
};

struct sendmail_options {
    sendmail_mode mode = sendmail_mode::deliver;
    bool extract_recipients = false;     // -t: recipients from To:, Cc:, Bcc:
    std::optional<std::string> sender;   // -f / -r; "" is the null reverse-path <>
    std::string full_name;               // -F: display name for a missing From:
    bool ignore_dots = false;            // -i / -oi: a lone "." does not end the message
    bool verbose = false;                // -v: say where the message went
    std::string config_file;             // -C FILE / --config FILE
    std::vector<std::string> recipients; // arguments after the options (address lists)
    std::vector<std::string> warnings;   // ignored options worth telling about, one per line
};

/// A command line that cannot be obeyed (exit 64); what() is the message for stderr.
using leafmail::usage_error;

/// Parses argv[1..]. `program` is the basename of argv[0]: "mailq" means -bp, "newaliases"
/// means -bi. Options end at "--" or at the first argument that does not start with '-'.
/// Throws usage_error.
[[nodiscard]] sendmail_options parse_sendmail_args(const std::vector<std::string>& args,
                                                   std::string_view program);

/// The --help text (every option it names is in leafmail-sendmail(8)).
[[nodiscard]] std::string sendmail_help();

} // namespace leafmail::sendmail
