#include "leafmail/list/list_command.hpp"

#include "leafmail/config.hpp"
#include "leafmail/exit_status.hpp"
#include "leafmail/list/listing.hpp"
#include "leafmail/list/queue_actions.hpp"
#include "leafmail/list/status_report.hpp"
#include "leafmail/privileges.hpp"
#include "leafmail/routes.hpp"
#include "leafmail/spool/queue_id.hpp"
#include "leafmail/text.hpp"

#include <boost/program_options.hpp>

#include <cerrno>
#include <ctime>
#include <iostream>
#include <optional>
#include <sysexits.h>

namespace leafmail::list {

namespace po = boost::program_options;

namespace {

constexpr int unknown_entry = EX_NOINPUT; // 66: an id that names no entry

std::optional<queue_action> chosen_action(const po::variables_map& flags)
{
    std::optional<queue_action> action;
    const std::pair<const char*, queue_action> names[] = {{"delete", queue_action::remove},
                                                          {"hold", queue_action::hold},
                                                          {"release", queue_action::release},
                                                          {"requeue", queue_action::requeue}};
    for (const auto& [name, value] : names) {
        if (!flags[name].as<bool>())
            continue;
        if (action)
            throw po::error("give only one of --delete, --hold, --release, --requeue");
        action = value;
    }
    return action;
}

int run_actions(spool::spool& spool, queue_action action, const std::vector<std::string>& ids)
{
    if (ids.empty())
        throw po::error(std::string("--") + std::string(to_string(action)) +
                        " needs at least one queue id");
    int status = exit_status::ok;
    bool any_permanent = false;
    for (const auto& id : ids) {
        const auto result = apply_action(spool, action, id, std::time(nullptr));
        if (result.ok) {
            std::cout << result.message << "\n";
            continue;
        }
        std::cerr << "leafmail-list: " << result.message << "\n";
        any_permanent = any_permanent || !result.is_transient;
        status = any_permanent ? unknown_entry : exit_status::temp_fail;
    }
    return status;
}

// The route the flush would choose for each readable entry (decided by its sender).
void name_routes(std::vector<listed_entry>& entries, const config& settings)
{
    for (auto& e : entries)
        if (e.envelope)
            e.route = route_name_for_sender(settings, e.envelope->reverse_path);
}

int show_entries(spool::spool& spool, const std::vector<std::string>& ids, bool json,
                 const config& settings)
{
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    std::vector<listed_entry> found;
    std::vector<std::string> headers;
    int status = exit_status::ok;
    for (const auto& id : ids) {
        auto entry = find_entry(spool, id);
        if (!entry) {
            std::cerr << "leafmail-list: " << id << ": "
                      << (spool::is_valid_queue_id(id) ? "no such entry" : "not a queue id")
                      << "\n";
            status = unknown_entry;
            continue;
        }
        std::string header;
        if (entry->envelope) {
            try {
                header = read_message_header(spool, entry->where, entry->id);
            } catch (const std::exception& e) {
                header.clear(); // vanished or unreadable since: the envelope is still worth showing
            }
        }
        found.push_back(std::move(*entry));
        headers.push_back(std::move(header));
    }
    name_routes(found, settings);
    if (json) {
        write_json(std::cout, found, now, headers);
    } else {
        for (std::size_t i = 0; i < found.size(); ++i) {
            if (i > 0)
                std::cout << "\n";
            write_details(std::cout, found[i], headers[i], now);
        }
    }
    return status;
}

} // namespace

program list_program()
{
    program p;
    p.name = "leafmail-list";
    p.usage = "Usage: leafmail-list [options] [ID...]\n"
              "Shows the spool (as mailq does) and manages its entries.\n"
              "  leafmail-list                      every entry, oldest first, and a summary\n"
              "  leafmail-list ID...                full envelope and message header of entries\n"
              "  leafmail-list --json [ID...]       the same as one JSON document\n"
              "  leafmail-list --status [--json]    only the last flush and the watcher, per "
              "route\n"
              "  leafmail-list --delete|--hold|--release|--requeue ID...\n";
    p.flags.add_options()(
        "json", po::bool_switch(),
        "print one JSON array instead of text (see leafmail-list(8) for the fields)")(
        "status", po::bool_switch(),
        "show only the spool-wide status: the last flush per route and the watcher's view")(
        "area", po::value<std::vector<std::string>>()->value_name("AREA"),
        "list only this area: queued, held, failed or corrupt; repeatable")(
        "delete", po::bool_switch(), "delete the entries named by ID... for good")(
        "hold", po::bool_switch(), "move queued entries ID... to hold (leafmail-flush skips them)")(
        "release", po::bool_switch(), "move held entries ID... back to the queue")(
        "requeue", po::bool_switch(),
        "put entries ID... (failed ones) back in the queue: failed recipients "
        "pending again, attempts reset")(
        "id", po::value<std::vector<std::string>>()->value_name("ID"),
        "queue ids: show their full envelope and message header, or act on them");
    static const po::positional_options_description ids = [] {
        po::positional_options_description positional;
        positional.add("id", -1);
        return positional;
    }();
    p.positional = &ids;
    p.keys = config_keys::list;
    p.status_of_system_error = [](const std::system_error& e) {
        if (dynamic_cast<const spool::missing_spool*>(&e))
            return exit_status::config; // the message says what creates it
        const int code = e.code().value();
        if (code == EACCES || code == EPERM)
            return exit_status::no_permission;
        return code == ENOENT ? EX_NOINPUT : exit_status::cant_create;
    };
    return p;
}

int run_list(const program_context& context)
{
    const auto& parsed = context.parsed;
    const std::optional<queue_action> action = chosen_action(parsed.flags);
    std::vector<spool::area> areas;
    if (parsed.flags.count("area"))
        for (const auto& name : parsed.flags["area"].as<std::vector<std::string>>()) {
            const auto area = area_from_label(name);
            if (!area)
                throw po::error("--area takes queued, held, failed or corrupt, not '" + name + "'");
            areas.push_back(*area);
        }
    const bool json = parsed.flags["json"].as<bool>();
    const bool status_only = parsed.flags["status"].as<bool>();
    if (action && json)
        throw po::error("--json lists; it does not go with --" + std::string(to_string(*action)));
    if (action && status_only)
        throw po::error("--status shows; it does not go with --" + std::string(to_string(*action)));
    const std::vector<std::string> ids = parsed.flags.count("id")
                                             ? parsed.flags["id"].as<std::vector<std::string>>()
                                             : std::vector<std::string>{};
    if (status_only && (!ids.empty() || !areas.empty()))
        throw po::error("--status shows the spool-wide status; it takes no ID and no --area");

    // Root works in the spool only as its owner (state files stay the owner's); a spool
    // owned by someone else than the configured user is a spool_owner_error (78).
    become_spool_owner(parsed.settings.spool, parsed.settings.receiver.user);
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    if (!action && ids.empty() && spool::has_no_areas(parsed.settings.spool)) {
        // Made (by mkdir or install) but never used: nothing is queued, nothing was flushed.
        if (status_only && json)
            write_status_json(std::cout, {});
        else if (status_only)
            write_status(std::cout, {}, now);
        else
            std::cout << (json ? "[]" : "spool is empty") << std::endl;
        return exit_status::ok;
    }
    spool::spool spool(parsed.settings.spool, false);
    if (action)
        return run_actions(spool, *action, ids);
    if (!ids.empty())
        return show_entries(spool, ids, json, parsed.settings);
    if (status_only) {
        const status_report report = read_status(spool);
        if (json)
            write_status_json(std::cout, report);
        else
            write_status(std::cout, report, now);
        std::cout.flush();
        return std::cout ? exit_status::ok : exit_status::io_error;
    }
    scan_options options;
    if (!areas.empty())
        options.areas = areas;
    auto entries = scan_spool(spool, options);
    name_routes(entries, parsed.settings);
    for (const auto& e : entries)
        if (e.was_quarantined)
            std::cerr << "leafmail-list: warning: moved unreadable entry " << e.id
                      << " to corrupt/: " << text::escape_controls(e.problem) << "\n";
    std::ios::sync_with_stdio(false);
    if (json) {
        write_json(std::cout, entries, now);
    } else {
        // Why mail waits comes first (issue 11): the last flush and the watcher, once there
        // is anything to say.
        if (const status_report report = read_status(spool); has_news(report)) {
            write_status(std::cout, report, now);
            std::cout << "\n";
        }
        write_listing(std::cout, entries, now);
    }
    std::cout.flush();
    return std::cout ? exit_status::ok : exit_status::io_error;
}

} // namespace leafmail::list
