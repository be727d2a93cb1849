#include "leafmail/config.hpp"

#include "leafmail/aliases.hpp"
#include "leafmail/routes.hpp"
#include "leafmail/text.hpp"

#include <boost/program_options.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace leafmail {

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

// Every key is declared as text and converted by the functions below, so that a bad value is
// reported in our words with the key and the line, not as a bare lexical_cast failure.
struct key_info {
    const char* name;
    const char* help;
    unsigned used_by; // config_keys:: bits: whose --help lists the key
    bool is_list = false;
};

constexpr unsigned daemon_key = config_keys::daemon;
constexpr unsigned flush_key = config_keys::flush;
// leafmail-sendmail -bs serves one SMTP session as leafmaild does, so it reads the receiver's
// limits too.
constexpr unsigned receiver_key = config_keys::daemon | config_keys::sendmail;

constexpr key_info keys[] = {
    {"spool", "spool directory (default /var/spool/leafmail)", config_keys::all},
    {"hostname", "our host name in the greeting and Received: (default: the system's)",
     config_keys::daemon | config_keys::flush | config_keys::sendmail},
    {"domain", "domain for local senders without one (default: hostname)",
     config_keys::flush | config_keys::sendmail}, // the flush: the default helo
    {"listen",
     "address:port to listen on, [v6]:port for IPv6, port 0 picks a free one; repeatable (default "
     "127.0.0.1:25)",
     daemon_key, true},
    {"allow", "client network allowed to send, CIDR; repeatable (default 127.0.0.0/8 and ::1)",
     daemon_key, true},
    {"deny", "client network refused, CIDR; wins over allow; repeatable", daemon_key, true},
    {"max-message-size", "largest message accepted, octets or with K/M/G (default 25M)",
     receiver_key},
    {"max-recipients", "recipients per message (default 100)", receiver_key},
    {"max-connections", "concurrent SMTP connections (default 100)", daemon_key},
    {"idle-timeout", "seconds a client may stay silent (default 300; also s/m/h suffixes)",
     receiver_key},
    {"max-bad-commands", "bad commands before the session is closed (default 20)", receiver_key},
    {"min-free-space", "refuse new mail with 452 below this free space (default 64M)",
     receiver_key},
    {"fsync-workers", "threads that run fsync off the event loop (default 16)", receiver_key},
    {"shutdown-grace", "seconds sessions in flight get after SIGTERM (default 30)", daemon_key},
    {"user", "user to run as after binding, when started as root", daemon_key},
    {"smarthost", "relay host[:port] for leafmail-flush", flush_key},
    {"tls", "none | starttls | tls (implicit TLS) (default starttls)", flush_key},
    {"tls-verify", "verify the smarthost certificate and name: yes | no (default yes)", flush_key},
    {"ca-file", "extra CA certificate file trusted besides the system store", flush_key},
    {"auth-user", "user name for SMTP AUTH at the smarthost", flush_key},
    {"auth-password-file",
     "file holding the AUTH password; must not be readable by group or others", flush_key},
    {"auth-password-command",
     "command (run by /bin/sh) printing the AUTH password on its first line, run when first needed",
     flush_key},
    {"auth-token-command",
     "command (run by /bin/sh) printing an OAuth 2.0 access token, for xoauth2 and oauthbearer",
     flush_key},
    {"auth-mechanisms",
     "AUTH mechanisms to use, preferred first: plain login cram-md5 xoauth2 oauthbearer "
     "(default plain login cram-md5)",
     flush_key},
    {"auth-over-plaintext", "allow AUTH without TLS: yes | no (default no)", flush_key},
    {"helo",
     "name sent in EHLO/HELO to the smarthost (default: hostname if dotted, else "
     "hostname.domain)",
     flush_key},
    {"connect-timeout", "seconds to connect to the smarthost (default 30)", flush_key},
    {"timeout", "seconds to wait for each smarthost reply (default 300)", flush_key},
    {"data-timeout", "seconds to wait for the reply to the final dot (default 600)", flush_key},
    {"max-messages-per-connection",
     "messages per smarthost connection before reconnecting (default 1000)", flush_key},
    {"max-recipients-per-transaction",
     "recipients per smarthost transaction; more go in further transactions (default 100)",
     flush_key},
    {"connections", "parallel smarthost connections (default 1)", flush_key},
    {"max-queue-age", "a message pending longer than this bounces (default 5d)", flush_key},
    {"retry-min", "watcher: first wait after a failed attempt, doubling (default 1m)", flush_key},
    {"retry-max", "watcher: longest wait between attempts (default 1h)", flush_key},
    {"warn-after",
     "a message still pending this long gets one delay notice to its sender; 0 = never "
     "(default 4h)",
     flush_key},
    {"auto-connect",
     "watcher: always (whenever a default route exists) | on-link (only after a link-up event "
     "or a kick; for metered and dial-on-demand links) (default always)",
     flush_key},
    {"rewrite-sender", "envelope sender given to mail from local senders relayed this way",
     flush_key},
    {"rewrite-from",
     "with rewrite-sender: a local From: header gets that address too, display name kept: yes | "
     "no (default no)",
     flush_key},
    {"aliases", "aliases file (/etc/aliases syntax) for local recipients", receiver_key},
    {"admin-address", "address for local recipients without an alias", receiver_key},
};

