#include "leafmail/list/listing.hpp"

#include "leafmail/spool/queue_id.hpp"

#include "temp_dir.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

using namespace leafmail;
using namespace leafmail::list;

namespace {

std::string commit(spool::spool& s, const std::string& content, std::vector<std::string> to,
                   std::string from = "alice@example.org")
{
    auto writer = s.create_entry();
    writer.write(content);
    spool::envelope env;
    env.origin = "smtp";
    env.client_address = "127.0.0.1";
    env.helo_name = "client";
    env.reverse_path = std::move(from);
    for (auto& address : to)
        env.recipients.push_back({address, spool::recipient_state::pending, 0, 0, "", "", 0});
    const std::string id = writer.id();
    writer.commit(env);
    return id;
}

} // namespace

TEST_CASE("an empty spool lists as empty, in text and JSON")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const auto entries = scan_spool(s);
    CHECK(entries.empty());
    std::ostringstream text, json;
    write_listing(text, entries, 0);
    CHECK(text.str() == "spool is empty\n");
    write_json(json, entries, 0);
    CHECK(nlohmann::json::parse(json.str()) == nlohmann::json::array());
}

TEST_CASE("entries of every area are listed oldest first with their state")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const std::string queued =
        commit(s, "Subject: one\r\n\r\nx\r\n", {"bob@example.net", "carol@example.net"});
    const std::string held = commit(s, "Subject: two\r\n\r\ny\r\n", {"dave@example.net"});
    const std::string failed = commit(s, "Subject: three\r\n\r\nz\r\n", {"erin@example.net"}, "");
    const std::string broken = commit(s, "Subject: four\r\n\r\nw\r\n", {"frank@example.net"});

    auto env = *s.load(spool::area::queue, queued);
    env.recipients[0].attempts = 2;
    env.recipients[0].last_attempt_at = 1700000000;
    env.recipients[0].last_reply = "451 4.3.0 try again later";
    env.recipients[1].state = spool::recipient_state::delivered;
    s.save_state(spool::area::queue, env);
    REQUIRE(s.move(held, spool::area::queue, spool::area::hold));
    REQUIRE(s.move(failed, spool::area::queue, spool::area::failed));
    { // truncate the last one: its footer is gone
        std::ofstream((dir.path() / "spool" / "queue" / broken), std::ios::trunc) << "garbage";
    }

    const auto entries = scan_spool(s);
    REQUIRE(entries.size() == 4);
    CHECK(entries[0].id == queued);
    CHECK(entries[0].where == spool::area::queue);
    CHECK(entries[1].where == spool::area::hold);
    CHECK(entries[2].where == spool::area::failed);
    CHECK(entries[3].id == broken);
    CHECK(entries[3].where == spool::area::corrupt); // moved aside, as every tool does
    CHECK(entries[3].was_quarantined);
    CHECK_FALSE(entries[3].envelope);
    CHECK(s.list(spool::area::corrupt) == std::vector<std::string>{broken});

    const auto now = entries[0].envelope->queued_at + 3700;
    std::ostringstream text;
    write_listing(text, entries, now);
    const std::string out = text.str();
    CHECK(out.find(queued + "  queued") != std::string::npos);
    CHECK(out.find(held + "  held") != std::string::npos);
    CHECK(out.find(failed + "  failed") != std::string::npos);
    CHECK(out.find(broken + "  corrupt") != std::string::npos);
    CHECK(out.find("2 attempts") != std::string::npos);
    CHECK(out.find("(1h 1m ago)") != std::string::npos);
    CHECK(out.find("pending    <bob@example.net>") != std::string::npos);
    CHECK(out.find("451 4.3.0 try again later") != std::string::npos);
    CHECK(out.find("delivered  <carol@example.net>") != std::string::npos);
    CHECK(out.find("from <>") != std::string::npos);
    CHECK(out.find("4 messages, ") != std::string::npos);
    CHECK(out.find("(1 queued, 1 held, 1 failed, 1 corrupt)") != std::string::npos);
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);)
        CHECK(line.size() <= 80);

    std::ostringstream json;
    write_json(json, entries, now);
    const auto doc = nlohmann::json::parse(json.str());
    REQUIRE(doc.size() == 4);
    CHECK(doc[0]["id"] == queued);
    CHECK(doc[0]["area"] == "queued");
    CHECK(doc[0]["sender"] == "alice@example.org");
    CHECK(doc[0]["attempts"] == 2);
    CHECK(doc[0]["age_seconds"] == 3700);
    CHECK(doc[0]["size"] == entries[0].envelope->content_size);
    CHECK(doc[0]["recipients"][0]["state"] == "pending");
    CHECK(doc[0]["recipients"][0]["last_attempt_at"] == "2023-11-14T22:13:20Z");
    CHECK(doc[0]["recipients"][0]["last_reply"] == "451 4.3.0 try again later");
    CHECK(doc[0]["recipients"][1]["state"] == "delivered");
    CHECK(doc[0]["error"].is_null());
    CHECK(doc[2]["sender"] == "");
    CHECK(doc[3]["area"] == "corrupt");
    CHECK(doc[3]["error"].is_string());
    CHECK(doc[3]["size"] == 7);

    SECTION("areas can be chosen")
    {
        scan_options only_held;
        only_held.areas = {spool::area::hold};
        const auto held_only = scan_spool(s, only_held);
        REQUIRE(held_only.size() == 1);
        CHECK(held_only[0].id == held);
    }
    SECTION("several threads give the same listing")
    {
        scan_options threaded;
        threaded.threads = 3;
        const auto again = scan_spool(s, threaded);
        REQUIRE(again.size() == 4);
        for (std::size_t i = 0; i < 4; ++i)
            CHECK(again[i].id == entries[i].id);
    }
    SECTION("one entry in detail, with its message header")
    {
        const auto entry = find_entry(s, queued);
        REQUIRE(entry);
        const std::string header = read_message_header(s, entry->where, entry->id);
        CHECK(header == "Subject: one\r\n");
        std::ostringstream details;
        write_details(details, *entry, header, now);
        CHECK(details.str().find("Subject: one") != std::string::npos);
        CHECK(details.str().find("451 4.3.0") != std::string::npos);
        CHECK_FALSE(find_entry(s, "0000000000000000-00000000-0000"));
        CHECK_FALSE(find_entry(s, "../etc/passwd"));
    }
}

