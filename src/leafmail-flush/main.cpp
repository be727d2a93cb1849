// leafmail-flush: relays the spool to the smarthost once, then exits with a status that
// scripts can act on (0 nothing pending, 75 something deferred). The logic is in relay/.
#include "leafmail/config.hpp"
#include "leafmail/exit_status.hpp"
#include "leafmail/log.hpp"
#include "leafmail/relay/flush.hpp"
#include "leafmail/watch/watcher.hpp"

#include <boost/program_options.hpp>
#include <iostream>
#include <system_error>

namespace po = boost::program_options;
using namespace leafmail;

namespace {

po::options_description flush_flags()
{
    po::options_description flags("leafmail-flush");
    flags.add_options()("help", "show this help and exit")("version", "show the version and exit")(
        "verbose", "log the SMTP dialogue with the smarthost (AUTH payloads masked)")(
        "dry-run", "show what would be sent and to where; change nothing")(
        "watch",
        "keep running: relay new mail at once, retry on a schedule, follow the link "
        "(until SIGTERM)")("due-only", "send only entries whose scheduled next attempt has come")(
        "kick", "tell a running watcher the link is up (retry at once); without one, say so")(
        "lock-timeout", po::value<unsigned>()->value_name("SECONDS")->default_value(300),
        "wait at most this long for another flush to finish")(
        "log", po::value<std::string>()->value_name("WHERE")->default_value("stderr"),
        "syslog or stderr");
    return flags;
}
} // namespace

int main(int argc, char* argv[])
{
    parsed_command_line parsed;
    const auto flags = flush_flags();
    relay::flush_options options;
    try {
        parsed = parse_command_line(argc, argv, flags);
        if (parsed.flags.count("help")) {
            std::cout
                << "Usage: leafmail-flush [options]\n"
                   "Relays every pending message in the spool to the smarthost.\n"
                   "Exit status: 0 nothing left pending, 75 something deferred, 78 configuration "
                   "error, 64 usage error.\n\n"
                << parsed.help;
            return exit_status::ok;
        }
        if (parsed.flags.count("version")) {
            std::cout << "leafmail-flush " LEAFMAIL_VERSION "\n";
            return exit_status::ok;
        }
        log::open("leafmail-flush", log_destination_flag(parsed.flags));
        options.verbose = parsed.flags.count("verbose") > 0;
        log::set_verbose(options.verbose);
        options.dry_run = parsed.flags.count("dry-run") > 0;
        options.due_only = parsed.flags.count("due-only") > 0;
        if (parsed.flags.count("watch") + parsed.flags.count("kick") +
                parsed.flags.count("dry-run") >
            1)
            throw po::error("--watch, --kick and --dry-run exclude each other");
        options.lock_timeout = std::chrono::seconds(parsed.flags["lock-timeout"].as<unsigned>());
        if (!parsed.flags.count("kick")) // a kick only needs the spool
            relay::check_relay_settings(parsed.settings);
    } catch (const config_error& e) {
        std::cerr << "leafmail-flush: " << e.what() << "\n";
        return exit_status::config;
    } catch (const po::error& e) {
        std::cerr << "leafmail-flush: " << e.what() << "\nTry 'leafmail-flush --help'.\n";
        return exit_status::usage;
    }

    // Fatal errors must reach whoever started us even when the log goes to syslog.
    const bool logs_to_stderr = parsed.flags["log"].as<std::string>() == "stderr";
    auto fatal = [&](const std::string& what, int status) {
        log::error(log::fields({{"event", "fatal"}, {"error", what}}));
        if (!logs_to_stderr)
            std::cerr << "leafmail-flush: " << what << "\n";
        return status;
    };
    try {
        if (parsed.flags.count("kick")) {
            // Scripts call this unconditionally: no watcher is not an error (exit 0).
            const auto result = watch::kick_watcher(parsed.settings);
            std::cout << (result == watch::kick_result::kicked
                              ? "leafmail-flush: watcher kicked\n"
                              : "leafmail-flush: no watcher running\n")
                      << std::flush;
            return exit_status::ok;
        }
        if (parsed.flags.count("watch")) {
            watch::watch_options watch_options;
            watch_options.verbose = options.verbose;
            watch::run_watcher(parsed.settings, watch_options);
            return exit_status::ok;
        }
        relay::flush_summary summary = relay::run_flush(parsed.settings, options);
        if (summary.lock_busy)
            std::cerr
                << "leafmail-flush: another flush still holds the spool after the lock timeout\n";
        // The one line scripts and people read, on stdout whatever the log destination.
        std::cout << relay::summary_line(summary) << std::endl;
        log::info(log::fields({{"event", "summary"},
                               {"sent", std::to_string(summary.sent)},
                               {"deferred", std::to_string(summary.deferred)},
                               {"failed", std::to_string(summary.failed)},
                               {"bounces", std::to_string(summary.bounces)}}));
        return relay::exit_status_of(summary);
    } catch (const config_error& e) {
        return fatal(e.what(), exit_status::config);
    } catch (const std::system_error& e) {
        // The spool is unusable (missing, permissions, disk): nothing more was relayed, and
        // whatever was is recorded; a later run can go on.
        return fatal(e.what(), exit_status::temp_fail);
    } catch (const std::exception& e) {
        return fatal(e.what(), exit_status::software);
    }
}