// The keys a [route NAME] section may hold: everything that describes one smarthost and how
// to use it, plus `senders`.
constexpr std::string_view route_keys[] = {
    "smarthost",
    "tls",
    "tls-verify",
    "ca-file",
    "auth-user",
    "auth-password-file",
    "auth-password-command",
    "auth-token-command",
    "auth-mechanisms",
    "auth-over-plaintext",
    "helo",
    "connect-timeout",
    "timeout",
    "data-timeout",
    "max-messages-per-connection",
    "connections",
    "rewrite-sender",
    "rewrite-from",
    "senders",
};

constexpr std::string_view known_mechanisms[] = {"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2",
                                                 "OAUTHBEARER"};

[[noreturn]] void bad_value(const std::string& where, std::string_view key,
                            const std::string& value, std::string_view expected)
{
    throw config_error(where + ": bad value for '" + std::string(key) + "': '" + value +
                       "' (expected " + std::string(expected) + ")");
}

std::uint64_t parse_unsigned(const std::string& where, std::string_view key,
                             const std::string& text, std::uint64_t max = UINT64_MAX)
{
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size() || value > max)
        bad_value(where, key, text, "a whole number");
    return value;
}

std::uint64_t parse_with_suffix(const std::string& where, std::string_view key,
                                const std::string& text, std::string_view suffixes,
                                const std::uint64_t* factors, std::string_view expected)
{
    std::string digits = text;
    std::uint64_t factor = 1;
    if (!digits.empty()) {
        const auto found = suffixes.find(
            static_cast<char>(std::tolower(static_cast<unsigned char>(digits.back()))));
        if (found != std::string_view::npos) {
            factor = factors[found];
            digits.pop_back();
        }
    }
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || error != std::errc{} || end != digits.data() + digits.size() ||
        value > UINT64_MAX / factor)
        bad_value(where, key, text, expected);
    return value * factor;
}

std::uint64_t parse_size(const std::string& where, std::string_view key, const std::string& text)
{
    static constexpr std::uint64_t factors[] = {1024, 1024 * 1024, 1024 * 1024 * 1024};
    return parse_with_suffix(where, key, text, "kmg", factors, "octets, optionally with K, M or G");
}

std::chrono::seconds parse_duration(const std::string& where, std::string_view key,
                                    const std::string& text)
{
    static constexpr std::uint64_t factors[] = {1, 60, 3600, 86400};
    const auto seconds = parse_with_suffix(where, key, text, "smhd", factors,
                                           "seconds, optionally with s, m, h or d");
    if (seconds == 0 || seconds > 365ull * 86400)
        bad_value(where, key, text, "a duration between 1 second and 365 days");
    return std::chrono::seconds(seconds);
}

