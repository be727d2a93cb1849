// leafmail-flush: relays the spool to the smarthost once, then exits with a status that
// scripts can act on (0 nothing pending, 75 something deferred). The logic is in relay/.
#include "leafmail/config.hpp"
#include "leafmail/exit_status.hpp"
#include "leafmail/log.hpp"
#include "leafmail/privileges.hpp"
#include "leafmail/relay/flush.hpp"
#include "leafmail/spool/spool.hpp"

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
        options.lock_timeout = std::chrono::seconds(parsed.flags["lock-timeout"].as<unsigned>());
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
    } catch (const spool_owner_error& e) {
        return fatal(e.what(), exit_status::config);
    } catch (const spool::missing_spool& e) {
        return fatal(e.what(), exit_status::config);
    } catch (const std::system_error& e) {
        // The spool is unusable (missing, permissions, disk): nothing more was relayed, and
        // whatever was is recorded; a later run can go on.
        return fatal(e.what(), exit_status::temp_fail);
    } catch (const std::exception& e) {
        return fatal(e.what(), exit_status::software);
    }
}
