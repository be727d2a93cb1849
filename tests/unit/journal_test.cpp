// The write-ahead journal: record framing, torn and corrupt tails, checkpoints, group commit
// into queue/, reuse of its segments, and replay after a crash (spool-format/README.md).
#include "leafmail/spool/journal.hpp"

#include "leafmail/spool/queue_id.hpp"
#include "leafmail/spool/spool.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

using namespace leafmail::spool;
namespace jf = leafmail::spool::journal_format;
namespace fs = std::filesystem;
using leafmail::test::file_bytes;
using leafmail::test::write_file;

namespace {

const fs::path golden_journal = fs::path(LEAFMAIL_SPOOL_FORMAT_DIR) / "journal";

envelope envelope_for(const std::string& id, std::size_t content_size)
{
    envelope env;
    env.id = id;
    env.queued_at = 1795352400;
    env.origin = "smtp";
    env.client_address = "127.0.0.1";
    env.helo_name = "client.example";
    env.reverse_path = "alice@example.org";
    env.recipients.push_back({"bob@example.net", recipient_state::pending, 0, 0, "", "", 0});
    env.content_size = content_size;
    return env;
}

// The octets of an entry file (spool-format/README.md, "The entry file").
std::string entry_bytes(const std::string& id, const std::string& content)
{
    char footer[40];
    std::snprintf(footer, sizeof footer, "\nLEAFMAIL1 %020llu\n",
                  static_cast<unsigned long long>(content.size()));
    return content + freeze(envelope_for(id, content.size())) + footer;
}

std::string commit_message(spool& s, std::string_view content)
{
    entry_writer writer = s.create_entry();
    writer.write(content);
    std::string id = writer.id();
    writer.commit(envelope_for("", 0));
    return id;
}

std::string read_all(content_reader reader)
{
    std::string out;
    for (std::string chunk = reader.read(65536); !chunk.empty(); chunk = reader.read(65536))
        out += chunk;
    return out;
}

journal_options small_journal()
{
    journal_options options;
    options.segment_count = 2;
    options.segment_size = 64 * 1024;
    options.max_entry_size = 16 * 1024;
    options.checkpoint_interval_ms = 5;
    return options;
}

// A journal as a crashed leafmaild leaves it: records past the checkpoint, and no entries.
void plant_journal(const fs::path& root, const std::vector<std::string>& records)
{
    fs::create_directories(root / "journal");
    std::string image;
    for (const auto& r : records)
        image += r;
    image.resize(64 * 1024, '\0');
    write_file(root / "journal" / "segment-0", image);
    write_file(root / "journal" / "segment-1", std::string(64 * 1024, '\0'));
    write_file(root / "journal" / "checkpoint", std::string(1024, '\0'));
}

} // namespace

TEST_CASE("CRC-32C gives the check value of the standard")
{
    CHECK(jf::crc32c("123456789") == 0xE3069283U); // RFC 3720 B.4
    CHECK(jf::crc32c("6789", jf::crc32c("12345")) == jf::crc32c("123456789"));
}

TEST_CASE("journal records round-trip through a segment image")
{
    const std::string a = "000660dd5b269cdc-000022dd-0000";
    const std::string b = "000660dd5b269cdc-000022dd-0001";
    const std::string image =
        jf::encode_record(7, a, "first entry") + jf::encode_record(8, b, std::string("\0\r\n", 3));
    CHECK(jf::encode_record(7, a, "x").size() == jf::record_size(1));
    // The records are views into the image they were read from: it must outlive them.
    const std::string segment = image + std::string(100, '\0');
    const auto records = jf::read_segment(segment);
    REQUIRE(records.size() == 2);
    CHECK(records[0].sequence == 7);
    CHECK(records[0].offset == 0);
    CHECK(records[0].id == a);
    CHECK(records[0].entry == "first entry");
    CHECK(records[1].sequence == 8);
    CHECK(records[1].offset == jf::record_size(11));
    CHECK(records[1].id == b);
    CHECK(records[1].entry == std::string("\0\r\n", 3));
    CHECK_THROWS_AS(jf::encode_record(1, "short", "x"), std::invalid_argument);
}