bool parse_bool(const std::string& where, std::string_view key, const std::string& text)
{
    std::string lower = text;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (lower == "yes" || lower == "true" || lower == "on" || lower == "1")
        return true;
    if (lower == "no" || lower == "false" || lower == "off" || lower == "0")
        return false;
    bad_value(where, key, text, "yes or no");
}

std::string system_hostname()
{
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0')
        return "localhost";
    return name;
}

// The line of the file on which `key` is set, for error messages; 0 when not found.
int line_of_key(const fs::path& file, std::string_view key)
{
    std::ifstream in(file);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        const auto start = line.find_first_not_of(" \t");
        if (start == std::string::npos || line[start] == '#')
            continue;
        if (line[start] == '[')
            break; // the top-level keys end at the first [route NAME] section
        const auto eq = line.find('=', start);
        std::string name =
            line.substr(start, eq == std::string::npos ? std::string::npos : eq - start);
        name.erase(name.find_last_not_of(" \t\r") + 1);
        if (name == key)
            return number;
    }
    return 0;
}

std::string place_in_file(const fs::path& file, std::string_view key)
{
    const int line = line_of_key(file, key);
    return file.string() + (line > 0 ? ":" + std::to_string(line) : "");
}

// The keys used by `programs` (config_keys:: bits), or with `others` the keys not used by them.
po::options_description key_options(const char* caption, unsigned programs, bool others = false)
{
    po::options_description desc(caption);
    for (const auto& key : keys) {
        if (((key.used_by & programs) != 0) == others)
            continue;
        if (key.is_list)
            desc.add_options()(key.name, po::value<std::vector<std::string>>()->value_name("VALUE"),
                               key.help);
        else
            desc.add_options()(key.name, po::value<std::string>()->value_name("VALUE"), key.help);
    }
    return desc;
}

