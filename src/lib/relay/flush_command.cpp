#include "leafmail/relay/flush_command.hpp"

#include "leafmail/exit_status.hpp"
#include "leafmail/log.hpp"
#include "leafmail/relay/flush.hpp"
#include "leafmail/relay/relay_settings.hpp"
#include "leafmail/spool/spool.hpp"
#include "leafmail/watch/watcher.hpp"

#include <boost/program_options.hpp>

#include <iostream>

namespace leafmail::relay {

namespace po = boost::program_options;

program flush_program()
{
    program p;
    p.name = "leafmail-flush";
    p.usage = "Usage: leafmail-flush [options]\n"
              "Relays every pending message in the spool to the smarthost.\n"
              "Exit status: 0 nothing left pending, 75 something deferred, 78 configuration "
              "error, 64 usage error.\n"
              "With --check: 0 every route works, 75 one does not.\n";
    p.flags.add_options()("verbose",
                          "log the SMTP dialogue with the smarthost (AUTH payloads masked)")(
        "dry-run", "show what would be sent and to where; change nothing")(
        "route", po::value<std::string>()->value_name("NAME"),
        "flush (or --check) only this route: a [route NAME] section or 'default'")(
        "check",
        "for each route connect, TLS, EHLO, AUTH, QUIT (no mail sent, spool untouched); one "
        "line per route")("due-only", "send only entries whose scheduled next attempt has come")(
        "watch", "keep running: relay new mail at once, retry on a schedule, follow the link "
                 "(until SIGTERM)")(
        "kick", "tell a running watcher the link is up (retry at once); without one, say so")(
        "lock-timeout", po::value<unsigned>()->value_name("SECONDS")->default_value(300),
        "wait at most this long for another flush to finish");
    p.keys = config_keys::flush;
    p.log = log::destination::stderr_stream;
    // The spool is unusable (missing, permissions, disk): nothing more was relayed, and
    // whatever was is recorded; a later run can go on.
    // A missing spool is set up by its administrator (the message says how): 78, not 75,
    // or cron would keep quiet while no mail leaves.
    p.status_of_system_error = [](const std::system_error& e) {
        return dynamic_cast<const spool::missing_spool*>(&e) ? exit_status::config
                                                             : exit_status::temp_fail;
    };
    return p;
}

int run_flush_command(const program_context& context)
{
    const auto& parsed = context.parsed;
    flush_options options;
    options.verbose = parsed.flags.count("verbose") > 0;
    options.dry_run = parsed.flags.count("dry-run") > 0;
    options.due_only = parsed.flags.count("due-only") > 0;
    options.lock_timeout = std::chrono::seconds(parsed.flags["lock-timeout"].as<unsigned>());
    if (parsed.flags.count("watch") + parsed.flags.count("kick") + parsed.flags.count("dry-run") >
        1)
        throw po::error("--watch, --kick and --dry-run exclude each other");
    if (parsed.flags.count("kick")) {
        // Scripts call this unconditionally: no watcher is not an error (exit 0). A kick only
        // needs the spool, not the relay settings.
        const auto result = watch::kick_watcher(parsed.settings);
        std::cout << (result == watch::kick_result::kicked ? "leafmail-flush: watcher kicked\n"
                                                           : "leafmail-flush: no watcher running\n")
                  << std::flush;
        return exit_status::ok;
    }
    if (parsed.flags.count("route"))
        options.route = parsed.flags["route"].as<std::string>();
    check_relay_settings(parsed.settings);
    if (parsed.flags.count("check"))
        return check_routes(parsed.settings, options.route, options.verbose, std::cout);
    if (parsed.flags.count("watch")) {
        watch::watch_options watch_options;
        watch_options.verbose = options.verbose;
        watch::run_watcher(parsed.settings, watch_options);
        return exit_status::ok;
    }

    const flush_summary summary = run_flush(parsed.settings, options);
    if (summary.lock_busy)
        std::cerr << "leafmail-flush: another flush still holds the spool after the lock timeout\n";
    // The one line scripts and people read, on stdout whatever the log destination.
    std::cout << summary_line(summary) << std::endl;
    log::info(log::fields({{"event", "summary"},
                           {"sent", std::to_string(summary.sent)},
                           {"deferred", std::to_string(summary.deferred)},
                           {"failed", std::to_string(summary.failed)},
                           {"bounces", std::to_string(summary.bounces)},
                           {"unconfirmed", std::to_string(summary.unconfirmed)}}));
    return exit_status_of(summary);
}

} // namespace leafmail::relay