TEST_CASE("invalid UTF-8 in a reply does not break the JSON")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const std::string id = commit(s, "x\r\n", {"a@b"});
    auto env = *s.load(spool::area::queue, id);
    env.recipients[0].last_reply = "451 \xff\xfe bad";
    s.save_state(spool::area::queue, env);
    std::ostringstream json;
    write_json(json, scan_spool(s), 0);
    CHECK(nlohmann::json::parse(json.str()).size() == 1);
}

TEST_CASE("times, ages and area names")
{
    CHECK(iso8601_utc(0) == "1970-01-01T00:00:00Z");
    CHECK(format_age(42) == "42s");
    CHECK(format_age(3 * 60 + 5) == "3m 5s");
    CHECK(format_age(2 * 3600 + 5 * 60) == "2h 5m");
    CHECK(format_age(3 * 86400 + 4 * 3600) == "3d 4h");
    CHECK(format_age(-5) == "0s");
    CHECK(leafmail::spool::queue_id_time("000660dd88d47910-000047e7-0000") ==
          0x000660dd88d47910 / 1000000);
    CHECK(area_from_label("held") == spool::area::hold);
    CHECK(area_from_label("hold") == spool::area::hold);
    CHECK_FALSE(area_from_label("nowhere"));
}

TEST_CASE("a deferred entry shows when it is tried next, in text and JSON")
{
    CHECK(format_next_attempt(0, 1000).empty());
    CHECK(format_next_attempt(1000, 1000) == "next attempt due");
    CHECK(format_next_attempt(1040, 1000) == "next attempt in 40 s");
    CHECK(format_next_attempt(1000 + 12 * 60, 1000) == "next attempt in 12 min");
    CHECK(format_next_attempt(1000 + 11 * 60 + 1, 1000) == "next attempt in 12 min");
    CHECK(format_next_attempt(1000 + 3 * 3600 + 5 * 60, 1000) == "next attempt in 3h 5m");

    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const std::string id = commit(s, "Subject: later\r\n\r\nx\r\n", {"bob@example.net"});
    const std::string fresh = commit(s, "Subject: new\r\n\r\ny\r\n", {"carol@example.net"});
    auto env = *s.load(spool::area::queue, id);
    env.recipients[0].attempts = 1;
    env.next_attempt_at = 1700000000 + 12 * 60;
    s.save_state(spool::area::queue, env);

    const auto entries = scan_spool(s);
    std::ostringstream text, json;
    write_listing(text, entries, 1700000000);
    CHECK(text.str().find("  next attempt in 12 min\n") != std::string::npos);
    write_json(json, entries, 1700000000);
    const auto doc = nlohmann::json::parse(json.str());
    REQUIRE(doc.size() == 2);
    CHECK(doc[0]["next_attempt"] == "2023-11-14T22:25:20Z");
    CHECK(doc[1]["next_attempt"].is_null());
    (void)fresh;
}

TEST_CASE("a recipient an alias put in place shows the original in text and JSON")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const std::string id = commit(s, "Subject: cron\r\n\r\nx\r\n", {"alice@example.org", "bob@x"});
    auto env = *s.load(spool::area::queue, id);
    env.recipients[0].original_address = "root";
    s.save_state(spool::area::queue, env);

    const auto entries = scan_spool(s);
    std::ostringstream text, details, json;
    write_listing(text, entries, 1700000000);
    CHECK(text.str().find("<alice@example.org> (for <root>)\n") != std::string::npos);
    CHECK(text.str().find("<bob@x>\n") != std::string::npos);
    write_details(details, entries.at(0), "", 1700000000);
    CHECK(details.str().find("recipient    <alice@example.org> (for <root>)\n") !=
          std::string::npos);
    write_json(json, entries, 1700000000);
    const auto doc = nlohmann::json::parse(json.str());
    CHECK(doc[0]["recipients"][0]["original"] == "root");
    CHECK(doc[0]["recipients"][1]["original"] == "");
}

