#include "leafmail/spool/spool.hpp"

#include "leafmail/spool/queue_id.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace leafmail::spool;
namespace fs = std::filesystem;
using leafmail::test::file_bytes;
using leafmail::test::write_file;

namespace {

envelope envelope_for(std::vector<std::string> rcpts)
{
    envelope env;
    env.origin = "smtp";
    env.client_address = "127.0.0.1";
    env.helo_name = "client";
    env.reverse_path = "alice@example.org";
    for (auto& r : rcpts)
        env.recipients.push_back({std::move(r), recipient_state::pending, 0, 0, "", "", 0});
    return env;
}

std::string commit_message(spool& s, std::string_view content,
                           std::vector<std::string> rcpts = {"bob@example.net"})
{
    entry_writer writer = s.create_entry();
    writer.write(content);
    std::string id = writer.id();
    writer.commit(envelope_for(std::move(rcpts)));
    return id;
}

std::string read_all(content_reader reader)
{
    std::string out;
    for (std::string chunk = reader.read(7); !chunk.empty(); chunk = reader.read(7))
        out += chunk;
    return out;
}

std::size_t count_files(const fs::path& dir)
{
    return static_cast<std::size_t>(
        std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

} // namespace

TEST_CASE("a committed entry is listed, thawed and its content read back byte for byte")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string content = "Received: x\r\nSubject: h\xc3\xa9llo\r\n\r\n.line\r\n";
    const std::string id = commit_message(s, content, {"bob@example.net", "carol@example.net"});

    CHECK(s.list(area::queue) == std::vector<std::string>{id});
    CHECK(count_files(dir.path() / "tmp") == 0);
    const auto env = s.load(area::queue, id);
    REQUIRE(env);
    CHECK(env->id == id);
    CHECK(env->content_size == content.size());
    CHECK(env->body_8bit == 1);
    CHECK(env->queued_at > 0);
    CHECK(env->recipients.size() == 2);
    CHECK(read_all(s.open_content(area::queue, id)) == content);
}

TEST_CASE("large content is streamed through the writer and reader intact")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    entry_writer writer = s.create_entry();
    std::string expected;
    for (int i = 0; i < 3000; ++i) {
        std::string line = "line " + std::to_string(i) +
                           std::string(static_cast<std::size_t>(i % 200), 'x') + "\r\n";
        writer.write(line);
        expected += line;
    }
    writer.write(std::string(200 * 1024, 'y')); // larger than the write buffer at once
    expected += std::string(200 * 1024, 'y');
    const std::string id = writer.id();
    writer.commit(envelope_for({"bob@example.net"}));
    auto reader = s.open_content(area::queue, id);
    CHECK(reader.size() == expected.size());
    std::string got;
    for (std::string chunk = reader.read(65536); !chunk.empty(); chunk = reader.read(65536))
        got += chunk;
    CHECK(got == expected);
    CHECK(s.load(area::queue, id)->body_8bit == 0);
}

TEST_CASE("an aborted or abandoned writer leaves nothing behind")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    {
        entry_writer writer = s.create_entry();
        writer.write("partial");
        CHECK(count_files(dir.path() / "tmp") == 1);
    }
    CHECK(count_files(dir.path() / "tmp") == 0);
    entry_writer writer = s.create_entry();
    writer.write("partial");
    writer.abort();
    writer.abort();
    CHECK(count_files(dir.path() / "tmp") == 0);
    CHECK(s.list(area::queue).empty());
}

TEST_CASE("recover removes what a dead writer left in tmp but spares a live one")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    write_file(dir.path() / "tmp" / make_queue_id(), "half a message"); // writer died: no lock
    entry_writer live = s.create_entry();
    live.write("still arriving");
    const auto report = s.recover();
    CHECK(report.removed_temporaries == 1);
    CHECK(count_files(dir.path() / "tmp") == 1);
    const std::string id = live.id();
    live.commit(envelope_for({"bob@example.net"}));
    CHECK(s.list(area::queue) == std::vector<std::string>{id});
}

TEST_CASE("state updates change the envelope but never the content")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string id = commit_message(s, "content\r\n");
    const std::string entry_before = file_bytes((dir.path() / "queue" / id));
    auto env = *s.load(area::queue, id);
    env.recipients[0].state = recipient_state::failed;
    env.recipients[0].attempts = 1;
    env.recipients[0].last_reply = "550 5.1.1 unknown";
    s.save_state(area::queue, env);
    CHECK(*s.load(area::queue, id) == env);
    CHECK(file_bytes((dir.path() / "queue" / id)) == entry_before);
    CHECK(count_files(dir.path() / "tmp") == 0);
}

