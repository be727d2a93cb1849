#pragma once
// The leafmail-list command: flags, which of listing / details / actions to run, output and
// exit status. The work itself is in listing.hpp and queue_actions.hpp.
#include <boost/program_options/options_description.hpp>

namespace leafmail::list {

/// leafmail-list's own flags (the configuration keys come on top), for --help and the man page.
[[nodiscard]] boost::program_options::options_description list_flags();

/// The whole command; returns its exit status: 0, 64 usage, 66 unknown or bad id,
/// 75 an entry was busy, 73/77 spool not usable, 78 configuration.
[[nodiscard]] int list_main(int argc, char* argv[]);

} // namespace leafmail::list
