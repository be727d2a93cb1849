#include "leafmail/list/status_report.hpp"

#include "temp_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

using namespace leafmail;
using namespace leafmail::list;

namespace {

spool::flush_record refused_flush()
{
    spool::flush_record f;
    f.finished_at = 1764600000;
    f.result = "deferred";
    f.summary = "sent 0, deferred 1, failed 0 in 0.01 s";
    f.routes.push_back({"default", "127.0.0.1:9", 1764600000, "failed",
                        "451 4.4.1 cannot connect to 127.0.0.1:9: Connection refused", 0, 1, 0});
    return f;
}

} // namespace

TEST_CASE("the status text names the last flush and each route with its reason")
{
    status_report report;
    report.flush.value = refused_flush();
    std::ostringstream out;
    write_status(out, report, 1764600000 + 65);
    CHECK(out.str() == "last flush: 2025-12-01T14:40:00Z (1m 5s ago): deferred\n"
                       "  sent 0, deferred 1, failed 0 in 0.01 s\n"
                       "  route default via 127.0.0.1:9: failed at 2025-12-01T14:40:00Z\n"
                       "    451 4.4.1 cannot connect to 127.0.0.1:9: Connection refused\n"
                       "watcher: not running\n");
    CHECK(has_news(report));
    CHECK_FALSE(has_news(status_report{}));
}

TEST_CASE("a running watcher's view reads as the operator would say it")
{
    spool::route_view backing{"work", "backing-off", 1, 0, "connection refused"};
    CHECK(describe_route_view(backing) == "backing off (connection refused)");
    backing.until = 1764600000;
    CHECK(describe_route_view(backing).rfind("backing off until ", 0) == 0);
    CHECK(describe_route_view(backing).find(" (connection refused)") != std::string::npos);
    CHECK(describe_route_view({"home", "waiting-for-link", 1, 0, ""}) == "waiting for the link");
    CHECK(describe_route_view({"home", "ok", 1, 0, ""}) == "ok");

    status_report report;
    report.watcher_running = true;
    report.watch.value = spool::watch_record{1764600000, true, {{"home", "ok", 1, 0, ""}}};
    std::ostringstream out;
    write_status(out, report, 1764600000);
    CHECK(out.str() == "last flush: none recorded\nwatcher: running, link up\n  route home: ok\n");
}

TEST_CASE("a spoiled status file is shown as a problem in text and JSON")
{
    status_report report;
    report.flush.problem = "/spool/flush.status: a symlink, not followed";
    std::ostringstream text;
    write_status(text, report, 0);
    CHECK(text.str() == "last flush: unknown\n    /spool/flush.status: a symlink, not followed\n"
                        "watcher: not running\n");
    std::ostringstream json;
    write_status_json(json, report);
    const auto document = nlohmann::json::parse(json.str());
    CHECK(document["last_flush"].is_null());
    CHECK(document["problems"][0] == "/spool/flush.status: a symlink, not followed");
    CHECK(document["watcher"]["running"] == false);
}

TEST_CASE("the status JSON carries every field with ISO 8601 times")
{
    status_report report;
    report.flush.value = refused_flush();
    report.watcher_running = true;
    report.watch.value = spool::watch_record{
        1764600001, false, {{"default", "waiting-for-link", 1764600001, 0, ""}}};
    std::ostringstream out;
    write_status_json(out, report);
    const auto d = nlohmann::json::parse(out.str());
    CHECK(d["last_flush"]["finished_at"] == "2025-12-01T14:40:00Z");
    CHECK(d["last_flush"]["result"] == "deferred");
    const auto& route = d["last_flush"]["routes"][0];
    CHECK(route["route"] == "default");
    CHECK(route["smarthost"] == "127.0.0.1:9");
    CHECK(route["result"] == "failed");
    CHECK(route["deferred"] == 1);
    CHECK(route["reason"] == "451 4.4.1 cannot connect to 127.0.0.1:9: Connection refused");
    CHECK(d["watcher"]["running"] == true);
    CHECK(d["watcher"]["has_link"] == false);
    CHECK(d["watcher"]["routes"][0]["condition"] == "waiting-for-link");
    CHECK(d["watcher"]["routes"][0]["text"] == "waiting for the link");
    CHECK(d["watcher"]["routes"][0]["until"].is_null());
    CHECK(d["problems"].empty());
}

TEST_CASE("the status text escapes control characters and keeps to 80 columns")
{
    status_report report;
    report.flush.value = refused_flush();
    report.flush.value->routes[0].reason =
        "450 4.2.0 \x1b]0;owned\x07 " + std::string(300, 'x') + " greylisted \x1b[2J";
    report.watcher_running = true;
    report.watch.value = spool::watch_record{
        1,
        true,
        {{"default", "backing-off", 1, 1764600000, "421 \x1b[31m " + std::string(90, 'y')}}};
    std::ostringstream out;
    write_status(out, report, 1764600000);
    const std::string text = out.str();
    CHECK(text.find('\x1b') == std::string::npos);
    CHECK(text.find('\x07') == std::string::npos);
    CHECK(text.find("\\x1b]0;owned\\x07") != std::string::npos);
    std::size_t start = 0;
    for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
        INFO(text.substr(start, end - start));
        CHECK(end - start <= 80);
    }
    CHECK(text.find("  route default: backing off until ") != std::string::npos);
    CHECK(text.find("    (421 \\x1b[31m") != std::string::npos);
}

TEST_CASE("read_status reports a stale watcher view as not running")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    s.save_watch_status(spool::watch_record{1, true, {{"default", "ok", 1, 0, ""}}});
    const auto report = read_status(s);
    CHECK_FALSE(report.watcher_running); // nobody holds watch.lock
    std::ostringstream out;
    write_status(out, report, 2);
    CHECK(out.str().find("watcher: not running") != std::string::npos);
    CHECK(out.str().find("route default: ok") == std::string::npos);
    {
        const auto lock = s.try_lock_watcher();
        REQUIRE(lock);
        CHECK(read_status(s).watcher_running);
    }
}