TEST_CASE("entries move between areas with their state, and are removed whole")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string id = commit_message(s, "content\r\n");
    auto env = *s.load(area::queue, id);
    env.recipients[0].attempts = 3;
    s.save_state(area::queue, env);
    CHECK(s.move(id, area::queue, area::hold));
    CHECK(s.list(area::queue).empty());
    CHECK_FALSE(s.load(area::queue, id));
    CHECK(s.load(area::hold, id)->recipients[0].attempts == 3);
    CHECK_FALSE(s.move(id, area::queue, area::hold));
    CHECK(s.remove(area::hold, id));
    CHECK_FALSE(s.remove(area::hold, id));
    CHECK(count_files(dir.path() / "hold") == 0);
}

TEST_CASE("recover reunites a state file left behind by an interrupted move")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string id = commit_message(s, "content\r\n");
    auto env = *s.load(area::queue, id);
    env.recipients[0].attempts = 5;
    s.save_state(area::queue, env);
    fs::rename((dir.path() / "queue" / id), (dir.path() / "failed" / id)); // crash here
    const std::string orphan = commit_message(s, "other\r\n");
    s.save_state(area::queue, *s.load(area::queue, orphan));
    fs::remove((dir.path() / "queue" / orphan)); // a removal interrupted after the entry
    const auto report = s.recover();
    CHECK(report.reunited_states == 1);
    CHECK(report.removed_orphan_states == 1);
    CHECK(s.load(area::failed, id)->recipients[0].attempts == 5);
    CHECK(count_files(dir.path() / "queue") == 0);
}

TEST_CASE("corrupt entries are reported as corrupt_entry, and quarantine moves them aside")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string good = commit_message(s, "content\r\n");
    const std::string bytes = file_bytes((dir.path() / "queue" / good));

    const std::string truncated = make_queue_id(1, 1, 1);
    write_file((dir.path() / "queue" / truncated), bytes.substr(0, bytes.size() - 5));
    const std::string garbage = make_queue_id(1, 1, 2);
    write_file((dir.path() / "queue" / garbage), std::string(100, 'z'));
    const std::string empty = make_queue_id(1, 1, 3);
    write_file((dir.path() / "queue" / empty), "");
    const std::string copied = make_queue_id(1, 1, 4); // an envelope naming another id
    write_file((dir.path() / "queue" / copied), bytes);
    const std::string bad_state = make_queue_id(1, 1, 5);
    write_file((dir.path() / "queue" / bad_state), bytes);
    write_file((dir.path() / "queue" / (bad_state + ".env")), "22 serialization::archive 18 junk");

    for (const auto& id : {truncated, garbage, empty, copied, bad_state}) {
        INFO(id);
        CHECK_THROWS_AS(s.load(area::queue, id), corrupt_entry);
        CHECK(s.quarantine(area::queue, id));
    }
    CHECK(s.list(area::queue) == std::vector<std::string>{good});
    CHECK(s.list(area::corrupt).size() == 5);
    CHECK(fs::exists((dir.path() / "corrupt" / (bad_state + ".env"))));
    CHECK(s.load(area::queue, good));
}

TEST_CASE("an entry that vanished is not an error for readers")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    CHECK_FALSE(s.load(area::queue, make_queue_id()));
    CHECK_FALSE(s.try_lock_entry(area::queue, make_queue_id()));
    CHECK_THROWS_AS(s.load(area::queue, "../../etc/passwd"), std::invalid_argument);
}

TEST_CASE("entry locks exclude each other")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string id = commit_message(s, "content\r\n");
    auto first = s.try_lock_entry(area::queue, id);
    REQUIRE(first);
    CHECK_FALSE(s.try_lock_entry(area::queue, id));
    first.reset();
    CHECK(s.try_lock_entry(area::queue, id));
}

TEST_CASE("the flush lock admits one holder and times out for a second")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    spool other(dir.path(), false);
    auto held = s.lock_flush(std::chrono::milliseconds(0));
    REQUIRE(held);
    const auto start = std::chrono::steady_clock::now();
    CHECK_FALSE(other.lock_flush(std::chrono::milliseconds(200)));
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(200));
    held.reset();
    CHECK(other.lock_flush(std::chrono::milliseconds(0)));
}

