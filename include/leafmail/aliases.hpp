#pragma once
// Local mail that reaches a person: the `aliases` file (/etc/aliases syntax) and
// `admin-address`. A local recipient (no domain, or the domain is our hostname or localhost)
// is replaced by its aliases, else by admin-address. Pure: parsing and resolving touch no
// file; load_aliases() is the one function that reads one, with the configuration's trust
// rules (the setgid injector honours only root's file).
#include "leafmail/config.hpp"

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail {

/// One problem in an aliases file, with its 1-based line.
struct alias_problem {
    std::size_t line = 0;
    std::string message;
};

/// name (lower case) -> targets, in file order.
struct alias_table {
    std::map<std::string, std::vector<std::string>, std::less<>> entries;
};

struct alias_parse_result {
    alias_table table;
    std::vector<alias_problem> problems; // empty: the file is good
};

/// Parses /etc/aliases syntax: `name: target, target`; '#' comments; a line starting with a
/// blank continues the previous entry. Targets are addresses or local names; `|command`,
/// `/file` and `:include:` are refused (leafmail delivers nothing locally). Also reports alias
/// loops and chains deeper than max_alias_depth, following targets local to `hostname`.
[[nodiscard]] alias_parse_result parse_aliases(std::string_view text, std::string_view hostname);

/// Reads and parses `file` (read_trusted_file() with `trust`). Throws config_error when it
/// cannot be read or may not be trusted.
[[nodiscard]] alias_parse_result load_aliases(const std::filesystem::path& file,
                                              std::string_view hostname, file_trust trust);

/// "FILE:LINE: message" for each problem, one per line, the first `max_lines` of them.
[[nodiscard]] std::string describe_problems(const std::filesystem::path& file,
                                            const std::vector<alias_problem>& problems,
                                            std::size_t max_lines = 20);

/// Reads settings.aliases_file, when set, into settings.aliases. A file with problems is a
/// configuration error as a bad leafmail.conf is (newaliases names them all). Throws
/// config_error.
void load_aliases_for(config& settings, file_trust trust);

/// Alias chains longer than this are an error (sendmail's own limit is similar).
inline constexpr std::size_t max_alias_depth = 10;

/// Whether an address is local: no domain, or `hostname` or `localhost` as the domain
/// (case-insensitive). The mail `domain` is not local: colleagues have mailboxes there.
[[nodiscard]] bool is_local_address(std::string_view address, std::string_view hostname);

struct local_recipients {
    std::shared_ptr<const alias_table> aliases; // null: no aliases file
    std::string admin_address;                  // empty: none
    std::string hostname;
};

struct resolved_recipient {
    std::vector<std::string> addresses; // what to relay to; empty when refused
    std::string refusal;                // why it is refused (no alias, no admin-address, a loop)
};

/// Resolves one recipient: a non-local address is returned unchanged; a local one is
/// replaced by its aliases (followed through local targets), each local name without an
/// alias by admin_address, and refused when there is neither.
[[nodiscard]] resolved_recipient resolve_recipient(const local_recipients& rules,
                                                   std::string_view address);

/// The rules of a configuration (after load_aliases_for()).
[[nodiscard]] local_recipients local_recipients_of(const config& settings);

} // namespace leafmail
