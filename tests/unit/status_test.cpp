#include "leafmail/spool/status.hpp"

#include "leafmail/spool/spool.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace leafmail::spool;
namespace fs = std::filesystem;
using leafmail::test::file_bytes;
using leafmail::test::write_file;

namespace {

flush_record sample_flush()
{
    flush_record f;
    f.finished_at = 1764600000;
    f.result = "deferred";
    f.summary = "sent 1, deferred 2, failed 0 in 0.12 s";
    f.routes.push_back({"work", "smtp.work.test:587", 1764600000, "failed",
                        "451 4.4.1 cannot connect to smtp.work.test:587: Connection refused", 0, 2,
                        0});
    f.routes.push_back({"default", "smtp.home.test:465", 1764599990, "ok", "", 1, 0, 0});
    return f;
}

watch_record sample_watch()
{
    watch_record w;
    w.updated_at = 1764600001;
    w.has_link = true;
    w.routes.push_back({"work", "backing-off", 1764600000, 1764600060, "connection refused"});
    w.routes.push_back({"default", "ok", 1764599000, 0, ""});
    return w;
}

} // namespace

TEST_CASE("a flush record and a watch record read back as written")
{
    const auto f = decode_flush_record(encode_flush_record(sample_flush()));
    CHECK(f.problem.empty());
    REQUIRE(f.value);
    CHECK(*f.value == sample_flush());
    const auto w = decode_watch_record(encode_watch_record(sample_watch()));
    CHECK(w.problem.empty());
    REQUIRE(w.value);
    CHECK(*w.value == sample_watch());
}

TEST_CASE("a reason is kept to one bounded line")
{
    CHECK(one_line("421 4.3.2 going down\r\nsecond line") == "421 4.3.2 going down");
    CHECK(one_line(std::string(5000, 'x')).size() == max_status_text);
    flush_record f = sample_flush();
    f.routes[0].reason = "bad\x1b[2Jreason\nmore";
    const auto back = decode_flush_record(encode_flush_record(f));
    REQUIRE(back.value);
    // Controls are kept for the outputs to escape (JSON as \u001b, text as \x1b).
    CHECK(back.value->routes[0].reason == "bad\x1b[2Jreason");
}

TEST_CASE("malformed status text is a problem and never an exception")
{
    const std::string cases[] = {
        "",
        "not json",
        "[1,2,3]",
        "{\"version\":2,\"finished_at\":1,\"result\":\"ok\",\"summary\":\"\",\"routes\":[]}",
        "{\"version\":1,\"finished_at\":\"yesterday\",\"result\":\"ok\",\"summary\":\"\","
        "\"routes\":[]}",
        "{\"version\":1,\"finished_at\":-5,\"result\":\"ok\",\"summary\":\"\",\"routes\":[]}",
        "{\"version\":1,\"finished_at\":1,\"result\":\"ok\",\"summary\":\"\",\"routes\":[7]}",
        "{\"version\":1,\"finished_at\":1,\"result\":\"ok\",\"summary\":\"\",\"routes\":{}}",
        "{\"version\":1,\"finished_at\":1,\"result\":\"ok\",\"summary\":\"\"}",
        "{\"version\":1,\"finished_at\":18446744073709551615,\"result\":\"ok\",\"summary\":\"\","
        "\"routes\":[]}",
        "{\"version\":1,\"finished_at\":1,\"result\":\"" + std::string(5000, 'a') +
            "\",\"summary\":\"\",\"routes\":[]}",
        std::string(100000, '['),
        "{\"version\":1,\"finished_at\":1,\"result\":\"ok\",\"summary\":\"\",\"routes\":[" +
            std::string(20000, '[') + "]}",
    };
    for (const auto& text : cases) {
        INFO(text.substr(0, 120));
        const auto f = decode_flush_record(text);
        CHECK_FALSE(f.value);
        CHECK_FALSE(f.problem.empty());
        const auto w = decode_watch_record(text);
        CHECK_FALSE(w.value);
        CHECK_FALSE(w.problem.empty());
    }
    std::string many = "{\"version\":1,\"finished_at\":1,\"result\":\"ok\",\"summary\":\"\","
                       "\"routes\":[";
    for (std::size_t i = 0; i <= max_status_routes; ++i)
        many += std::string(i ? "," : "") +
                "{\"route\":\"r\",\"smarthost\":\"h\",\"at\":1,\"result\":\"ok\",\"reason\":\"\","
                "\"sent\":0,\"deferred\":0,\"failed\":0}";
    many += "]}";
    CHECK(decode_flush_record(many).problem.find("at most") != std::string::npos);
}

TEST_CASE("the spool writes the status files atomically and reads them back")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path() / "spool");
    CHECK_FALSE(s.load_flush_status().value);
    CHECK(s.load_flush_status().problem.empty()); // no flush yet: neither value nor problem
    s.save_flush_status(sample_flush());
    s.save_watch_status(sample_watch());
    CHECK(s.load_flush_status().value == sample_flush());
    CHECK(s.load_watch_status().value == sample_watch());
    struct stat st {};
    REQUIRE(::stat((dir.path() / "spool" / "flush.status").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);
    CHECK(fs::is_empty(dir.path() / "spool" / "tmp")); // no temporary left behind
    flush_record second = sample_flush();
    second.result = "ok";
    s.save_flush_status(second);
    CHECK(s.load_flush_status().value->result == "ok");
}

TEST_CASE("a status file the spool's owner spoiled gives a clear problem")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path() / "spool");
    const fs::path status = dir.path() / "spool" / "flush.status";
    const fs::path secret = dir.path() / "secret";
    write_file(secret, encode_flush_record(sample_flush()));

    SECTION("a symlink is not followed")
    {
        fs::create_symlink(secret, status);
        const auto read = s.load_flush_status();
        CHECK_FALSE(read.value);
        CHECK(read.problem.find("symlink") != std::string::npos);
        CHECK(read.problem.find("flush.status") != std::string::npos);
        // The next flush replaces the link itself, never what it points to.
        s.save_flush_status(sample_flush());
        CHECK_FALSE(fs::is_symlink(status));
        CHECK(s.load_flush_status().value == sample_flush());
    }
    SECTION("a huge file is refused unread")
    {
        write_file(status, std::string(max_status_size + 1, ' '));
        const auto read = s.load_flush_status();
        CHECK_FALSE(read.value);
        CHECK(read.problem.find("too large") != std::string::npos);
    }
    SECTION("a FIFO does not block")
    {
        REQUIRE(::mkfifo(status.c_str(), 0600) == 0);
        const auto read = s.load_flush_status();
        CHECK_FALSE(read.value);
        CHECK(read.problem.find("not a regular file") != std::string::npos);
    }
    SECTION("garbage is reported with the file's name")
    {
        write_file(status, "\x01\x02 garbage");
        const auto read = s.load_flush_status();
        CHECK_FALSE(read.value);
        CHECK(read.problem.find("flush.status: not a JSON object") != std::string::npos);
    }
    SECTION("a directory in its place makes saving fail with an error naming it")
    {
        fs::create_directory(status);
        fs::create_directory(status / "inside"); // rename over a non-empty directory fails
        CHECK_THROWS_AS(s.save_flush_status(sample_flush()), std::system_error);
        CHECK(fs::is_empty(dir.path() / "spool" / "tmp"));
        CHECK_FALSE(s.load_flush_status().value);
    }
}
