// The golden entries of spool-format/ must load forever, with exactly these values.
#include "leafmail/spool/spool.hpp"

#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace leafmail::spool;
namespace fs = std::filesystem;
using leafmail::test::file_bytes;
using leafmail::test::write_file;

namespace {

const fs::path golden_v1 = fs::path(LEAFMAIL_SPOOL_FORMAT_DIR) / "v1";
constexpr const char* fresh_smtp_entry = "000660dd5b269cdc-000022dd-0000";
constexpr const char* bounce_with_state = "000660dd5b26a071-000022dd-0001";

// A spool whose queue holds copies of the golden files (tests never touch the originals).
struct golden_spool {
    leafmail::test::temp_dir dir;
    spool s{dir.path()};
    golden_spool()
    {
        for (const auto& item : fs::directory_iterator(golden_v1))
            fs::copy_file(item.path(), dir.path() / "queue" / item.path().filename());
    }
};

} // namespace

TEST_CASE("format v1: a fresh SMTP entry thaws with every field")
{
    golden_spool g;
    CHECK(g.s.list(area::queue) == std::vector<std::string>{fresh_smtp_entry, bounce_with_state});
    const auto env = g.s.load(area::queue, fresh_smtp_entry);
    REQUIRE(env);
    CHECK(env->id == fresh_smtp_entry);
    CHECK(env->queued_at == 1795352400);
    CHECK(env->origin == "smtp");
    CHECK(env->client_address == "127.0.0.1");
    CHECK(env->helo_name == "client.example");
    CHECK(env->reverse_path == "alice@example.org");
    REQUIRE(env->recipients.size() == 2);
    CHECK(env->recipients[0] ==
          recipient{"bob@example.net", recipient_state::pending, 0, 0, "", "", 0});
    CHECK(env->recipients[1].address == "carol@example.net");
    CHECK(env->content_size == 305);
    CHECK(env->body_8bit == 1);
    CHECK(env->is_bounce == 0);

    auto reader = g.s.open_content(area::queue, fresh_smtp_entry);
    const std::string content = reader.read(1 << 20);
    CHECK(content.size() == 305);
    CHECK(content.starts_with("Received: from client.example ([127.0.0.1])\r\n"));
    CHECK(content.find("\r\n.a line that began with a dot\r\n") != std::string::npos);
    CHECK(content.ends_with("8-bit: \xe2\x82\xac\r\n"));
}

TEST_CASE("format v1: a state file overrides the envelope in the entry")
{
    golden_spool g;
    const auto env = g.s.load(area::queue, bounce_with_state);
    REQUIRE(env);
    CHECK(env->origin == "sendmail");
    CHECK(env->client_address == "uid=1000");
    CHECK(env->reverse_path.empty());
    CHECK(env->is_bounce == 1);
    REQUIRE(env->recipients.size() == 3);
    CHECK(env->recipients[0] == recipient{"dave@example.com", recipient_state::delivered, 1,
                                          1795356000, "250 2.0.0 Ok: queued", "", 0});
    CHECK(env->recipients[1].state == recipient_state::failed);
    CHECK(env->recipients[1].last_reply ==
          "550 5.1.1 <erin@example.com>: Recipient address rejected");
    CHECK(env->recipients[2] == recipient{"frank@example.com", recipient_state::pending, 2,
                                          1795356060, "451 4.3.0 Temporary failure, \"try again\"",
                                          "", 0});
    CHECK(env->has_pending());
}

// An older envelope frozen again is written in the current format: every field it had keeps
// its value, and the fields appended since read as their "never set" values.
TEST_CASE("format v1: freezing the thawed envelope keeps every field in the current format")
{
    golden_spool g;
    for (const char* id : {fresh_smtp_entry, bounce_with_state}) {
        const auto env = g.s.load(area::queue, id);
        REQUIRE(env);
        const std::string archive = freeze(*env);
        CHECK(archive.starts_with("22 serialization::archive 18 0 3 "));
        CHECK(thaw(archive) == *env);
        for (const auto& r : env->recipients) {
            CHECK(r.original_address.empty());
            CHECK(r.unconfirmed == 0);
        }
    }
    const std::string entry = file_bytes(golden_v1 / fresh_smtp_entry);
    CHECK(entry.substr(entry.size() - 32) == "\nLEAFMAIL1 00000000000000000305\n");
}