TEST_CASE("concurrent commits from many threads all land, each once")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    std::vector<std::thread> threads;
    std::vector<std::vector<std::string>> ids(8);
    for (std::size_t t = 0; t < ids.size(); ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 25; ++i)
                ids[t].push_back(commit_message(s, "message " + std::to_string(t) + "/" +
                                                       std::to_string(i) + "\r\n"));
        });
    for (auto& th : threads)
        th.join();
    std::set<std::string> all;
    for (const auto& v : ids)
        all.insert(v.begin(), v.end());
    CHECK(all.size() == 200);
    CHECK(s.list(area::queue).size() == 200);
}

TEST_CASE("opening a spool that is not there fails with the path named")
{
    leafmail::test::temp_dir dir;
    CHECK_THROWS_WITH(spool(dir.path() / "missing", false), Catch::Contains("missing"));
    write_file(dir.path() / "file", "x");
    CHECK_THROWS_WITH(spool(dir.path() / "file"), Catch::Contains("file"));
}

TEST_CASE("a FIFO, a directory, a symlink and a stray name in queue are moved aside by list")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path() / "spool");
    const fs::path queue = dir.path() / "spool" / "queue";
    const std::string good = commit_message(s, "content\r\n");
    const std::string fifo = make_queue_id(1, 1, 1);
    REQUIRE(::mkfifo((queue / fifo).c_str(), 0600) == 0);
    const std::string directory = make_queue_id(1, 1, 2);
    fs::create_directory(queue / directory);
    const std::string link = make_queue_id(1, 1, 3);
    write_file(dir.path() / "outside", "not ours");
    fs::create_symlink(dir.path() / "outside", queue / link);
    write_file(queue / "notes.txt", "x");

    CHECK(s.list(area::queue) == std::vector<std::string>{good}); // no hang on the FIFO
    CHECK(count_files(queue) == 1);
    CHECK(s.list(area::corrupt).size() == 3); // the stray name is moved but is no entry
    CHECK(fs::exists(dir.path() / "spool" / "corrupt" / "notes.txt"));
    CHECK(file_bytes(dir.path() / "outside") == "not ours");
}

TEST_CASE("load, open_content and try_lock_entry never block on a FIFO or read a directory")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string fifo = make_queue_id(1, 1, 1);
    REQUIRE(::mkfifo((dir.path() / "queue" / fifo).c_str(), 0600) == 0);
    const std::string directory = make_queue_id(1, 1, 2);
    fs::create_directory(dir.path() / "queue" / directory);
    for (const auto& id : {fifo, directory}) {
        INFO(id);
        CHECK_THROWS_AS(s.load(area::queue, id), corrupt_entry);
        CHECK_THROWS_AS(s.open_content(area::queue, id), corrupt_entry);
        CHECK(s.quarantine(area::queue, id));
    }
}

TEST_CASE("recover works through the tmp descriptor opened at start, never a swapped symlink")
{
    leafmail::test::temp_dir dir;
    const fs::path root = dir.path() / "spool";
    spool s(root);
    const fs::path victim = dir.path() / "victim";
    fs::create_directory(victim);
    write_file(victim / "precious", "keep me");
    // The owner replaces tmp/ with a symlink after the spool was opened.
    fs::rename(root / "tmp", dir.path() / "old-tmp");
    fs::create_symlink(victim, root / "tmp");
    s.recover();
    CHECK(file_bytes(victim / "precious") == "keep me");
    // A spool opened after the swap refuses the symlink instead of following it.
    CHECK_THROWS_AS(spool(root, false), std::system_error);
    CHECK(file_bytes(victim / "precious") == "keep me");
}

TEST_CASE("the flush lock is never created or followed through a symlink")
{
    leafmail::test::temp_dir dir;
    const fs::path root = dir.path() / "spool";
    spool s(root);
    CHECK(fs::is_regular_file(fs::symlink_status(root / "flush.lock")));
    fs::remove(root / "flush.lock");
    const fs::path target = dir.path() / "nologin";
    fs::create_symlink(target, root / "flush.lock");
    CHECK_THROWS_AS(s.lock_flush(std::chrono::milliseconds(0)), std::system_error);
    CHECK_FALSE(fs::exists(target));
    fs::remove(root / "flush.lock");
    CHECK(s.lock_flush(std::chrono::milliseconds(0))); // a missing lock is made, exclusively
    CHECK(fs::is_regular_file(fs::symlink_status(root / "flush.lock")));
}

