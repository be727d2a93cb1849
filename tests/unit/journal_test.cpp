// The write-ahead journal: record framing, torn and corrupt tails, checkpoints, group commit
// into queue/, reuse of its segments, and replay after a crash (spool-format/README.md).
#include "leafmail/spool/handover.hpp"
#include "leafmail/spool/journal.hpp"

#include "leafmail/spool/queue_id.hpp"
#include "leafmail/spool/spool.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

// ------------------------------------------------------------------------------ the handover
// The injector's way into leafmaild's journal (spool/handover.hpp): the request framing, the
// injector's client against a scripted receiver, the receiver's checks of what it is sent,
// and the writer's fall-back to its own file.

namespace hv = leafmail::spool::handover;

namespace {

// A one-connection receiver on a Unix socket: reads one request and its entry, then answers
// whatever `answer` returns for them ("" means: say nothing and hang up once the client has).
class scripted_receiver {
public:
    scripted_receiver(const fs::path& socket_path,
                      std::function<std::string(const std::string&)> answer)
        : fd_(hv::listen_at(socket_path.string())), answer_(std::move(answer))
    {
        thread_ = std::thread([this] { serve(); });
    }
    ~scripted_receiver()
    {
        thread_.join();
        ::close(fd_);
    }
    scripted_receiver(const scripted_receiver&) = delete;
    scripted_receiver& operator=(const scripted_receiver&) = delete;
    /// What the client sent: its request line and entry (after the client is done).
    std::string received()
    {
        thread_.join();
        thread_ = std::thread([] {});
        return received_;
    }

private:
    void serve()
    {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1)
            return;
        const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0)
            return;
        char buffer[4096];
        for (int rounds = 0; rounds < 1000; ++rounds) {
            pollfd q{c, POLLIN, 0};
            if (::poll(&q, 1, 2000) != 1)
                break;
            const ssize_t n = ::recv(c, buffer, sizeof buffer, 0);
            if (n <= 0)
                break;
            received_.append(buffer, static_cast<std::size_t>(n));
            const auto line_end = received_.find('\n');
            if (line_end == std::string::npos)
                continue;
            const auto request = hv::parse_request(received_.substr(0, line_end));
            if (!request || received_.size() >= line_end + 1 + request->size) {
                const std::string reply = answer_(received_);
                if (!reply.empty())
                    (void)!::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
                if (!reply.empty())
                    break;
            }
        }
        ::close(c);
    }

    int fd_;
    std::function<std::string(const std::string&)> answer_;
    std::string received_;
    std::thread thread_;
};

const std::string handed_id = "000660dd5b269cdc-000022dd-0000";

} // namespace

TEST_CASE("handover requests: the line that announces an entry, and what is not one")
{
    CHECK(hv::encode_request(handed_id, 532) == "LMHAND1 " + handed_id + " 532\n");
    const auto parsed = hv::parse_request("LMHAND1 " + handed_id + " 532");
    REQUIRE(parsed);
    CHECK(parsed->id == handed_id);
    CHECK(parsed->size == 532);
    for (const char* bad : {"", "LMHAND1", "LMHAND1 ", "LMHAND1 id", "LMHAND1 id ", "LMHAND1 id 0",
                            "LMHAND1 id 012", "LMHAND1 id 12x", "LMHAND1 id -1", "LMHAND2 id 12",
                            "LMHAND1  12", "LMHAND1 id 1234567890123", "lmhand1 id 12"})
        CHECK_FALSE(hv::parse_request(bad));
    CHECK(hv::encode_accepted(handed_id) == "250 2.0.0 OK queued as " + handed_id + "\n");
    const std::string refused = hv::encode_refused("no\x1b]0;owned\x07\nroom");
    CHECK(refused == "451 4.3.0 no\\x1b]0;owned\\x07\\x0aroom\n");
}

TEST_CASE("the injector's client is believed only by the spool owner's exact answer")
{
    leafmail::test::temp_dir dir;
    const fs::path socket = dir.path() / "handover";
    const std::string entry = entry_bytes(handed_id, "Subject: handed over\r\n\r\nhi\r\n");
    const unsigned me = ::getuid();
    const auto timeout = std::chrono::milliseconds(300);
    SECTION("the receiver says it is durable")
    {
        scripted_receiver receiver(
            socket, [](const std::string&) { return hv::encode_accepted(handed_id); });
        CHECK(hv::send_entry(socket.string(), me, handed_id, entry, timeout));
        CHECK(receiver.received() == hv::encode_request(handed_id, entry.size()) + entry);
    }
    SECTION("the receiver refuses")
    {
        scripted_receiver receiver(
            socket, [](const std::string&) { return hv::encode_refused("disk full"); });
        CHECK_FALSE(hv::send_entry(socket.string(), me, handed_id, entry, timeout));
    }
    SECTION("the receiver names another entry")
    {
        scripted_receiver receiver(socket, [](const std::string&) {
            return hv::encode_accepted("000660dd5b269cdc-000022dd-0001");
        });
        CHECK_FALSE(hv::send_entry(socket.string(), me, handed_id, entry, timeout));
    }
    SECTION("the receiver does not answer in time")
    {
        scripted_receiver receiver(socket, [](const std::string&) { return std::string(); });
        const auto start = std::chrono::steady_clock::now();
        CHECK_FALSE(hv::send_entry(socket.string(), me, handed_id, entry, timeout));
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
    }
    SECTION("the listener is not the spool's owner")
    {
        scripted_receiver receiver(
            socket, [](const std::string&) { return hv::encode_accepted(handed_id); });
        CHECK_FALSE(hv::send_entry(socket.string(), me + 1, handed_id, entry, timeout));
        CHECK(receiver.received().empty());
    }
    SECTION("nobody listens")
    {
        CHECK_FALSE(hv::send_entry(socket.string(), me, handed_id, entry, timeout));
    }
}