TEST_CASE("a torn or corrupt tail ends the walk and never throws")
{
    const std::string a = "000660dd5b269cdc-000022dd-0000";
    const std::string first = jf::encode_record(1, a, "one");
    const std::string second = jf::encode_record(2, a, "two two");
    SECTION("a record cut short")
    {
        for (std::size_t cut = 0; cut < second.size(); ++cut)
            CHECK(jf::read_segment(first + second.substr(0, cut)).size() == 1);
    }
    SECTION("any flipped octet in a record")
    {
        for (std::size_t at = 0; at < second.size(); ++at) {
            std::string damaged = second;
            damaged[at] = static_cast<char>(damaged[at] ^ 0x20);
            CHECK(jf::read_segment(first + damaged).size() == 1);
        }
    }
    SECTION("a record of an older use of the segment")
    {
        CHECK(jf::read_segment(first + jf::encode_record(1, a, "older")).size() == 1);
        CHECK(jf::read_segment(first + jf::encode_record(5, a, "older")).size() == 1);
    }
    SECTION("garbage and empty images")
    {
        CHECK(jf::read_segment("").empty());
        CHECK(jf::read_segment(std::string(4096, '\0')).empty());
        CHECK(
            jf::read_segment("LMJRNL1\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").empty());
    }
}

TEST_CASE("checkpoint slots round-trip and a damaged slot reads as none")
{
    const std::string slot = jf::encode_checkpoint(12345);
    CHECK(slot.size() == jf::checkpoint_slot_size);
    CHECK(slot.substr(0, 38) == "LMCKPT1 00000000000000012345 " + slot.substr(29, 8) + "\n");
    CHECK(jf::decode_checkpoint(slot) == 12345U);
    CHECK_FALSE(jf::decode_checkpoint(std::string(512, '\0')));
    std::string damaged = slot;
    damaged[20] = '9';
    CHECK_FALSE(jf::decode_checkpoint(damaged));
    CHECK_FALSE(jf::decode_checkpoint(slot.substr(0, 20)));
}

TEST_CASE("format journal: the golden segment reads as two records and a torn third")
{
    const std::string image = file_bytes(golden_journal / "segment-0");
    REQUIRE(image.size() == 4096);
    const auto records = jf::read_segment(image);
    REQUIRE(records.size() == 2);
    CHECK(records[0].sequence == 41);
    CHECK(records[0].id == "000660dd5b269cdc-000022dd-0000");
    CHECK(records[1].sequence == 42);
    CHECK(records[1].id == "000660dd5b26a071-000022dd-0001");
    // Each payload is an entry file exactly as spool-format/v2/ describes it.
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    for (const auto& r : records)
        write_file(dir.path() / "queue" / std::string(r.id), r.entry);
    const auto env = s.load(area::queue, "000660dd5b269cdc-000022dd-0000");
    REQUIRE(env);
    CHECK(env->reverse_path == "alice@example.org");
    CHECK(read_all(s.open_content(area::queue, "000660dd5b269cdc-000022dd-0000")) ==
          "Subject: journal golden one\r\n\r\nHello.\r\n");
    CHECK(s.load(area::queue, "000660dd5b26a071-000022dd-0001")->recipients.size() == 2);
    const std::string checkpoint = file_bytes(golden_journal / "checkpoint");
    REQUIRE(checkpoint.size() == 1024);
    CHECK(jf::decode_checkpoint(checkpoint.substr(0, 512)) == 40U);
    CHECK_FALSE(jf::decode_checkpoint(checkpoint.substr(512)));
}

TEST_CASE("entries committed through the journal land in queue and its segments are reused")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    std::string why_not;
    REQUIRE(s.open_journal(small_journal(), why_not));
    // 4 x 80 entries of about 1.3 KiB: several times the journal's 128 KiB.
    std::vector<std::thread> threads;
    std::vector<std::vector<std::string>> ids(4);
    for (std::size_t t = 0; t < ids.size(); ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 80; ++i)
                ids[t].push_back(commit_message(s, "message " + std::to_string(t) + "/" +
                                                       std::to_string(i) + "\r\n" +
                                                       std::string(1000, 'x') + "\r\n"));
        });
    for (auto& th : threads)
        th.join();
    std::set<std::string> all;
    for (const auto& v : ids)
        all.insert(v.begin(), v.end());
    CHECK(all.size() == 320);
    CHECK(s.list(area::queue).size() == 320);
    CHECK(fs::is_empty(dir.path() / "tmp"));
    CHECK(fs::file_size(dir.path() / "journal" / "segment-0") == 64 * 1024);
    CHECK(fs::file_size(dir.path() / "journal" / "segment-1") == 64 * 1024);
    const auto env = s.load(area::queue, ids[2][7]);
    REQUIRE(env);
    CHECK(read_all(s.open_content(area::queue, ids[2][7])).starts_with("message 2/7\r\n"));
}

