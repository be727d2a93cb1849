#pragma once
// The leafmail-list command: flags, which of listing / details / actions to run, output and
// exit status. The work itself is in listing.hpp and queue_actions.hpp; the runner
// (program.hpp) does --help, --version and the exit status of errors.
#include "leafmail/program.hpp"

namespace leafmail::list {

/// leafmail-list as the runner sees it: name, usage, flags (for --help and the man page).
[[nodiscard]] program list_program();

/// The command; returns its exit status: 0, 64 usage, 66 unknown or bad id, 75 an entry was
/// busy. Throws std::system_error (73/77/66: spool not usable) and po::error (64).
[[nodiscard]] int run_list(const program_context& context);

} // namespace leafmail::list