// Applies one key's text value(s) to the settings; `where` names the source for errors.
void apply_key(config& c, std::string_view key, const std::vector<std::string>& values,
               const std::string& where)
{
    const std::string& v = values.back();
    auto& r = c.receiver;
    auto& s = c.relay;
    if (key == "spool") {
        if (v.empty())
            bad_value(where, key, v, "a directory");
        c.spool = v;
    } else if (key == "hostname") {
        c.hostname = v;
    } else if (key == "domain") {
        c.domain = v;
    } else if (key == "listen") {
        r.listen = values;
    } else if (key == "allow" || key == "deny") {
        std::vector<cidr> nets;
        for (const auto& item : values) {
            const auto net = cidr::parse(item);
            if (!net)
                bad_value(where, key, item,
                          "an IPv4 or IPv6 network such as 127.0.0.0/8 or ::1/128");
            nets.push_back(*net);
        }
        (key == "allow" ? r.access.allow : r.access.deny) = std::move(nets);
    } else if (key == "max-message-size") {
        r.max_message_size = parse_size(where, key, v);
    } else if (key == "max-recipients") {
        r.max_recipients = parse_unsigned(where, key, v, 100000);
    } else if (key == "max-connections") {
        r.max_connections = parse_unsigned(where, key, v, 1000000);
    } else if (key == "idle-timeout") {
        r.idle_timeout = parse_duration(where, key, v);
    } else if (key == "max-bad-commands") {
        r.max_bad_commands = parse_unsigned(where, key, v, 100000);
    } else if (key == "min-free-space") {
        r.min_free_space = parse_size(where, key, v);
    } else if (key == "fsync-workers") {
        r.fsync_workers = parse_unsigned(where, key, v, 256);
        if (r.fsync_workers == 0)
            bad_value(where, key, v, "at least 1");
    } else if (key == "shutdown-grace") {
        r.shutdown_grace = parse_duration(where, key, v);
    } else if (key == "user") {
        r.user = v;
    } else if (key == "smarthost") {
        s.smarthost = v;
    } else if (key == "tls") {
        if (v == "none")
            s.tls = smtp::client_tls::none;
        else if (v == "starttls")
            s.tls = smtp::client_tls::starttls;
        else if (v == "tls")
            s.tls = smtp::client_tls::implicit;
        else
            bad_value(where, key, v, "none, starttls or tls");
    } else if (key == "tls-verify") {
        s.tls_verify = parse_bool(where, key, v);
    } else if (key == "ca-file") {
        s.ca_file = v;
    } else if (key == "auth-user") {
        s.auth_user = v;
    } else if (key == "auth-password-file") {
        s.auth_password_file = v;
    } else if (key == "auth-password-command") {
        s.auth_password_command = v;
    } else if (key == "auth-token-command") {
        s.auth_token_command = v;
    } else if (key == "auth-mechanisms") {
        s.auth_mechanisms.clear();
        for (const auto& item : split_list(v)) {
            std::string name = item;
            std::transform(name.begin(), name.end(), name.begin(), [](unsigned char letter) {
                return static_cast<char>(std::toupper(letter));
            });
            if (std::find(std::begin(known_mechanisms), std::end(known_mechanisms), name) ==
                std::end(known_mechanisms))
                bad_value(where, key, item, "plain, login, cram-md5, xoauth2 or oauthbearer");
            if (std::find(s.auth_mechanisms.begin(), s.auth_mechanisms.end(), name) ==
                s.auth_mechanisms.end())
                s.auth_mechanisms.push_back(name);
        }
        if (s.auth_mechanisms.empty())
            bad_value(where, key, v, "at least one mechanism");
    } else if (key == "rewrite-sender") {
        const auto address = parse_sender_pattern(v);
        if (!address || address->local.empty())
            bad_value(where, key, v, "an address such as me@example.org");
        s.rewrite_sender = v;
    } else if (key == "rewrite-from") {
        s.rewrite_from = parse_bool(where, key, v);
    } else if (key == "aliases") {
        if (v.empty())
            bad_value(where, key, v, "a file");
        c.aliases_file = v;
    } else if (key == "admin-address") {
        const auto address = parse_sender_pattern(v);
        if (!address || address->local.empty())
            bad_value(where, key, v, "an address such as admin@example.org");
        c.admin_address = v;
    } else if (key == "auth-over-plaintext") {
        s.auth_over_plaintext = parse_bool(where, key, v);
    } else if (key == "helo") {
        s.helo = v;
    } else if (key == "connect-timeout") {
        s.connect_timeout = parse_duration(where, key, v);
    } else if (key == "timeout") {
        s.timeout = parse_duration(where, key, v);
    } else if (key == "data-timeout") {
        s.data_timeout = parse_duration(where, key, v);
    } else if (key == "max-messages-per-connection") {
        s.max_messages_per_connection = parse_unsigned(where, key, v, 1000000);
        if (s.max_messages_per_connection == 0)
            bad_value(where, key, v, "at least 1");
    } else if (key == "max-recipients-per-transaction") {
        s.max_recipients_per_transaction = parse_unsigned(where, key, v, 1000000);
        if (s.max_recipients_per_transaction == 0)
            bad_value(where, key, v, "at least 1");
    } else if (key == "connections") {
        s.connections = parse_unsigned(where, key, v, 64);
        if (s.connections == 0)
            bad_value(where, key, v, "between 1 and 64");
    } else if (key == "max-queue-age") {
        s.max_queue_age = parse_duration(where, key, v);
    } else if (key == "retry-min") {
        s.retry_min = parse_duration(where, key, v);
    } else if (key == "retry-max") {
        s.retry_max = parse_duration(where, key, v);
    } else if (key == "warn-after") {
        s.warn_after = v == "0" ? std::chrono::seconds(0) : parse_duration(where, key, v);
    } else if (key == "auto-connect") {
        const auto mode = watch::auto_connect_from_string(v);
        if (!mode)
            bad_value(where, key, v, "always or on-link");
        s.auto_connect = *mode;
    }
}

std::vector<std::string> values_of(const po::variable_value& value)
{
    if (const auto* list = boost::any_cast<std::vector<std::string>>(&value.value()))
        return *list;
    return {value.as<std::string>()};
}