TEST_CASE("an entry too large for the journal is committed as its own file")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    std::string why_not;
    REQUIRE(s.open_journal(small_journal(), why_not));
    std::string content;
    for (int i = 0; content.size() < 200 * 1024; ++i)
        content += "line " + std::to_string(i) + "\r\n";
    const std::string id = commit_message(s, content);
    CHECK(read_all(s.open_content(area::queue, id)) == content);
}

TEST_CASE("a second holder of the journal is refused and commits without it")
{
    leafmail::test::temp_dir dir;
    spool first(dir.path());
    spool second(dir.path());
    std::string why_not;
    REQUIRE(first.open_journal(small_journal(), why_not));
    CHECK_FALSE(second.open_journal(small_journal(), why_not));
    CHECK(why_not.find("another process") != std::string::npos);
    const std::string id = commit_message(second, "plain\r\n");
    CHECK(first.list(area::queue) == std::vector<std::string>{id});
}

TEST_CASE("recover replays journaled entries missing from queue once and only once")
{
    leafmail::test::temp_dir dir;
    const std::string lost = "000660dd5b269cdc-000022dd-0000";
    const std::string held = "000660dd5b269cdc-000022dd-0001";
    const std::string torn = "000660dd5b269cdc-000022dd-0002";
    plant_journal(dir.path(), {jf::encode_record(1, lost, entry_bytes(lost, "lost\r\n")),
                               jf::encode_record(2, held, entry_bytes(held, "held\r\n")),
                               jf::encode_record(3, torn, entry_bytes(torn, "torn\r\n")),
                               jf::encode_record(4, "not-a-queue-id-at-all-12345678", "x"),
                               jf::encode_record(5, lost, "not an entry")});
    spool s(dir.path());
    write_file(dir.path() / "hold" / held, entry_bytes(held, "held\r\n"));
    write_file(dir.path() / "queue" / torn, ""); // its name reached the disk, its data not
    write_file(dir.path() / "tmp" / lost, "debris of the crashed writer");

    const auto report = s.recover();
    CHECK(report.replayed_records == 2);
    CHECK(s.list(area::queue) == std::vector<std::string>{lost, torn});
    CHECK(s.list(area::hold) == std::vector<std::string>{held});
    CHECK(read_all(s.open_content(area::queue, lost)) == "lost\r\n");
    CHECK(read_all(s.open_content(area::queue, torn)) == "torn\r\n");
    CHECK(fs::is_empty(dir.path() / "tmp"));

    // Delivered meanwhile: the checkpoint keeps it from coming back.
    CHECK(s.remove(area::queue, lost));
    CHECK(s.recover().replayed_records == 0);
    CHECK(s.list(area::queue) == std::vector<std::string>{torn});

    // A journal opened for appending after the replay continues past the old records.
    std::string why_not;
    REQUIRE(s.open_journal(small_journal(), why_not));
    const std::string fresh = commit_message(s, "fresh\r\n");
    CHECK(s.list(area::queue).size() == 2);
    CHECK(read_all(s.open_content(area::queue, fresh)) == "fresh\r\n");
}

TEST_CASE("a journal record whose entry is already in queue is not replayed again")
{
    leafmail::test::temp_dir dir;
    const std::string id = "000660dd5b269cdc-000022dd-0000";
    plant_journal(dir.path(), {jf::encode_record(1, id, entry_bytes(id, "once\r\n"))});
    spool s(dir.path());
    write_file(dir.path() / "queue" / id, entry_bytes(id, "once\r\n"));
    CHECK(s.recover().replayed_records == 0);
    CHECK(s.list(area::queue) == std::vector<std::string>{id});
}
