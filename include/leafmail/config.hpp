#pragma once
// Configuration of every leafmail program: one INI-style file (default /etc/leafmail.conf)
// read with Boost.Program_options, where every key is also a command-line flag of the same
// name. Bad keys or values stop the program at start with file, line and key named.
#include "leafmail/access.hpp"
#include "leafmail/log.hpp"
#include "leafmail/smtp/client_tls.hpp"
#include "leafmail/watch/auto_connect.hpp"

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/positional_options.hpp>
#include <boost/program_options/variables_map.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail {

struct alias_table; // aliases.hpp

inline constexpr const char* default_config_path = "/etc/leafmail.conf";

/// Thrown for any configuration problem; what() names the file, line and key when known.
class config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct receiver_settings {
    std::vector<std::string> listen{"127.0.0.1:25"}; // host:port, [v6]:port; port 0 = any free
    access_list access = access_list::loopback_only();
    std::uint64_t max_message_size = 25 * 1024 * 1024;
    std::size_t max_recipients = 100;
    std::size_t max_connections = 100;
    std::chrono::seconds idle_timeout{300}; // RFC 5321 4.5.3.2.7: at least 5 minutes
    std::size_t max_bad_commands = 20;
    std::uint64_t min_free_space = 64 * 1024 * 1024; // refuse new mail (452) below this
    std::size_t fsync_workers = 16;                  // threads that run fsync off the event loop
    std::chrono::seconds shutdown_grace{30};         // SIGTERM: time left to sessions in flight
    std::string user;                                // drop to this user after binding (as root)
};

struct relay_settings {
    std::string smarthost; // host[:port]; empty = not configured
    smtp::client_tls tls = smtp::client_tls::starttls;
    bool tls_verify = true;                   // peer certificate and host name (SNI sent)
    std::filesystem::path ca_file;            // extra CA besides the system store
    std::string auth_user;                    // empty = no AUTH
    std::filesystem::path auth_password_file; // must not be readable by group or others
    std::string auth_password_command;        // sh -c; first stdout line is the password
    std::string auth_token_command;           // sh -c; first stdout line is an OAuth 2.0 token
    std::vector<std::string> auth_mechanisms; // upper case, preferred first; empty = default
    bool auth_over_plaintext = false;         // AUTH without TLS only when said explicitly
    std::string helo;                         // default: hostname
    std::chrono::seconds connect_timeout{30};
    std::chrono::seconds timeout{300};      // each command reply, RFC 5321 4.5.3.2
    std::chrono::seconds data_timeout{600}; // final dot reply, RFC 5321 4.5.3.2.6
    std::size_t max_messages_per_connection = 1000;
    // RFC 5321 section 4.5.3.1.8: a server must take 100 recipients per transaction; more
    // may be refused with 452, so leafmail splits before it has to.
    std::size_t max_recipients_per_transaction = 100;
    std::size_t connections = 1; // parallel smarthost connections
    std::chrono::seconds max_queue_age{5 * 24 * 3600};
    std::string rewrite_sender; // envelope sender for local senders; empty = unchanged
    bool rewrite_from = false;  // also a local From: header, display name kept
    // The watcher (leafmail-flush --watch): retry and probe backoff, and when it may connect.
    std::chrono::seconds retry_min{60};
    std::chrono::seconds retry_max{3600};
    watch::auto_connect auto_connect = watch::auto_connect::always;
    std::chrono::seconds warn_after{4 * 3600}; // one "delayed" notice after this; 0 = none

    /// The port to use: the one in smarthost, else 25 / 587 / 465 by tls mode.
    [[nodiscard]] std::string host() const;
    [[nodiscard]] std::uint16_t port() const;
};

/// One `senders` pattern of a route: `user@example.org` (local set) or `@example.org`.
struct sender_pattern {
    std::string local;  // empty: every sender of the domain
    std::string domain; // lower case
};

inline constexpr const char* default_route_name = "default";

/// A `[route NAME]` section: a smarthost with everything needed to use it, and the envelope
/// senders whose mail goes through it.
struct route {
    std::string name;
    std::vector<sender_pattern> senders;
    relay_settings relay;
};