// Boost 1.74's error_with_option_name::what() replaces each placeholder ("%option%",
// "%original_token%", ...) until none is left, so a key or line that itself contains one makes
// it loop forever (found by tests/fuzz/config_fuzzer). Blunt the '%' in what it substitutes.
struct placeholder_defuser : po::error_with_option_name {
    static void defuse(po::error_with_option_name& e)
    {
        for (auto& substitution : e.*(&placeholder_defuser::m_substitutions))
            std::replace(substitution.second.begin(), substitution.second.end(), '%', '?');
    }
};

// One `key = value` line of a [route NAME] section, and the section.
struct section_entry {
    int line = 0;
    std::string key;
    std::string value;
};
struct route_section {
    std::string name;
    int line = 0;
    std::vector<section_entry> entries;
};
struct file_contents {
    po::variables_map top_level;
    std::vector<route_section> sections;
};

std::string_view trimmed(std::string_view text)
{
    const auto start = text.find_first_not_of(" \t\r");
    if (start == std::string_view::npos)
        return {};
    return text.substr(start, text.find_last_not_of(" \t\r") - start + 1);
}

bool is_route_name(std::string_view name)
{
    return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '-' || c == '_' || c == '.';
    });
}

file_contents read_file(const fs::path& file, const po::options_description& desc)
{
    std::istringstream in(read_trusted_file(file, "configuration file", file_trust::any_owner));
    // Boost.Program_options would take `[route work]` as a prefix "route work." for the keys
    // below it. Sections are read here; Boost reads the top-level lines, the others blanked.
    // Lines are read as Boost reads them: '#' starts a comment, blanks around name and value
    // do not count.
    file_contents result;
    std::string top_level;
    std::map<std::string, int, std::less<>> top_level_lines; // key -> line of its first setting
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        const auto at = [&] { return file.string() + ":" + std::to_string(number); };
        const std::string_view text = trimmed(std::string_view(line).substr(0, line.find('#')));
        if (!text.empty() && text.front() == '[') {
            const std::string_view inside =
                trimmed(text.back() == ']' ? text.substr(1, text.size() - 2) : std::string_view{});
            const auto blank = inside.find_first_of(" \t");
            const std::string_view name = blank == std::string_view::npos
                                              ? std::string_view{}
                                              : trimmed(inside.substr(blank));
            if (inside.substr(0, blank) != "route" || !is_route_name(name))
                throw config_error(at() + ": bad section '" + std::string(text) +
                                   "' (expected [route NAME], NAME of letters, digits, - _ .)");
            result.sections.push_back({std::string(name), number, {}});
            top_level += '\n';
            continue;
        }
        if (text.empty()) {
            top_level += '\n';
            continue;
        }
        const auto eq = text.find('=');
        const std::string_view key = trimmed(text.substr(0, eq));
        if (eq == std::string_view::npos || key.empty())
            throw config_error(at() + ": expected 'key = value', not '" + std::string(text) + "'");
        if (result.sections.empty()) {
            // Boost would name neither line of these two mistakes: said here, with both.
            const auto known = std::find_if(std::begin(keys), std::end(keys),
                                            [&](const key_info& k) { return k.name == key; });
            const auto [first, is_new] = top_level_lines.emplace(std::string(key), number);
            if (!is_new && known != std::end(keys) && !known->is_list)
                throw config_error(at() + ": '" + std::string(key) +
                                   "' is set twice (first on line " +
                                   std::to_string(first->second) + ")");
            top_level += line;
            top_level += '\n';
            continue;
        }
        top_level += '\n';
        result.sections.back().entries.push_back(
            {number, std::string(key), std::string(trimmed(text.substr(eq + 1)))});
    }
    std::istringstream top_level_in(top_level);
    try {
        po::store(po::parse_config_file(top_level_in, desc, false), result.top_level);
    } catch (po::error_with_option_name& e) {
        const std::string key = e.get_option_name();
        placeholder_defuser::defuse(e);
        throw config_error(place_in_file(file, key) + ": " + e.what());
    } catch (const po::error& e) {
        throw config_error(file.string() + ": " + e.what());
    }
    return result;
}

