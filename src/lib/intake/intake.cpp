#include "leafmail/intake/intake.hpp"

#include "leafmail/exit_status.hpp"
#include "leafmail/trace.hpp"

#include <cerrno>
#include <unordered_set>

namespace leafmail::intake {

std::string_view to_string(origin from)
{
    switch (from) {
    case origin::smtp:
        return "smtp";
    case origin::local:
        return "local";
    case origin::dsn:
        return "dsn";
    }
    return "smtp";
}

source local_source(unsigned uid, std::string login)
{
    source s;
    s.from = origin::local;
    s.uid = uid;
    s.login = std::move(login);
    return s;
}

recipient_expansion expand_recipients(const local_recipients& rules,
                                      const std::vector<std::string>& given)
{
    recipient_expansion out;
    std::unordered_set<std::string> known; // max-recipients may be large: no quadratic search
    for (const auto& address : given) {
        auto resolved = resolve_recipient(rules, address);
        if (!resolved.refusal.empty()) {
            out.recipients.clear();
            out.refused = address;
            out.refusal = std::move(resolved.refusal);
            return out;
        }
        const bool is_rewritten =
            resolved.addresses.size() != 1 || resolved.addresses.front() != address;
        for (auto& target : resolved.addresses) {
            // root and postmaster both aliased to one person: one copy, the first original.
            if (known.insert(target).second)
                out.recipients.push_back({std::move(target), is_rewritten ? address : ""});
        }
    }
    return out;
}

std::vector<accepted_recipient> as_given(const std::vector<std::string>& addresses)
{
    std::vector<accepted_recipient> out;
    for (const auto& address : addresses)
        out.push_back({address, ""});
    return out;
}

failure_class classify(const std::system_error& error)
{
    // No spool at all is the installation's to fix (the message says how), not a failure
    // worth retrying: 78, as leafmail-flush and leafmail-list say it.
    if (dynamic_cast<const spool::missing_spool*>(&error))
        return {outcome::local_error, exit_status::config};
    const auto& category = error.code().category();
    if (category != std::generic_category() && category != std::system_category())
        return {outcome::local_error, exit_status::cant_create};
    switch (error.code().value()) {
    case ENOSPC: // the disk, or our own free-space floor
    case EDQUOT:
    case EFBIG: // RLIMIT_FSIZE: a limit on this message, not a broken spool
        return {outcome::insufficient_storage, exit_status::temp_fail};
    case ENFILE:
    case EMFILE:
    case ENOMEM:
        return {outcome::local_error, exit_status::temp_fail};
    case EACCES:
    case EPERM:
        return {outcome::local_error, exit_status::no_permission};
    case EIO:
        return {outcome::local_error, exit_status::io_error};
    default:
        return {outcome::local_error, exit_status::cant_create};
    }
}

new_entry begin_entry(spool::spool& spool, const intake_limits& limits, const source& from,
                      std::string reverse_path, const std::vector<accepted_recipient>& recipients,
                      std::time_t now)
{
    // OpenSMTPD's rule: below the floor, refuse new mail before the disk is full, so what
    // is already queued can still have its state recorded.
    if (spool.free_bytes() < limits.min_free_space)
        throw std::system_error(ENOSPC, std::generic_category(), "free space below min-free-space");
    spool::entry_writer writer = spool.create_entry();

    spool::envelope env;
    env.origin = std::string(to_string(from.from));
    env.queued_at = static_cast<std::int64_t>(now);
    env.reverse_path = std::move(reverse_path);
    for (const auto& given : recipients) {
        spool::recipient r;
        r.address = given.address;
        r.original_address = given.original;
        env.recipients.push_back(std::move(r));
    }

    if (from.from != origin::dsn) {
        received_fields trace;
        trace.hostname = limits.hostname;
        trace.queue_id = writer.id();
        // The recipient as the sender gave it: the trace line records what was handed over.
        if (recipients.size() == 1)
            trace.recipient = recipients.front().original.empty() ? recipients.front().address
                                                                  : recipients.front().original;
        trace.when = now;
        if (from.from == origin::smtp) {
            trace.helo = from.helo;
            trace.client_address = from.client_address;
            trace.protocol = from.is_esmtp ? "ESMTP" : "SMTP";
            env.client_address = from.client_address;
            env.helo_name = from.helo;
        } else {
            // Every local submission names its submitter, whatever the mode (-bs included).
            trace.local_user = from.login;
            trace.protocol = "local";
            env.client_address = "uid=" + std::to_string(from.uid);
            env.helo_name = from.helo;
        }
        writer.write(received_header(trace));
    }
    return new_entry(std::move(writer), std::move(env));
}

} // namespace leafmail::intake