TEST_CASE("spool directories and files get explicit modes whatever the umask")
{
    leafmail::test::temp_dir dir;
    const mode_t old = ::umask(077);
    spool s(dir.path() / "a" / "spool");
    const std::string id = commit_message(s, "x\r\n");
    s.save_state(area::queue, *s.load(area::queue, id));
    ::umask(old);
    const auto mode_of = [](const fs::path& p) {
        struct stat st {};
        REQUIRE(::lstat(p.c_str(), &st) == 0);
        return st.st_mode & 07777;
    };
    CHECK(mode_of(dir.path() / "a" / "spool") == 02770);
    CHECK(mode_of(dir.path() / "a" / "spool" / "queue") == 02770);
    CHECK(mode_of(dir.path() / "a" / "spool" / "tmp") == 02770);
    CHECK(mode_of(dir.path() / "a" / "spool" / "queue" / id) == 0640);
    CHECK(mode_of(dir.path() / "a" / "spool" / "queue" / (id + ".env")) == 0640);
    CHECK(s.locate(id) == area::queue);
    CHECK(s.info(area::queue, id)->size > 0);
}

TEST_CASE("a missing spool that is not to be created names its path and what creates it")
{
    leafmail::test::temp_dir dir;
    try {
        spool s(dir.path() / "nowhere", false);
        FAIL("opened a missing spool");
    } catch (const missing_spool& e) {
        CHECK(std::string(e.what()).find((dir.path() / "nowhere").string()) != std::string::npos);
        CHECK(std::string(e.what()).find("--setup-spool") != std::string::npos);
    }
}

TEST_CASE("an outcome is recorded in the room reserved before sending and in no new file")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string id = commit_message(s, "content\r\n", {"a@example.net", "b@example.net"});
    auto env = *s.load(area::queue, id);
    state_reservation room = s.reserve_state(area::queue, env);
    REQUIRE(room.is_held());
    CHECK(room.size() == largest_state_size(env));
    REQUIRE(count_files(dir.path() / "tmp") == 1);
    const fs::path reserved = fs::directory_iterator(dir.path() / "tmp")->path();
    CHECK(fs::file_size(reserved) == room.size()); // written out, not a sparse promise
    struct stat before {};
    REQUIRE(::stat(reserved.c_str(), &before) == 0);

    env.recipients[0].state = recipient_state::delivered;
    env.recipients[0].attempts = 1;
    env.recipients[0].last_reply = cut_reply("250 2.0.0 " + std::string(5000, 'k'));
    env.recipients[1].state = recipient_state::failed;
    env.recipients[1].attempts = 1;
    env.recipients[1].last_reply = "550 5.1.1 unknown";
    env.next_attempt_at = 1234567890;
    s.save_state(area::queue, env, room);
    CHECK_FALSE(room.is_held());
    CHECK(count_files(dir.path() / "tmp") == 0);
    CHECK(*s.load(area::queue, id) == env);
    // The reserved file itself became the state, cut to the archive's length.
    struct stat after {};
    const fs::path state = dir.path() / "queue" / (id + ".env");
    REQUIRE(::stat(state.c_str(), &after) == 0);
    CHECK(after.st_ino == before.st_ino);
    CHECK(fs::file_size(state) == freeze(env).size());
}

TEST_CASE("an unused reservation leaves nothing and a state larger than the room still lands")
{
    leafmail::test::temp_dir dir;
    spool s(dir.path());
    const std::string id = commit_message(s, "content\r\n", {"a@example.net", "b@example.net"});
    auto env = *s.load(area::queue, id);
    {
        state_reservation room = s.reserve_state(area::queue, env);
        CHECK(count_files(dir.path() / "tmp") == 1);
    }
    CHECK(count_files(dir.path() / "tmp") == 0);
    state_reservation room = s.reserve_state(area::queue, env);
    env.recipients[0].last_reply = std::string(3 * max_recorded_reply, 'r'); // not cut
    s.save_state(area::queue, env, room);
    CHECK(*s.load(area::queue, id) == env);
    room = state_reservation();
    CHECK(count_files(dir.path() / "tmp") == 0);
}