TEST_CASE("format v2: freezing the thawed envelope appends only the recipient fields")
{
    leafmail::test::temp_dir dir;
    spool s{dir.path()};
    constexpr const char* id = "000660dd5b2a0000-000022dd-0002";
    const fs::path golden = fs::path(LEAFMAIL_SPOOL_FORMAT_DIR) / "v2" / id;
    fs::copy_file(golden, dir.path() / "queue" / id);
    const auto env = s.load(area::queue, id);
    REQUIRE(env);
    // The golden archive with the envelope at class version 3, the recipient at 2, and each
    // recipient's two appended fields (an empty original address, not unconfirmed).
    CHECK(freeze(*env) ==
          "22 serialization::archive 18 0 3 30 000660dd5b2a0000-000022dd-0002 1795352400 4 smtp "
          "9 127.0.0.1 14 client.example 17 alice@example.org 0 0 2 2 0 2 15 bob@example.net "
          "0 0 0 0  0  0 17 carol@example.net 0 0 0 0  0  0 305 1 0 1795356060 1795366800\n");
}

TEST_CASE("format v3: freezing the thawed envelope writes the golden bytes again")
{
    leafmail::test::temp_dir dir;
    spool s{dir.path()};
    constexpr const char* id = "000660dd5b2a0000-000022dd-0003";
    const fs::path golden = fs::path(LEAFMAIL_SPOOL_FORMAT_DIR) / "v3" / id;
    fs::copy_file(golden, dir.path() / "queue" / id);
    const std::string entry = file_bytes(golden);
    const auto env = s.load(area::queue, id);
    REQUIRE(env);
    CHECK(freeze(*env) == entry.substr(env->content_size, entry.size() - 32 - env->content_size));
}

TEST_CASE("format v3: the original address and the unconfirmed flag thaw")
{
    leafmail::test::temp_dir dir;
    spool s{dir.path()};
    constexpr const char* id = "000660dd5b2a0000-000022dd-0003";
    fs::copy_file(fs::path(LEAFMAIL_SPOOL_FORMAT_DIR) / "v3" / id, dir.path() / "queue" / id);
    const auto env = s.load(area::queue, id);
    REQUIRE(env);
    REQUIRE(env->recipients.size() == 2);
    CHECK(env->recipients[0] ==
          recipient{"bob@example.net", recipient_state::pending, 0, 0, "", "root", 0});
    CHECK(env->recipients[1] == recipient{"carol@example.net", recipient_state::pending, 1,
                                          1795356000,
                                          "451 4.4.2 connection ended after the final dot", "", 1});
    CHECK(env->next_attempt_at == 1795356060);
    CHECK(env->delay_notice_at == 0);
}

TEST_CASE("format v1: entries thaw with no schedule and no delay notice")
{
    golden_spool g;
    const auto env = g.s.load(area::queue, fresh_smtp_entry);
    REQUIRE(env);
    CHECK(env->next_attempt_at == 0);
    CHECK(env->delay_notice_at == 0);
}

TEST_CASE("format v2: the next attempt and the delay notice time thaw")
{
    leafmail::test::temp_dir dir;
    spool s{dir.path()};
    constexpr const char* id = "000660dd5b2a0000-000022dd-0002";
    fs::copy_file(fs::path(LEAFMAIL_SPOOL_FORMAT_DIR) / "v2" / id, dir.path() / "queue" / id);
    const auto env = s.load(area::queue, id);
    REQUIRE(env);
    CHECK(env->id == id);
    CHECK(env->queued_at == 1795352400);
    CHECK(env->reverse_path == "alice@example.org");
    REQUIRE(env->recipients.size() == 2);
    CHECK(env->content_size == 305);
    CHECK(env->next_attempt_at == 1795356060);
    CHECK(env->delay_notice_at == 1795366800);
    // Written again by this build, it reads back the same.
    CHECK(thaw(freeze(*env)) == *env);
}
