#include "leafmail/list/status_report.hpp"

#include "leafmail/list/listing.hpp"

#include <nlohmann/json.hpp>

#include <ctime>

namespace leafmail::list {

namespace {

using json = nlohmann::json;

std::string local_clock(std::int64_t unix_seconds)
{
    const auto t = static_cast<std::time_t>(unix_seconds);
    std::tm local{};
    ::localtime_r(&t, &local);
    char text[16];
    std::strftime(text, sizeof text, "%H:%M:%S", &local);
    return text;
}

std::string when(std::int64_t at, std::int64_t now)
{
    if (at <= 0)
        return "never";
    return iso8601_utc(at) + " (" + format_age(now - at) + " ago)";
}

// Every string of a status came from a file the spool's owner can write: the text output
// shows it through fit() and wrapped() (listing.hpp), which escape control characters and keep
// each line within 80 columns, as the listing below it does.
constexpr std::size_t columns = 80;
constexpr std::size_t unbounded = std::string::npos / 2; // for fit(): never cut
constexpr std::string_view reason_indent = "    ";
constexpr std::string_view whole_status = "leafmail-list --status --json shows it whole";

std::string reason_lines(const std::string& reason)
{
    return wrapped(reason, reason_indent, columns - reason_indent.size(), whole_status);
}

json time_or_null(std::int64_t at)
{
    return at > 0 ? json(iso8601_utc(at)) : json(nullptr);
}

} // namespace

status_report read_status(const spool::spool& spool)
{
    status_report report;
    report.flush = spool.load_flush_status();
    report.watch = spool.load_watch_status();
    report.watcher_running = spool.is_watcher_running();
    return report;
}

bool has_news(const status_report& report)
{
    return report.flush.value || !report.flush.problem.empty() || report.watcher_running ||
           !report.watch.problem.empty();
}

std::string describe_route_view(const spool::route_view& view)
{
    if (view.condition == "backing-off") {
        std::string text = "backing off";
        if (view.until > 0)
            text += " until " + local_clock(view.until);
        if (!view.reason.empty())
            text += " (" + view.reason + ")";
        return text;
    }
    if (view.condition == "waiting-for-link")
        return "waiting for the link";
    return view.condition; // "ok", or a word of a newer watcher, shown as it is
}

void write_status(std::ostream& out, const status_report& report, std::int64_t now)
{
    if (!report.flush.problem.empty()) {
        out << "last flush: unknown\n" << reason_lines(report.flush.problem);
    } else if (!report.flush.value) {
        out << "last flush: none recorded\n";
    } else {
        const auto& f = *report.flush.value;
        out << fit("last flush: " + when(f.finished_at, now) + ": " + f.result, columns) << "\n";
        if (!f.summary.empty())
            out << fit("  " + f.summary, columns) << "\n";
        for (const auto& a : f.routes) {
            out << fit("  route " + a.route + " via " + a.smarthost + ": " + a.result + " at " +
                           iso8601_utc(a.at),
                       columns)
                << "\n";
            if (!a.reason.empty())
                out << reason_lines(a.reason);
        }
    }
    if (!report.watcher_running) {
        out << "watcher: not running\n";
        return;
    }
    if (!report.watch.problem.empty()) {
        out << "watcher: running, its view unknown\n" << reason_lines(report.watch.problem);
        return;
    }
    out << "watcher: running";
    if (report.watch.value)
        out << (report.watch.value->has_link ? ", link up" : ", no default route");
    out << "\n";
    if (!report.watch.value)
        return;
    for (const auto& v : report.watch.value->routes) {
        const std::string line = "  route " + v.route + ": " + describe_route_view(v);
        if (const std::string one = fit(line, columns); one == fit(line, unbounded)) {
            out << one << "\n";
            continue;
        }
        // Too long for one line: the reason goes below, wrapped.
        spool::route_view without_reason = v;
        without_reason.reason.clear();
        out << fit("  route " + v.route + ": " + describe_route_view(without_reason), columns)
            << "\n"
            << reason_lines("(" + v.reason + ")");
    }
}

void write_status_json(std::ostream& out, const status_report& report)
{
    json document = json::object();
    json problems = json::array();
    if (!report.flush.problem.empty())
        problems.push_back(report.flush.problem);
    if (report.flush.value) {
        const auto& f = *report.flush.value;
        json routes = json::array();
        for (const auto& a : f.routes)
            routes.push_back({{"route", a.route},
                              {"smarthost", a.smarthost},
                              {"attempted_at", time_or_null(a.at)},
                              {"result", a.result},
                              {"reason", a.reason},
                              {"sent", a.sent},
                              {"deferred", a.deferred},
                              {"failed", a.failed}});
        document["last_flush"] = {{"finished_at", time_or_null(f.finished_at)},
                                  {"result", f.result},
                                  {"summary", f.summary},
                                  {"routes", routes}};
    } else {
        document["last_flush"] = nullptr;
    }
    json watcher = {{"running", report.watcher_running}};
    if (report.watcher_running && !report.watch.problem.empty())
        problems.push_back(report.watch.problem);
    if (report.watcher_running && report.watch.value) {
        const auto& w = *report.watch.value;
        json routes = json::array();
        for (const auto& v : w.routes)
            routes.push_back({{"route", v.route},
                              {"condition", v.condition},
                              {"since", time_or_null(v.since)},
                              {"until", time_or_null(v.until)},
                              {"reason", v.reason},
                              {"text", describe_route_view(v)}});
        watcher["updated_at"] = time_or_null(w.updated_at);
        watcher["has_link"] = w.has_link;
        watcher["routes"] = routes;
    }
    document["watcher"] = watcher;
    document["problems"] = problems;
    out << document.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

} // namespace leafmail::list
