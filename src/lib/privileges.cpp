#include "leafmail/privileges.hpp"

#include <cerrno>
#include <grp.h>
#include <pwd.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace leafmail {

user_ids lookup_user(const std::string& name)
{
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* found = nullptr;
    const int error = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (error != 0)
        throw std::system_error(error, std::generic_category(), "cannot look up user " + name);
    if (!found)
        throw std::system_error(ENOENT, std::generic_category(), "cannot find user " + name);
    return {entry.pw_uid, entry.pw_gid};
}

void hand_over_spool(const std::filesystem::path& spool_root, user_ids to)
{
    std::vector<std::filesystem::path> paths{spool_root};
    std::error_code ec;
    for (const auto& item : std::filesystem::recursive_directory_iterator(spool_root, ec))
        paths.push_back(item.path());
    for (const auto& path : paths)
        if (::lchown(path.c_str(), to.uid, to.gid) != 0)
            throw std::system_error(errno, std::generic_category(),
                                    "cannot chown " + path.string());
}

void drop_privileges(user_ids to)
{
    if (::setgroups(0, nullptr) != 0)
        throw std::system_error(errno, std::generic_category(), "cannot drop supplementary groups");
    if (::setgid(to.gid) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "cannot set group id " + std::to_string(to.gid));
    if (::setuid(to.uid) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "cannot set user id " + std::to_string(to.uid));
    if (to.uid != 0 && ::setuid(0) == 0)
        throw std::system_error(EPERM, std::generic_category(),
                                "root privileges could be regained");
}

} // namespace leafmail
