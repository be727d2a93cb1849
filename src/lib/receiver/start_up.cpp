#include "leafmail/receiver/start_up.hpp"

#include "leafmail/aliases.hpp"

#include "leafmail/exit_status.hpp"
#include "leafmail/log.hpp"
#include "leafmail/privileges.hpp"

#include <boost/program_options.hpp>
#include <cerrno>
#include <csignal>
#include <functional>
#include <iostream>
#include <optional>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace leafmail::receiver {

std::string_view to_string(start_up_step step)
{
    switch (step) {
    case start_up_step::find_owner:
        return "find-owner";
    case start_up_step::set_up_spool:
        return "set-up-spool";
    case start_up_step::bind:
        return "bind";
    case start_up_step::drop_privileges:
        return "drop-privileges";
    case start_up_step::open_spool:
        return "open-spool";
    case start_up_step::recover:
        return "recover";
    }
    return "start";
}

namespace {

int bind_status(const std::system_error& e)
{
    // EINVAL: a listen value that is no address; EACCES: a privileged port.
    if (e.code() == std::errc::invalid_argument)
        return exit_status::config;
    if (e.code() == std::errc::permission_denied)
        return exit_status::no_permission;
    return exit_status::os_error;
}

// Whom root must become; nullopt when root itself owns (or will own) the spool.
std::optional<user_ids> find_owner(const config& settings)
{
    try {
        return spool_owner_for_root(settings.spool, settings.receiver.user);
    } catch (const spool_owner_error& e) {
        throw start_up_error(start_up_step::find_owner, exit_status::config, e.what());
    } catch (const std::system_error& e) {
        throw start_up_error(start_up_step::find_owner,
                             e.code() == std::errc::no_such_file_or_directory
                                 ? exit_status::no_user
                                 : exit_status::os_error,
                             e.what());
    }
}

bool spool_exists(const config& settings)
{
    struct stat st {};
    return ::stat(settings.spool.c_str(), &st) == 0;
}

void set_up(const config& settings, user_ids owner)
{
    try {
        spool::set_up_spool(settings.spool, owner.uid, owner.gid);
    } catch (const spool::foreign_spool& e) {
        throw start_up_error(start_up_step::set_up_spool, exit_status::config, e.what());
    } catch (const std::system_error& e) {
        throw start_up_error(start_up_step::set_up_spool, exit_status::cant_create, e.what());
    }
}

} // namespace

started_daemon start_daemon(net::asio::io_context& io, const config& settings, bool inetd)
{
    const bool is_root = ::geteuid() == 0;
    std::optional<user_ids> owner;
    if (is_root) {
        owner = find_owner(settings);
        // A spool that does not exist yet is made once, for its owner, with explicit modes.
        // An existing one is never chowned: set_up_spool is leafmaild --setup-spool's.
        if (!spool_exists(settings))
            set_up(settings, owner.value_or(user_ids{0, 0}));
    }

    started_daemon daemon;
    daemon.server = std::make_unique<receiver::smtp_server>(io, settings);
    if (!inetd) {
        try {
            daemon.server->bind();
        } catch (const std::system_error& e) {
            throw start_up_error(start_up_step::bind, bind_status(e), e.what());
        }
    }
    if (owner) {
        try {
            drop_privileges(*owner);
        } catch (const std::system_error& e) {
            throw start_up_error(start_up_step::drop_privileges, exit_status::no_permission,
                                 e.what());
        }
    }
    // From here on: the spool's owner (a missing spool is then made by its future owner).
    try {
        daemon.spool = std::make_unique<spool::spool>(settings.spool, true);
    } catch (const std::system_error& e) {
        throw start_up_error(start_up_step::open_spool, exit_status::cant_create, e.what());
    }
    if (!inetd) {
        try {
            const auto report = daemon.spool->recover();
            if (report.replayed_records + report.removed_temporaries +
                    report.removed_orphan_states + report.reunited_states >
                0)
                log::info(log::fields(
                    {{"event", "recovered"},
                     {"removed-temporaries", std::to_string(report.removed_temporaries)},
                     {"removed-orphan-states", std::to_string(report.removed_orphan_states)},
                     {"reunited-states", std::to_string(report.reunited_states)},
                     {"replayed-journal-records", std::to_string(report.replayed_records)}}));
        } catch (const std::system_error& e) {
            throw start_up_error(start_up_step::recover, exit_status::cant_create, e.what());
        }
        // Small messages are made durable by the journal's shared fdatasync (group commit);
        // without it (another leafmaild holds it, or no room to preallocate it) every entry
        // is committed as its own file, which is slower but just as safe.
        try {
            std::string why_not;
            if (!daemon.spool->open_journal({}, why_not))
                log::warning(log::fields({{"event", "journal-unavailable"}, {"why", why_not}}));
        } catch (const std::system_error& e) {
            throw start_up_error(start_up_step::recover, exit_status::cant_create, e.what());
        }
    }
    return daemon;
}

void set_up_spool_for(const config& settings)
{
    if (::geteuid() != 0)
        throw start_up_error(start_up_step::set_up_spool, exit_status::no_permission,
                             "--setup-spool needs root (it gives the spool to its owner)");
    if (settings.receiver.user.empty())
        throw start_up_error(start_up_step::set_up_spool, exit_status::config,
                             "--setup-spool needs 'user' in the configuration: the account "
                             "that owns the spool");
    user_ids owner;
    try {
        owner = lookup_user(settings.receiver.user);
    } catch (const std::system_error& e) {
        throw start_up_error(start_up_step::find_owner, exit_status::no_user, e.what());
    }
    set_up(settings, owner);
}

program daemon_program()
{
    program p;
    p.name = "leafmaild";
    p.usage = "Usage: leafmaild [options]\nAccepts mail over SMTP and spools it durably.\n";
    p.flags.add_options()(
        "inetd", "serve one SMTP session on stdin/stdout (inetd, systemd Accept=yes) and exit")(
        "setup-spool", "as root: create or complete the spool for the configured user, then exit")(
        "verbose", "also log debug lines");
    p.keys = config_keys::daemon;
    p.log = log::destination::syslog;
    p.status_of_system_error = [](const std::system_error&) { return exit_status::os_error; };
    return p;
}

int run_daemon(const program_context& context)
{
    config settings = context.parsed.settings;
    if (context.parsed.flags.count("setup-spool")) {
        set_up_spool_for(settings);
        std::cout << "leafmaild: spool " << settings.spool.string() << " set up for "
                  << settings.receiver.user << "\n";
        return exit_status::ok;
    }
    // A broken aliases file stops the start as a broken configuration does (exit 78).
    load_aliases_for(settings, file_trust::any_owner);
    const bool inetd = context.parsed.flags.count("inetd") > 0;
    // Failures must come back as errors, not as signals that kill every session at once:
    // a write past RLIMIT_FSIZE gives EFBIG (a 452 for that message) instead of SIGXFSZ, and a
    // write to a pipe the peer closed (inetd mode) gives EPIPE instead of SIGPIPE.
    std::signal(SIGXFSZ, SIG_IGN);
    std::signal(SIGPIPE, SIG_IGN);

    net::asio::io_context io(1);
    started_daemon daemon = start_daemon(io, settings, inetd);
    receiver::smtp_server& server = *daemon.server;

    net::asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& ec, int number) {
            if (ec)
                return;
            if (number == SIGHUP) {
                // A configuration that cannot be read (a directory, a parse error) leaves the
                // running one in place.
                try {
                    config fresh = context.reread_config();
                    load_aliases_for(fresh, file_trust::any_owner);
                    server.reload(fresh);
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
}

} // namespace leafmail::receiver
