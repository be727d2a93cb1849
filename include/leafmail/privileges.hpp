#pragma once
// Giving up root: after binding, a daemon started as root becomes the configured user, with
// that user's group and no supplementary groups. Throws std::system_error naming the step.
#include <filesystem>
#include <string>

namespace leafmail {

struct user_ids {
    unsigned uid = 0;
    unsigned gid = 0;
};

/// Looks the user up in the password database. Throws std::system_error if unknown.
[[nodiscard]] user_ids lookup_user(const std::string& name);
/// Makes the spool tree owned by the user (only what is not already), so it can work there.
void hand_over_spool(const std::filesystem::path& spool_root, user_ids to);
/// setgroups(0), setgid, setuid, then checks that root cannot be regained.
void drop_privileges(user_ids to);

} // namespace leafmail
