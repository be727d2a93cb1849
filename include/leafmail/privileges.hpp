#pragma once
// Who works inside the spool: its owner, never root. A program started as root becomes the
// spool's owner (the configured user, else the owner of the spool directory) before it opens
// anything there, and refuses a spool that belongs to someone else. Throws std::system_error
// naming the step, or spool_owner_error (a configuration problem, exit 78).
#include "leafmail/config.hpp"

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace leafmail {

struct user_ids {
    unsigned uid = 0;
    unsigned gid = 0;
};

/// The spool belongs to another account than the one configured to own it: a
/// configuration problem (exit 78 through every program's runner).
class spool_owner_error : public config_error {
public:
    using config_error::config_error;
};

/// An account as the password database names it.
struct account_names {
    std::string login;     // "uid1234" when the uid has no entry
    std::string full_name; // the first GECOS field, may be empty
};
[[nodiscard]] account_names names_of_uid(unsigned uid);

/// Looks the user up in the password database. Throws std::system_error if unknown.
[[nodiscard]] user_ids lookup_user(const std::string& name);

/// Whom a root process must become to work in the spool at `spool_root`: the configured
/// user (whose uid must own an existing spool), else the owner of the spool directory;
/// nullopt when that is root itself (a spool root owns, or a missing spool without a user).
/// Throws spool_owner_error when the spool belongs to someone else than the configured user.
[[nodiscard]] std::optional<user_ids> spool_owner_for_root(const std::filesystem::path& spool_root,
                                                           const std::string& configured_user);

/// When running as root: becomes the spool's owner (see spool_owner_for_root). Does
/// nothing for anyone else. Returns the ids switched to.
std::optional<user_ids> become_spool_owner(const std::filesystem::path& spool_root,
                                           const std::string& configured_user);

/// setgroups(0), setgid, setuid, then checks that root cannot be regained.
void drop_privileges(user_ids to);

} // namespace leafmail
