#include "leafmail/privileges.hpp"

#include <cerrno>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace leafmail {

namespace {

std::optional<passwd> find_user(const std::string& name, std::vector<char>& buffer)
{
    passwd entry{};
    passwd* found = nullptr;
    const int error = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (error != 0)
        throw std::system_error(error, std::generic_category(), "cannot look up user " + name);
    if (!found)
        return std::nullopt;
    return entry;
}

} // namespace

user_ids lookup_user(const std::string& name)
{
    std::vector<char> buffer(16384);
    const auto entry = find_user(name, buffer);
    if (!entry)
        throw std::system_error(ENOENT, std::generic_category(), "cannot find user " + name);
    return {entry->pw_uid, entry->pw_gid};
}

std::optional<user_ids> spool_owner_for_root(const std::filesystem::path& spool_root,
                                             const std::string& configured_user)
{
    struct stat st {};
    const bool exists = ::stat(spool_root.c_str(), &st) == 0;
    if (!exists && errno != ENOENT)
        throw std::system_error(errno, std::generic_category(),
                                "cannot stat spool directory " + spool_root.string());
    if (!configured_user.empty()) {
        const user_ids user = lookup_user(configured_user);
        if (exists && st.st_uid != user.uid)
            throw spool_owner_error(
                "the spool " + spool_root.string() + " belongs to uid " +
                std::to_string(st.st_uid) + ", not to the configured user " + configured_user +
                " (uid " + std::to_string(user.uid) +
                "); refusing to work in it (a spool owned by root is handed over once with "
                "leafmaild --setup-spool)");
        return user.uid == 0 ? std::nullopt : std::optional<user_ids>(user);
    }
    if (!exists || st.st_uid == 0)
        return std::nullopt;
    // The owner's own group when it has an account, else the spool's group.
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* found = nullptr;
    if (::getpwuid_r(st.st_uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found)
        return user_ids{st.st_uid, entry.pw_gid};
    return user_ids{st.st_uid, st.st_gid};
}

account_names names_of_uid(unsigned uid)
{
    account_names names;
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* found = nullptr;
    if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found) {
        names.login = entry.pw_name;
        const std::string gecos = entry.pw_gecos ? entry.pw_gecos : "";
        names.full_name = gecos.substr(0, gecos.find(','));
    } else {
        names.login = "uid" + std::to_string(uid);
    }
    return names;
}

std::optional<user_ids> become_spool_owner(const std::filesystem::path& spool_root,
                                           const std::string& configured_user)
{
    if (::geteuid() != 0)
        return std::nullopt;
    const auto owner = spool_owner_for_root(spool_root, configured_user);
    if (owner)
        drop_privileges(*owner);
    return owner;
}

void drop_privileges(user_ids to)
{
    if (::setgroups(0, nullptr) != 0)
        throw std::system_error(errno, std::generic_category(), "cannot drop supplementary groups");
    if (::setresgid(to.gid, to.gid, to.gid) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "cannot set group id " + std::to_string(to.gid));
    if (::setresuid(to.uid, to.uid, to.uid) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "cannot set user id " + std::to_string(to.uid));
    if (to.uid != 0 && ::setuid(0) == 0)
        throw std::system_error(EPERM, std::generic_category(),
                                "root privileges could be regained");
}

} // namespace leafmail
