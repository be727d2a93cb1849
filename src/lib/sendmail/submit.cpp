#include "leafmail/sendmail/submit.hpp"

#include "leafmail/exit_status.hpp"
#include "leafmail/intake/intake.hpp"
#include "leafmail/log.hpp"
#include "leafmail/privileges.hpp"
#include "leafmail/receiver/smtp_server.hpp"
#include "leafmail/sendmail/message.hpp"
#include "leafmail/trace.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <system_error>

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace leafmail::sendmail {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t read_size = 64 * 1024;

// The recipients as they enter the envelope. A local one (a bare name such as cron's "root",
// or @hostname, @localhost) is replaced by its aliases or admin-address before a bare name
// would be qualified with `domain`, which is not local (aliases.hpp).
std::vector<intake::accepted_recipient>
envelope_recipients(const sendmail_options& options, const std::vector<std::string>& from_header,
                    const config& settings)
{
    std::vector<std::string> candidates;
    for (const auto& argument : options.recipients) {
        auto parsed = parse_address_list(argument); // "a@b, c@d" in one argument is allowed
        if (parsed.empty() && !argument.empty())
            throw submission_error(exit_status::data_error, "bad recipient address: " + argument);
        candidates.insert(candidates.end(), parsed.begin(), parsed.end());
    }
    // -t adds the header's recipients to the arguments' (Postfix behaviour).
    if (options.extract_recipients)
        candidates.insert(candidates.end(), from_header.begin(), from_header.end());
    std::vector<std::string> given;
    for (const auto& candidate : candidates) {
        if (!is_acceptable_address(qualify(candidate, settings.domain)))
            throw submission_error(exit_status::data_error, "bad recipient address: " + candidate);
        if (std::find(given.begin(), given.end(), candidate) == given.end())
            given.push_back(candidate);
    }
    auto expansion = intake::expand_recipients(local_recipients_of(settings), given);
    if (!expansion.refusal.empty())
        throw submission_error(exit_status::no_user,
                               "recipient " + expansion.refused + " refused: " + expansion.refusal +
                                   " (set 'aliases' or 'admin-address' in the configuration)");
    for (const auto& r : expansion.recipients)
        if (!is_acceptable_address(r.address))
            throw submission_error(exit_status::data_error,
                                   "bad address " + r.address + " for recipient " + r.original);
    return std::move(expansion.recipients);
}

std::string reverse_path_for(const sendmail_options& options, const submitter& who,
                             const std::string& domain)
{
    if (!options.sender)
        return qualify(who.login, domain);
    if (options.sender->empty())
        return {}; // -f '<>': the null reverse-path (RFC 5321 4.5.5)
    auto parsed = parse_address_list(*options.sender);
    const std::string address =
        parsed.size() == 1 ? qualify(parsed.front(), domain) : *options.sender;
    if (!is_acceptable_address(address))
        throw submission_error(exit_status::data_error, "bad sender address: " + *options.sender);
    return address;
}

} // namespace

submitter current_submitter()
{
    submitter who;
    who.uid = ::getuid();
    auto names = names_of_uid(who.uid);
    who.login = std::move(names.login);
    who.full_name = std::move(names.full_name);
    return who;
}

int exit_status_for(const std::system_error& error)
{
    return intake::classify(error).exit_status; // the same table as leafmaild's 451/452
}