namespace {

// The text listing of one queued entry whose first recipient has `reply` and whose sender
// and header are `sender` and `header`.
struct one_entry {
    test::temp_dir dir;
    spool::spool s{dir.path() / "spool"};
    std::string id;
    one_entry(const std::string& reply, const std::string& sender, const std::string& header)
    {
        id = commit(s, header + "\r\nbody\r\n", {"bob@example.net"}, sender);
        auto env = *s.load(spool::area::queue, id);
        env.recipients[0].last_reply = reply;
        env.helo_name = "helo\x1b]2;title\x07";
        s.save_state(spool::area::queue, env);
    }
    std::string listing()
    {
        std::ostringstream out;
        write_listing(out, scan_spool(s), 0);
        return out.str();
    }
    std::string details()
    {
        const auto entry = find_entry(s, id);
        std::ostringstream out;
        write_details(out, *entry, read_message_header(s, entry->where, entry->id), 0);
        return out.str();
    }
};

bool has_control_octets(const std::string& text)
{
    return std::any_of(text.begin(), text.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return (u < 0x20 && c != '\n' && c != '\t') || (u >= 0x7f && u < 0xa0);
    });
}

} // namespace

TEST_CASE("a long reply is wrapped in the listing, not cut")
{
    const std::string reply =
        "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual "
        "mailbox table; see https://support.example.net/why-was-my-mail-rejected for what to do";
    one_entry e(reply, "alice@example.org", "Subject: hi\r\n");
    const std::string out = e.listing();
    INFO(out);
    CHECK(out.find("...") == std::string::npos);
    // Every word of the reply is there, on lines of at most 80 columns indented under it.
    std::string joined;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        CHECK(line.size() <= 80);
        if (line.rfind("             ", 0) == 0)
            joined += (joined.empty() ? "" : " ") + line.substr(13);
    }
    CHECK(joined == reply);
}

TEST_CASE("a word longer than a line is split and a huge reply is bounded")
{
    one_entry e(std::string(200, 'x') + " " + std::string(5000, 'y'), "a@example.org",
                "Subject: hi\r\n");
    const std::string out = e.listing();
    INFO(out);
    std::istringstream lines(out);
    std::size_t reply_lines = 0;
    for (std::string line; std::getline(lines, line);) {
        CHECK(line.size() <= 80);
        reply_lines += line.rfind("             ", 0) == 0 ? 1 : 0;
    }
    CHECK(reply_lines == 13); // 12 lines of the reply and the line that says there is more
    CHECK(out.find("leafmail-list ID shows the whole reply") != std::string::npos);
}

TEST_CASE("escape sequences from peers are shown escaped in the listing and the details")
{
    one_entry e("550 5.7.1 \x1b]0;owned\x07 denied \x1b[2J\xc2\x9b"
                "31m",
                "evil\x1b[2J@example.org",
                "Subject: \x1b]0;pwned\x07 hi\r\nX-Clear: \x1b[2J\x1b[H\x9b"
                "1m\r\n\tfolded \x1b[5m\r\n");
    const std::string listing = e.listing();
    INFO(listing);
    CHECK_FALSE(has_control_octets(listing));
    CHECK(listing.find("\\x1b]0;owned\\x07 denied \\x1b[2J\\xc2\\x9b31m") != std::string::npos);
    CHECK(listing.find("<evil\\x1b[2J@example.org>") != std::string::npos);

    const std::string details = e.details();
    INFO(details);
    CHECK_FALSE(has_control_octets(details));
    CHECK(details.find("    Subject: \\x1b]0;pwned\\x07 hi\n") != std::string::npos);
    CHECK(details.find("    X-Clear: \\x1b[2J\\x1b[H\\x9b1m\n") != std::string::npos);
    CHECK(details.find("    \tfolded \\x1b[5m\n") != std::string::npos); // the fold stays
    CHECK(details.find("helo helo\\x1b]2;title\\x07") != std::string::npos);
    CHECK(details.find("reply      550 5.7.1 \\x1b]0;owned\\x07") != std::string::npos);

    // --json keeps the text whole (JSON escapes it in its own way).
    std::ostringstream json;
    write_json(json, scan_spool(e.s), 0);
    const auto parsed = nlohmann::json::parse(json.str());
    CHECK(parsed[0]["recipients"][0]["last_reply"] ==
          "550 5.7.1 \x1b]0;owned\x07 denied \x1b[2J\xc2\x9b"
          "31m");
}
