// leafmaild: accepts mail over SMTP and freezes each message into the spool.
#include "leafmail/config.hpp"
#include "leafmail/exit_status.hpp"
#include "leafmail/log.hpp"
#include "leafmail/net/asio.hpp"
#include "leafmail/net/smtp_server.hpp"
#include "leafmail/receiver/start_up.hpp"

#include <boost/program_options.hpp>
#include <csignal>
#include <iostream>
#include <unistd.h>

namespace po = boost::program_options;
using namespace leafmail;

namespace {

po::options_description daemon_flags()
{
    po::options_description flags("leafmaild");
    flags.add_options()("help", "show this help and exit")("version", "show the version and exit")(
        "inetd", "serve one SMTP session on stdin/stdout (inetd, systemd Accept=yes) and exit")(
        "setup-spool", "as root: create or complete the spool for the configured user, then exit")(
        "log", po::value<std::string>()->value_name("WHERE")->default_value("syslog"),
        "syslog or stderr")("verbose", "also log debug lines");
    return flags;
}
} // namespace

int main(int argc, char* argv[])
{
    parsed_command_line parsed;
    const auto flags = daemon_flags();
    try {
        parsed = parse_command_line(argc, argv, flags);
        if (parsed.flags.count("help")) {
            std::cout
                << "Usage: leafmaild [options]\nAccepts mail over SMTP and spools it durably.\n\n"
                << parsed.help;
            return exit_status::ok;
        }
        if (parsed.flags.count("version")) {
            std::cout << "leafmaild " LEAFMAIL_VERSION "\n";
            return exit_status::ok;
        }
        log::open("leafmaild", log_destination_flag(parsed.flags));
        log::set_verbose(parsed.flags.count("verbose") > 0);
    } catch (const config_error& e) {
        std::cerr << "leafmaild: " << e.what() << "\n";
        return exit_status::config;
    } catch (const po::error& e) {
        std::cerr << "leafmaild: " << e.what() << "\nTry 'leafmaild --help'.\n";
        return exit_status::usage;
    }

    const config& settings = parsed.settings;
    // Start-up failures must reach whoever started us, whatever the log destination.
    const bool logs_to_stderr = parsed.flags["log"].as<std::string>() == "stderr";
    auto fatal = [&](const std::string& what, int status) {
        log::error(log::fields({{"event", "fatal"}, {"error", what}}));
        if (!logs_to_stderr)
            std::cerr << "leafmaild: " << what << "\n";
        return status;
    };
    const bool inetd = parsed.flags.count("inetd") > 0;
    // Failures must come back as errors, not as signals that kill every session at once:
    // a write past RLIMIT_FSIZE gives EFBIG (a 452 for that message) instead of SIGXFSZ, and a
    // write to a pipe the peer closed (inetd mode) gives EPIPE instead of SIGPIPE.
    std::signal(SIGXFSZ, SIG_IGN);
    std::signal(SIGPIPE, SIG_IGN);
    try {
        if (parsed.flags.count("setup-spool")) {
            receiver::set_up_spool_for(settings);
            std::cout << "leafmaild: spool " << settings.spool.string() << " set up for "
                      << settings.receiver.user << "\n";
            return exit_status::ok;
        }
        net::asio::io_context io(1);
        receiver::started_daemon daemon = receiver::start_daemon(io, settings, inetd);
        net::smtp_server& server = *daemon.server;

        net::asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
        std::function<void(const boost::system::error_code&, int)> on_signal =
            [&](const boost::system::error_code& ec, int number) {
                if (ec)
                    return;
                if (number == SIGHUP) {
                    try {
                        server.reload(parse_command_line(argc, argv, flags).settings);
                    } catch (const std::exception& e) {
                        log::error(log::fields({{"event", "reload-failed"}, {"error", e.what()}}));
                    }
                } else {
                    server.shut_down(settings.receiver.shutdown_grace);
                }
                signals.async_wait(on_signal);
            };
        signals.async_wait(on_signal);
        server.on_stopped = [&] {
            boost::system::error_code ignored;
            signals.cancel(ignored);
            if (!inetd)
                log::info(log::fields({{"event", "stopped"}}));
        };

        if (inetd)
            server.serve_inetd(*daemon.spool, STDIN_FILENO, STDOUT_FILENO);
        else
            server.start(*daemon.spool);
        io.run();
        return exit_status::ok;
    } catch (const receiver::start_up_error& e) {
        return fatal(e.what(), e.exit_status());
    } catch (const std::system_error& e) {
        return fatal(e.what(), exit_status::os_error);
    } catch (const std::exception& e) {
        return fatal(e.what(), exit_status::software);
    }
}