submission_result submit_message(spool::spool& spool, const config& settings,
                                 const sendmail_options& options, const submitter& who,
                                 int input_fd, std::time_t now)
{
    line_normalizer lines(options.ignore_dots);
    header_splitter header(max_submitted_header_size);
    std::string normalized;
    std::string body;
    std::optional<intake::new_entry> writer;
    submission_result result;

    auto start_entry = [&] {
        submission_fix fix;
        fix.now = now;
        result.reverse_path = reverse_path_for(options, who, settings.domain);
        fix.from_address =
            result.reverse_path.empty() ? qualify(who.login, settings.domain) : result.reverse_path;
        fix.full_name = options.full_name.empty() ? who.full_name : options.full_name;
        fix.message_id = "<pending>";
        const auto recipients =
            envelope_recipients(options, fix_header(header.fields(), fix).to_cc_bcc, settings);
        result.recipients.clear();
        for (const auto& r : recipients)
            result.recipients.push_back(r.address);
        if (result.recipients.empty())
            throw submission_error(exit_status::data_error,
                                   options.extract_recipients
                                       ? "no recipients in To:, Cc:, Bcc: or the arguments"
                                       : "no recipients given (name them as arguments, or use -t)");
        // The same limit leafmaild applies at RCPT (452 beyond it): one way in, one limit.
        if (result.recipients.size() > settings.receiver.max_recipients)
            throw submission_error(
                exit_status::data_error,
                "too many recipients: " + std::to_string(result.recipients.size()) +
                    " (max-recipients is " + std::to_string(settings.receiver.max_recipients) +
                    ")");
        try {
            writer.emplace(intake::begin_entry(
                spool, {settings.hostname, settings.receiver.min_free_space},
                intake::local_source(who.uid, who.login), result.reverse_path, recipients, now));
        } catch (const std::system_error& e) {
            if (e.code() == std::errc::no_space_on_device)
                throw submission_error(exit_status::temp_fail, std::string("the spool is full (") +
                                                                   e.what() + "); try again later");
            throw;
        }
        fix.message_id = "<" + writer->id() + "@" + settings.hostname + ">";
        const fixed_header fixed = fix_header(header.fields(), fix);
        writer->write(fixed.text);
        writer->write("\r\n"); // the empty line between header and body
    };
    auto write_body = [&] {
        if (!writer || body.empty())
            return;
        writer->write(body);
        body.clear();
        if (writer->content_size() > settings.receiver.max_message_size)
            throw submission_error(exit_status::data_error,
                                   "message is larger than max-message-size (" +
                                       std::to_string(settings.receiver.max_message_size) +
                                       " octets)");
    };
    auto check_header = [&] {
        if (header.is_too_large())
            throw submission_error(exit_status::data_error,
                                   "message header is larger than " +
                                       std::to_string(max_submitted_header_size) + " octets");
    };

    try {
        // Left uninitialised: zero-filling it would touch (and fault in) all 16 of its pages
        // for every message, however small; read() touches only what it fills.
        const auto buffer = std::make_unique_for_overwrite<char[]>(read_size);
        while (!lines.ended()) {
            const ssize_t n = ::read(input_fd, buffer.get(), read_size);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw submission_error(exit_status::io_error,
                                       std::string("cannot read the message: ") +
                                           std::strerror(errno));
            if (n == 0)
                break;
            normalized.clear();
            lines.put(std::string_view(buffer.get(), static_cast<std::size_t>(n)), normalized);
            header.put(normalized, body);
            check_header();
            if (header.is_complete() && !writer)
                start_entry();
            write_body();
        }
        normalized.clear();
        lines.finish(normalized);
        header.put(normalized, body);
        header.finish(body);
        check_header();
        if (!writer)
            start_entry();
        write_body();
        result.size = writer->content_size();
        writer->commit(); // durable (fsync, rename, directory fsync) before we return
        result.id = writer->id();
        return result;
    } catch (const std::system_error& e) {
        throw submission_error(exit_status_for(e), e.what());
    }
}

bool has_setgid_privilege()
{
    return ::getegid() != ::getgid();
}

void drop_setgid_privilege()
{
    const gid_t real = ::getgid();
    if (::setresgid(real, real, real) != 0)
        throw std::system_error(errno, std::generic_category(), "cannot drop the group privilege");
}

config load_submission_config(const std::string& named_file)
{
    // Only root's configuration is trusted with the spool's group. A caller other than root
    // who names a file of their own gives the group up before it is read, and can then write
    // only where they could without us (a file's owner and mode prove nothing: procfs shows
    // root-owned files whose content the caller chose, such as /proc/self/cmdline).
    if (named_file.empty())
        return load_config_file(default_config_path, false);
    if (named_file != default_config_path && ::getuid() != 0 && has_setgid_privilege())
        drop_setgid_privilege();
    return load_config_file(named_file, true);
}

fs::path sibling_program(const std::string& name)
{
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (ec)
        return name; // found through PATH then
    return self.parent_path() / name;
}

namespace {

int exec_sibling(const std::string& program, const sendmail_options& options)
{
    // Listing and flushing are for the spool's owners: the setgid group only ever injects.
    if (has_setgid_privilege())
        drop_setgid_privilege();
    const fs::path path = sibling_program(program);
    std::vector<std::string> args{program};
    if (!options.config_file.empty()) {
        args.push_back("--config");
        args.push_back(options.config_file);
    }
    std::vector<char*> argv;
    for (auto& arg : args)
        argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(path.c_str(), argv.data());
    std::cerr << "leafmail-sendmail: cannot run " << path.string() << ": " << std::strerror(errno)
              << "\n";
    return exit_status::unavailable;
}

int serve_smtp_session(spool::spool& spool, const config& settings, const submitter& who)
{
    log::open("leafmail-sendmail", log::destination::syslog);
    net::asio::io_context io(1);
    receiver::smtp_server server(io, settings);
    server.serve_inetd(spool, STDIN_FILENO, STDOUT_FILENO,
                       intake::local_source(who.uid, who.login));
    io.run();
    return exit_status::ok;
}

} // namespace

