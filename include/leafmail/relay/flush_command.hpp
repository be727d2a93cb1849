#pragma once
// The leafmail-flush command: its flags, the one summary line on stdout and the exit status.
// The flush itself is in flush.hpp; the runner (program.hpp) does --help, --log and errors.
#include "leafmail/program.hpp"

namespace leafmail::relay {

/// leafmail-flush as the runner sees it: name, usage, flags, the relay's configuration keys.
[[nodiscard]] program flush_program();

/// Runs one flush; returns 0 when nothing is left pending, 75 when something was deferred or
/// another flush held the lock. Throws config_error and std::system_error (75: the spool is
/// unusable; whatever was relayed is recorded, a later run goes on).
[[nodiscard]] int run_flush_command(const program_context& context);

} // namespace leafmail::relay