// What a route needs beyond the type of each value. `where` names the place of a key.
template <typename Where> void validate_route(const relay_settings& r, const Where& where)
{
    if (r.rewrite_from && r.rewrite_sender.empty())
        throw config_error(where("rewrite-from") +
                           ": 'rewrite-from' is set but 'rewrite-sender' (the address it gives "
                           "the From: header) is not");
    if (!r.smarthost.empty() && r.port() == 0)
        bad_value(where("smarthost"), "smarthost", r.smarthost,
                  "host or host:port with a port from 1 to 65535");
    if (!r.auth_password_file.empty() && !r.auth_password_command.empty())
        throw config_error(where("auth-password-command") +
                           ": set 'auth-password-file' or 'auth-password-command', not both");
    const bool has_password = !r.auth_password_file.empty() || !r.auth_password_command.empty();
    const bool has_token = !r.auth_token_command.empty();
    if (!r.auth_user.empty() && !has_password && !has_token)
        throw config_error(where("auth-user") +
                           ": 'auth-user' is set but 'auth-password-file' is not (nor "
                           "'auth-password-command' or 'auth-token-command')");
    if (r.auth_user.empty()) {
        if (!r.auth_password_command.empty())
            throw config_error(where("auth-password-command") +
                               ": 'auth-password-command' is set but 'auth-user' is not");
        if (has_token)
            throw config_error(where("auth-token-command") +
                               ": 'auth-token-command' is set but 'auth-user' is not");
        return;
    }
    bool wants_token = false;
    bool wants_password = r.auth_mechanisms.empty(); // the default list: password mechanisms
    for (const auto& m : r.auth_mechanisms)
        (m == "XOAUTH2" || m == "OAUTHBEARER" ? wants_token : wants_password) = true;
    if (wants_token && !has_token)
        throw config_error(where("auth-mechanisms") +
                           ": 'auth-mechanisms' lists xoauth2 or oauthbearer but "
                           "'auth-token-command' is not set");
    if (has_token && !wants_token)
        throw config_error(where("auth-token-command") +
                           ": 'auth-token-command' is set but 'auth-mechanisms' lists neither "
                           "xoauth2 nor oauthbearer");
    if (wants_password && !has_password)
        throw config_error(where("auth-mechanisms") +
                           ": 'auth-mechanisms' lists a password mechanism (plain, login, "
                           "cram-md5) but neither 'auth-password-file' nor "
                           "'auth-password-command' is set");
}

// The [route NAME] sections as routes; each starts from the built-in defaults, not from the
// top-level keys, so that one account's credentials never leak into another's route.
std::vector<route> build_routes(const std::vector<route_section>& sections, const fs::path& file,
                                const std::string& helo)
{
    std::vector<route> routes;
    for (const auto& section : sections) {
        const auto at = [&](int line) { return file.string() + ":" + std::to_string(line); };
        const std::string title = "[route " + section.name + "]";
        if (section.name == default_route_name)
            throw config_error(at(section.line) + ": " + title +
                               ": 'default' names the top-level keys; choose another name");
        for (const auto& earlier : routes)
            if (earlier.name == section.name)
                throw config_error(at(section.line) + ": " + title +
                                   " appears twice; route names must be unique");
        config scratch;
        route r;
        r.name = section.name;
        std::map<std::string, int, std::less<>> line_of;
        for (const auto& e : section.entries) {
            if (std::find(std::begin(route_keys), std::end(route_keys), e.key) ==
                std::end(route_keys))
                throw config_error(at(e.line) + ": unknown key '" + e.key + "' in " + title);
            if (e.key != "senders" && line_of.count(e.key))
                throw config_error(at(e.line) + ": '" + e.key + "' is set twice in " + title +
                                   " (first on line " + std::to_string(line_of[e.key]) + ")");
            line_of.emplace(e.key, e.line);
            if (e.key != "senders") {
                apply_key(scratch, e.key, {e.value}, at(e.line));
                continue;
            }
            const auto items = split_list(e.value);
            if (items.empty())
                bad_value(at(e.line), e.key, e.value, "addresses or @domains");
            for (const auto& item : items) {
                auto pattern = parse_sender_pattern(item);
                if (!pattern)
                    bad_value(at(e.line), e.key, item,
                              "an address such as me@example.org or a domain such as "
                              "@example.org");
                r.senders.push_back(std::move(*pattern));
            }
        }
        r.relay = std::move(scratch.relay);
        if (r.relay.smarthost.empty())
            throw config_error(at(section.line) + ": " + title + " has no 'smarthost'");
        if (r.relay.helo.empty())
            r.relay.helo = helo;
        validate_route(r.relay, [&](std::string_view key) {
            const auto found = line_of.find(key);
            return at(found == line_of.end() ? section.line : found->second);
        });
        routes.push_back(std::move(r));
    }
    return routes;
}

} // namespace

