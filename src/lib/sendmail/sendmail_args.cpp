#include "leafmail/sendmail/sendmail_args.hpp"

namespace leafmail::sendmail {

namespace {

// Options that take a value, attached ("-fuser") or as the next argument ("-f user").
constexpr std::string_view options_with_value = "frFCBNRVXhLOA";
// Options without a value that mean nothing to us (Sendmail: -U initial submission,
// -G gateway, -n no aliasing, -m me too).
constexpr std::string_view ignored_switches = "UGnm";

void set_mode(sendmail_options& o, sendmail_mode mode)
{
    o.mode = mode;
}

// "-o" options (Sendmail's old single-letter configuration options).
void apply_o_option(sendmail_options& o, std::string_view rest, std::string_view whole)
{
    if (rest == "i") {
        o.ignore_dots = true;
        return;
    }
    // Error mode (-oem...), delivery mode (-odb, -odi...), queue directory (-oQ...), me too
    // (-om), old headers (-oo): meaningful to Sendmail, not to a spooler. Accepted silently,
    // as other sendmails do.
    if (!rest.empty() &&
        (rest[0] == 'e' || rest[0] == 'd' || rest[0] == 'Q' || rest == "m" || rest == "o"))
        return;
    o.warnings.push_back("ignoring unknown option " + std::string(whole));
}

} // namespace

sendmail_options parse_sendmail_args(const std::vector<std::string>& args, std::string_view program)
{
    sendmail_options o;
    if (program == "mailq")
        o.mode = sendmail_mode::print_queue;
    else if (program == "newaliases")
        o.mode = sendmail_mode::check_aliases;

    std::size_t i = 0;
    for (; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg == "--") {
            ++i;
            break;
        }
        if (arg.size() < 2 || arg[0] != '-')
            break; // the first recipient: options end here
        if (arg[1] == '-') {
            if (arg == "--help") {
                o.mode = sendmail_mode::help;
                continue;
            }
            if (arg == "--version") {
                o.mode = sendmail_mode::version;
                continue;
            }
            if (arg == "--config" || arg.starts_with("--config=")) {
                if (arg.size() > 8) {
                    o.config_file = arg.substr(9);
                } else {
                    if (i + 1 >= args.size())
                        throw usage_error("option --config needs a value");
                    o.config_file = args[++i];
                }
                continue;
            }
            throw usage_error("unknown option " + arg);
        }
        // Single-letter options, getopt style: switches may be grouped ("-ti"); an option
        // with a value takes the rest of the argument or the next one.
        for (std::size_t k = 1; k < arg.size(); ++k) {
            const char letter = arg[k];
            const std::string_view rest = std::string_view(arg).substr(k + 1);
            if (letter == 'b') {
                if (rest == "m")
                    set_mode(o, sendmail_mode::deliver);
                else if (rest == "s")
                    set_mode(o, sendmail_mode::smtp_session);
                else if (rest == "p")
                    set_mode(o, sendmail_mode::print_queue);
                else if (rest == "i")
                    set_mode(o, sendmail_mode::check_aliases);
                else
                    throw usage_error("unsupported mode -b" + std::string(rest) +
                                      " (supported: -bm, -bs, -bp, -bi)");
                break;
            }
            if (letter == 'o') {
                if (rest.empty())
                    throw usage_error("option -o needs a value (such as -oi)");
                apply_o_option(o, rest, arg);
                break;
            }
            if (letter == 'q') {
                set_mode(o, sendmail_mode::flush_queue);
                if (!rest.empty())
                    o.warnings.push_back(
                        "-q" + std::string(rest) +
                        ": intervals and filters are not supported; flushing once");
                break;
            }
            if (letter == 't') {
                o.extract_recipients = true;
                continue;
            }
            if (letter == 'i') {
                o.ignore_dots = true;
                continue;
            }
            if (letter == 'v') {
                o.verbose = true;
                continue;
            }
            if (letter == 'd') { // Sendmail debug flags (-d0.1): nothing to debug here
                o.warnings.push_back("ignoring " + arg);
                break;
            }
            if (ignored_switches.find(letter) != std::string_view::npos)
                continue;
            if (options_with_value.find(letter) != std::string_view::npos) {
                std::string value;
                if (!rest.empty()) {
                    value = std::string(rest);
                } else {
                    if (i + 1 >= args.size())
                        throw usage_error(std::string("option -") + letter + " needs a value");
                    value = args[++i];
                }
                switch (letter) {
                case 'f':
                case 'r':
                    o.sender = value == "<>" ? std::string() : value;
                    break;
                case 'F':
                    o.full_name = value;
                    break;
                case 'C':
                    o.config_file = value;
                    break;
                case 'X':
                case 'O':
                case 'L':
                    o.warnings.push_back(std::string("ignoring option -") + letter + " " + value);
                    break;
                default:
                    // -B body type, -N DSN notify, -R DSN return, -V envelope id, -h hop
                    // count, -A submit/daemon config (mutt, cron and git pass some of these):
                    // meaningful only to a sendmail that delivers itself.
                    break;
                }
                break;
            }
            throw usage_error(std::string("unknown option -") + letter);
        }
    }
    for (; i < args.size(); ++i)
        o.recipients.push_back(args[i]);
    return o;
}

std::string sendmail_help()
{
    return "Usage: leafmail-sendmail [options] [--] [recipient...]\n"
           "Reads a message on stdin and writes it into the leafmail spool (a sendmail-compatible\n"
           "command: install it as /usr/sbin/sendmail; as 'mailq' it behaves like -bp, as\n"
           "'newaliases' like -bi).\n"
           "\n"
           "Options:\n"
           "  -t            take recipients from To:, Cc: and Bcc: (added to any arguments);\n"
           "                Bcc: is removed from the message\n"
           "  -f ADDR       envelope sender (also -r ADDR); -f '<>' for the null sender\n"
           "  -r ADDR       same as -f\n"
           "  -F NAME       full name for the From: header added when it is missing\n"
           "  -i            a line with a single dot does not end the message (also -oi)\n"
           "  -oi           same as -i\n"
           "  -bm           read a message on stdin and spool it (the default)\n"
           "  -bs           serve one SMTP session on stdin/stdout, as leafmaild --inetd\n"
           "  -bp           list the spool, as leafmail-list\n"
           "  -bi           check the aliases file and report its errors with line numbers\n"
           "                (also when invoked as newaliases; there is no database to build)\n"
           "  -q            relay the spool now, as leafmail-flush\n"
           "  -v            report the queue id of the spooled message on stderr\n"
           "  -C FILE       configuration file (default /etc/leafmail.conf); also --config FILE\n"
           "  --config FILE same as -C FILE\n"
           "  --help        show this help and exit\n"
           "  --version     show the version and exit\n"
           "\n"
           "Accepted and ignored: -oem, -oep, -odb, -odi, -oQ DIR, -om, -B TYPE, -N DSN, -R RET,\n"
           "-V ENVID, -h N, -A X, -U, -G, -n, -m; other -o options and -X, -O, -L, -d are\n"
           "ignored with a warning. Other options are a usage error (exit 64).\n"
           "\n"
           "Exit status: 0 when the message is durably spooled; 64 usage error; 65 bad message\n"
           "(no recipients, bad address, too large); 67 a local recipient with no alias and no\n"
           "admin-address; 73/77 spool not writable; 75 spool full, try again; 78 configuration\n"
           "error. -bi: 0 the aliases file is good (or none is set), 65 it has errors.\n";
}

} // namespace leafmail::sendmail