int check_aliases(const std::string& config_file, std::ostream& out, std::ostream& err)
{
    // Only reads, and prints what it read: nothing here needs the spool's group, and a
    // user must not read through it what the group alone may read.
    if (has_setgid_privilege())
        drop_setgid_privilege();
    const config settings = load_submission_config(config_file);
    if (settings.aliases_file.empty()) {
        out << "leafmail-sendmail: no 'aliases' file is configured"
            << (settings.admin_address.empty()
                    ? "; local recipients are refused"
                    : "; local recipients go to " + settings.admin_address)
            << "\n";
        return exit_status::ok;
    }
    const auto result =
        load_aliases(settings.aliases_file, settings.hostname, file_trust::any_owner);
    if (!result.problems.empty()) {
        err << describe_problems(settings.aliases_file, result.problems, result.problems.size())
            << "\n";
        return exit_status::data_error;
    }
    out << "leafmail-sendmail: " << settings.aliases_file.string() << ": "
        << result.table.entries.size() << (result.table.entries.size() == 1 ? " alias" : " aliases")
        << ", no errors\n";
    return exit_status::ok;
}

program sendmail_program()
{
    program p;
    p.name = "leafmail-sendmail";
    p.status_of_system_error = exit_status_for;
    return p;
}

int run_sendmail(int argc, char* argv[])
{
    const std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    const std::string program_name = argc > 0 ? fs::path(argv[0]).filename().string() : "sendmail";
    const sendmail_options options = parse_sendmail_args(args, program_name);
    for (const auto& warning : options.warnings)
        std::cerr << "leafmail-sendmail: warning: " << warning << "\n";

    switch (options.mode) {
    case sendmail_mode::help:
        std::cout << sendmail_help();
        return exit_status::ok;
    case sendmail_mode::version:
        std::cout << version_line("leafmail-sendmail") << "\n";
        return exit_status::ok;
    case sendmail_mode::check_aliases:
        return check_aliases(options.config_file, std::cout, std::cerr);
    case sendmail_mode::print_queue:
        return exec_sibling("leafmail-list", options);
    case sendmail_mode::flush_queue:
        return exec_sibling("leafmail-flush", options);
    case sendmail_mode::deliver:
    case sendmail_mode::smtp_session:
        break;
    }

    // Entries must stay readable by the spool's group (the daemon and flush) whatever umask
    // the calling program has, and never by others.
    ::umask(007);
    config settings;
    try {
        settings = load_submission_config(options.config_file);
    } catch (const std::system_error& e) {
        // Not the spool: the configuration could not be read or the privilege not dropped.
        throw program_error(exit_status::os_error, e.what());
    }

    // Root's aliases file only, while the spool's group is held (trust model).
    load_aliases_for(settings,
                     has_setgid_privilege() ? file_trust::root_only : file_trust::any_owner);

    // Who submits is the real uid, read before root (if it is root) becomes the owner.
    const submitter who = current_submitter();
    become_spool_owner(settings.spool, settings.receiver.user); // a foreign spool: 78
    // Never created here: a missing spool is the administrator's to set up, not the first
    // user's who runs the setgid injector.
    spool::spool spool(settings.spool, false);
    if (options.mode == sendmail_mode::smtp_session)
        return serve_smtp_session(spool, settings, who);

    // A running leafmaild makes a small message durable with its journal's shared, data-only
    // fdatasync, cheaper than the two metadata commits of a new file; without one, or when it
    // does not answer, the message is committed here as its own file.
    spool.offer_new_entries_to_receiver();
    log::open("leafmail-sendmail", log::destination::syslog);
    const auto result =
        submit_message(spool, settings, options, who, STDIN_FILENO, std::time(nullptr));
    log::info(log::fields({{"event", "accepted"},
                           {"id", result.id},
                           {"uid", std::to_string(who.uid)},
                           {"from", "<" + result.reverse_path + ">"},
                           {"recipients", std::to_string(result.recipients.size())},
                           {"size", std::to_string(result.size)}}));
    if (options.verbose)
        std::cerr << "leafmail-sendmail: queued as " << result.id << " for "
                  << result.recipients.size()
                  << (result.recipients.size() == 1 ? " recipient" : " recipients") << "\n";
    return exit_status::ok;
}

} // namespace leafmail::sendmail