TEST_CASE("a socket path that holds something else is never replaced")
{
    leafmail::test::temp_dir dir;
    write_file(dir.path() / "handover", "a file");
    CHECK_THROWS_AS(hv::listen_at((dir.path() / "handover").string()), std::system_error);
    CHECK(file_bytes(dir.path() / "handover") == "a file");
}

TEST_CASE("the receiver commits a handed-over entry through its journal, byte for byte")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    std::string why_not;
    REQUIRE(s.open_journal(small_journal(), why_not));
    const std::string content = "Subject: handed over\r\n\r\nhi\r\n";
    s.commit_handed_over(handed_id, entry_bytes(handed_id, content));
    CHECK(s.list(area::queue) == std::vector<std::string>{handed_id});
    CHECK(file_bytes(dir.path() / "queue" / handed_id) == entry_bytes(handed_id, content));
    CHECK(read_all(s.open_content(area::queue, handed_id)) == content);
    CHECK(fs::is_empty(dir.path() / "tmp"));
    // The id is taken now: a second handover of it is refused and changes nothing.
    CHECK_THROWS_AS(s.commit_handed_over(handed_id, entry_bytes(handed_id, "other\r\n")),
                    std::system_error);
    CHECK(file_bytes(dir.path() / "queue" / handed_id) == entry_bytes(handed_id, content));
    CHECK(fs::is_empty(dir.path() / "tmp"));
}

TEST_CASE("the receiver refuses handed-over octets that are not one whole entry of that id")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    std::string why_not;
    REQUIRE(s.open_journal(small_journal(), why_not));
    const std::string other_id = "000660dd5b269cdc-000022dd-0001";
    const std::string good = entry_bytes(handed_id, "hi\r\n");
    std::string wrong_size = good;
    wrong_size.replace(wrong_size.size() - 21, 20, "00000000000000000003"); // footer: 3 octets
    const std::vector<std::pair<std::string, std::string>> hostile = {
        {"../../etc/x", good},                        // not a queue id
        {other_id, good},                             // the envelope names another entry
        {handed_id, good.substr(0, good.size() - 1)}, // torn: no footer
        {handed_id, "just some octets"},              // no entry at all
        {handed_id, wrong_size},                      // the footer points elsewhere
        {handed_id,
         entry_bytes(handed_id, std::string(20 * 1024, 'x'))}, // over the journal's limit
    };
    for (const auto& [id, octets] : hostile) {
        INFO(id << " / " << octets.size() << " octets");
        CHECK_THROWS(s.commit_handed_over(id, octets));
    }
    CHECK(s.list(area::queue).empty());
    CHECK(fs::is_empty(dir.path() / "tmp"));
    spool without_journal(dir.path() / "other");
    CHECK_THROWS_AS(without_journal.commit_handed_over(handed_id, good), std::system_error);
    CHECK(without_journal.list(area::queue).empty());
}

TEST_CASE("the injector's writer commits its own file when the receiver does not take it")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    s.offer_new_entries_to_receiver();
    const std::string content = "Subject: mine\r\n\r\nhi\r\n";
    SECTION("nobody listens")
    {
        const std::string id = commit_message(s, content);
        CHECK(read_all(s.open_content(area::queue, id)) == content);
    }
    SECTION("the receiver refuses: the same id, committed here")
    {
        scripted_receiver receiver(dir.path() / "handover",
                                   [](const std::string&) { return hv::encode_refused("no"); });
        const std::string id = commit_message(s, content);
        CHECK(read_all(s.open_content(area::queue, id)) == content);
        CHECK(receiver.received().starts_with(
            hv::encode_request(id, file_bytes(dir.path() / "queue" / id).size())));
    }
    SECTION("the receiver takes it: nothing is written here")
    {
        // The scripted receiver stores nothing, so an entry in queue/ could only be ours.
        scripted_receiver receiver(dir.path() / "handover", [](const std::string& got) {
            return hv::encode_accepted(hv::parse_request(got.substr(0, got.find('\n')))->id);
        });
        const std::string id = commit_message(s, content);
        CHECK(s.list(area::queue).empty());
        const std::string got = receiver.received();
        CHECK(got.starts_with("LMHAND1 " + id + " "));
        CHECK(got.find(content) != std::string::npos);
    }
    CHECK(fs::is_empty(dir.path() / "tmp"));
}
