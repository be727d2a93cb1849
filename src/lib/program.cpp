#include "leafmail/program.hpp"

#include "leafmail/exit_status.hpp"

#include <boost/program_options.hpp>

#include <iostream>

namespace leafmail {

namespace po = boost::program_options;

namespace {

// Where the runner sent the log, once it opened one; fatal errors go there and to stderr.
std::optional<log::destination> opened_log;

void report_fatal(const program& description, const std::string& what)
{
    if (opened_log)
        log::error(log::fields({{"event", "fatal"}, {"error", what}}));
    // The log line already went to stderr when that is where the log goes.
    if (opened_log != log::destination::stderr_stream)
        std::cerr << description.name << ": " << what << "\n";
}

void report_usage(const program& description, const std::string& what)
{
    std::cerr << description.name << ": " << what << "\nTry '" << description.name << " --help'.\n";
}

// The program's flags with --help, --version and --log added around them, in one group.
po::options_description all_flags(const program& description)
{
    po::options_description flags(description.name);
    flags.add_options()("help", "show this help and exit")("version", "show the version and exit");
    for (const auto& option : description.flags.options())
        flags.add(option);
    if (description.log)
        flags.add_options()("log",
                            po::value<std::string>()->value_name("WHERE")->default_value(
                                *description.log == log::destination::syslog ? "syslog" : "stderr"),
                            "syslog or stderr");
    return flags;
}

} // namespace

std::string version_line(const std::string& program_name)
{
    return program_name + " " LEAFMAIL_VERSION;
}

int run_guarded(const program& description, const std::function<int()>& body)
{
    try {
        return body();
    } catch (const program_error& e) {
        report_fatal(description, e.what());
        return e.exit_status();
    } catch (const config_error& e) {
        report_fatal(description, e.what());
        return exit_status::config;
    } catch (const usage_error& e) {
        report_usage(description, e.what());
        return exit_status::usage;
    } catch (const po::error& e) {
        report_usage(description, e.what());
        return exit_status::usage;
    } catch (const std::system_error& e) {
        report_fatal(description, e.what());
        return description.status_of_system_error ? description.status_of_system_error(e)
                                                  : exit_status::os_error;
    } catch (const std::exception& e) {
        report_fatal(description, e.what());
        return exit_status::software;
    }
}

int run_program(int argc, char* argv[], const program& description,
                const std::function<int(const program_context&)>& body)
{
    const po::options_description flags = all_flags(description);
    auto parse = [argc, argv, &description, flags] {
        return parse_command_line(argc, argv, flags, description.positional, description.keys);
    };
    return run_guarded(description, [&] {
        program_context context(parse(), [parse] { return parse().settings; });
        const auto& parsed = context.parsed;
        if (parsed.flags.count("help")) {
            std::cout << description.usage << "\n" << parsed.help;
            return exit_status::ok;
        }
        if (parsed.flags.count("version")) {
            std::cout << version_line(description.name) << "\n";
            return exit_status::ok;
        }
        if (description.log) {
            const log::destination where = log_destination_flag(parsed.flags);
            log::open(description.name, where);
            opened_log = where;
        }
        if (description.flags.find_nothrow("verbose", false))
            log::set_verbose(parsed.flags.count("verbose") > 0);
        return body(context);
    });
}

} // namespace leafmail