std::string relay_settings::host() const
{
    const auto split = text::split_host_port(smarthost);
    return split ? split->host : smarthost;
}

std::uint16_t relay_settings::port() const
{
    const auto split = text::split_host_port(smarthost);
    if (!split)
        return 0;
    if (split->port) {
        const auto value = text::parse_port(*split->port);
        return value ? static_cast<std::uint16_t>(*value) : 0;
    }
    switch (tls) {
    case smtp::client_tls::none:
        return 25;
    case smtp::client_tls::starttls:
        return 587;
    case smtp::client_tls::implicit:
        return 465;
    }
    return 25;
}

po::options_description config_options(unsigned programs)
{
    return key_options("Configuration keys (file or command line)", programs);
}

parsed_command_line parse_command_line(int argc, const char* const argv[],
                                       const po::options_description& tool_flags,
                                       const po::positional_options_description* positional,
                                       unsigned shown_keys)
{
    po::options_description general("General");
    general.add_options()("config", po::value<std::string>()->value_name("FILE"),
                          "configuration file (default /etc/leafmail.conf)");
    const po::options_description shown =
        key_options("Configuration keys (file or command line)", shown_keys);
    // One file serves every program: keys another program uses are accepted, not listed.
    const po::options_description not_shown = key_options("", shown_keys, true);
    const po::options_description file_keys = key_options("", config_keys::all);
    po::options_description all;
    all.add(general).add(tool_flags).add(shown).add(not_shown);

    parsed_command_line result;
    auto parser = po::command_line_parser(argc, argv).options(all);
    if (positional)
        parser.positional(*positional);
    try {
        po::store(parser.run(), result.flags); // po::error escapes: a usage error
        po::notify(result.flags);
    } catch (po::error_with_option_name& e) {
        placeholder_defuser::defuse(e); // what() must not hang on "--%option%"
        throw;
    }

    if (result.flags.count("help")) {
        // Formatted only when asked for: it is 40 % of an injection's instructions otherwise.
        std::ostringstream help;
        help << general << '\n' << tool_flags << '\n' << shown;
        result.help = help.str();
    }
    if (result.flags.count("help") || result.flags.count("version"))
        return result; // answered without reading a file that may not exist yet

    fs::path file = default_config_path;
    bool must_exist = false;
    if (result.flags.count("config")) {
        file = result.flags["config"].as<std::string>();
        must_exist = true;
    }
    file_contents from_file;
    std::error_code ec;
    if (must_exist || fs::exists(file, ec)) {
        from_file = read_file(file, file_keys);
        result.config_file = file;
    }

    config& c = result.settings;
    for (const auto& key : keys) {
        if (result.flags.count(key.name))
            apply_key(c, key.name, values_of(result.flags[key.name]), "command line");
        else if (from_file.top_level.count(key.name))
            apply_key(c, key.name, values_of(from_file.top_level[key.name]),
                      place_in_file(file, key.name));
    }
    if (c.hostname.empty())
        c.hostname = system_hostname();
    if (c.domain.empty())
        c.domain = c.hostname;
    if (c.relay.helo.empty())
        c.relay.helo = default_helo(c.hostname, c.domain);
    c.routes = build_routes(from_file.sections, file, default_helo(c.hostname, c.domain));
    validate(c, result.config_file);
    return result;
}