struct config {
    std::filesystem::path spool{"/var/spool/leafmail"};
    std::string hostname; // default: the system's host name
    std::string domain;   // for sendmail's default sender; default hostname
    receiver_settings receiver;
    relay_settings relay;      // the top-level keys: the default route
    std::vector<route> routes; // [route NAME] sections, in file order
    // Local recipients (aliases.hpp): the aliases file, the address for local names without
    // an alias, and the table read from the file (load_aliases_for(); null until then).
    std::filesystem::path aliases_file;
    std::string admin_address;
    std::shared_ptr<const alias_table> aliases;
};

/// The programs that read each configuration key. The file may hold every key (one file
/// serves all programs) and every key is accepted as a flag, but a program's --help lists only
/// the keys it uses.
namespace config_keys {
inline constexpr unsigned daemon = 1;   // leafmaild
inline constexpr unsigned flush = 2;    // leafmail-flush
inline constexpr unsigned list = 4;     // leafmail-list
inline constexpr unsigned sendmail = 8; // leafmail-sendmail
inline constexpr unsigned all = daemon | flush | list | sendmail;
} // namespace config_keys

/// The configuration keys used by `programs` (config_keys:: bits), for help texts.
[[nodiscard]] boost::program_options::options_description
config_options(unsigned programs = config_keys::all);

/// Parses a command line whose tool-specific flags are in `tool_flags`, plus every
/// configuration key as a flag, then the configuration file (from --config, default path;
/// a missing default file is fine, a missing named one is an error). Command-line values win.
/// Returns the variables map for the tool flags. The help text lists the keys of
/// `shown_keys` (config_keys:: bits); the others are accepted but not shown. Throws config_error
/// (exit 78) for file problems and boost::program_options::error for command-line ones (exit 64).
struct parsed_command_line {
    boost::program_options::variables_map flags;
    config settings;
    std::filesystem::path config_file; // the file that was read, empty if none
    std::string help;                  // --help text: general, tool and configuration flags
};
[[nodiscard]] parsed_command_line parse_command_line(
    int argc, const char* const argv[],
    const boost::program_options::options_description& tool_flags,
    const boost::program_options::positional_options_description* positional = nullptr,
    unsigned shown_keys = config_keys::all);

/// The value of a tool's --log flag. Throws boost::program_options::error (a usage error)
/// for anything but "syslog" or "stderr".
[[nodiscard]] log::destination
log_destination_flag(const boost::program_options::variables_map& flags);

/// Reads only a configuration file (for tools with a command line of their own, such as
/// leafmail-sendmail). A missing file is an error only when must_exist.
[[nodiscard]] config load_config_file(const std::filesystem::path& file, bool must_exist);

/// True when name has a dot between two labels, the least a smarthost takes for the fully
/// qualified name RFC 5321 section 4.1.1.1 wants in EHLO. Address literals ("[...]") count.
[[nodiscard]] bool is_dotted_name(std::string_view name);

/// The EHLO name when `helo` is not set: hostname when it is dotted, else hostname + "." +
/// domain when domain is dotted, else hostname as it is (a flush then warns). No DNS.
[[nodiscard]] std::string default_helo(std::string_view hostname, std::string_view domain);

/// How much a file read by read_trusted_file() must prove about who wrote it.
enum class file_trust {
    any_owner, // a regular file on a real filesystem is enough
    root_only, // also owned by root and writable by nobody else (the setgid injector's rule)
};

/// The text of a configuration-like file (leafmail.conf, the aliases file), read from a
/// descriptor that is a regular file on a real filesystem: a directory, FIFO, device (but
/// /dev/null, read as empty), procfs or sysfs file is refused, and so is one over 1 MiB.
/// `what` names the file in errors. Throws config_error.
[[nodiscard]] std::string read_trusted_file(const std::filesystem::path& file,
                                            std::string_view what, file_trust trust);

/// Checks values that need more than a type (ports, files). Throws config_error.
void validate(const config& settings, const std::filesystem::path& file);

} // namespace leafmail