bool is_dotted_name(std::string_view name)
{
    if (name.size() > 2 && name.front() == '[' && name.back() == ']')
        return true; // an address literal (RFC 5321 section 4.1.3)
    const auto dot = name.find('.');
    return dot != std::string_view::npos && dot > 0 && dot + 1 < name.size();
}

std::string default_helo(std::string_view hostname, std::string_view domain)
{
    if (is_dotted_name(hostname))
        return std::string(hostname);
    if (is_dotted_name(domain))
        return std::string(hostname) + "." + std::string(domain);
    return std::string(hostname);
}

log::destination log_destination_flag(const po::variables_map& flags)
{
    const std::string name = flags["log"].as<std::string>();
    if (const auto where = log::destination_named(name))
        return *where;
    throw po::error("--log takes syslog or stderr, not '" + name + "'");
}

config load_config_file(const fs::path& file, bool must_exist)
{
    po::options_description none;
    const char* argv[] = {"leafmail", "--config", file.c_str()};
    if (!must_exist && !fs::exists(file))
        return parse_command_line(1, argv, none).settings;
    return parse_command_line(3, argv, none).settings;
}

std::string read_trusted_file(const fs::path& file, std::string_view what, file_trust trust)
{
    // A directory would read as empty (every default, allow lists included), a FIFO would
    // block, and procfs, sysfs or a device hold text that whoever runs us can choose.
    const std::string cannot_read = file.string() + ": cannot read " + std::string(what) + ": ";
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        throw config_error(cannot_read + std::strerror(errno));
    struct stat st {};
    struct statfs where {};
    std::string problem;
    if (::fstat(fd, &st) != 0 || ::fstatfs(fd, &where) != 0)
        problem = std::strerror(errno);
    else if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3))
        ; // /dev/null: "none", the one device whose content nobody chooses
    else if (!S_ISREG(st.st_mode))
        problem = S_ISDIR(st.st_mode) ? "a directory, not a file" : "not a regular file";
    else if (where.f_type == PROC_SUPER_MAGIC || where.f_type == SYSFS_MAGIC)
        problem = "procfs and sysfs are never configuration";
    // Checked on the descriptor that is read, so a file swapped in after the check is not.
    else if (trust == file_trust::root_only && (st.st_uid != 0 || (st.st_mode & 022) != 0))
        problem = "the setgid injector trusts only a file owned by root and writable by nobody "
                  "else (this one: owner uid " +
                  std::to_string(st.st_uid) + ", writable by " +
                  ((st.st_mode & 022) != 0 ? "group or others" : "its owner only") + ")";
    std::string text;
    if (problem.empty()) {
        char buffer[16384];
        for (;;) {
            const ssize_t n = ::read(fd, buffer, sizeof buffer);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                problem = std::strerror(errno);
                break;
            }
            if (n == 0)
                break;
            text.append(buffer, static_cast<std::size_t>(n));
            if (text.size() > 1024 * 1024) {
                problem = "larger than 1 MiB";
                break;
            }
        }
    }
    ::close(fd);
    if (!problem.empty())
        throw config_error(cannot_read + problem);
    return text;
}

void validate(const config& c, const fs::path& file)
{
    auto where = [&](std::string_view key) {
        return file.empty() ? std::string("command line") : place_in_file(file, key);
    };
    for (const auto& address : c.receiver.listen) {
        const auto split = text::split_host_port(address);
        if (!split || !split->port)
            bad_value(where("listen"), "listen", address, "address:port or [v6-address]:port");
        parse_unsigned(where("listen"), "listen", *split->port, 65535); // 0: any free port
    }
    validate_route(c.relay, where);
    // The admin address replaces local names; a local one would have to be replaced itself.
    if (!c.admin_address.empty() && is_local_address(c.admin_address, c.hostname))
        bad_value(where("admin-address"), "admin-address", c.admin_address,
                  "an address outside this host (not @" + c.hostname + " or @localhost)");
}

} // namespace leafmail
