#include "leafmail/smtp/server_session.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

using namespace leafmail::smtp;
using namespace std::string_literals;
using events = std::vector<std::string>;

namespace {

// "250 2.1.0", or "354" for a reply without enhanced code: tests compare codes, not wording.
std::string describe(const reply& r)
{
    return r.enhanced.empty() ? std::to_string(r.code) : std::to_string(r.code) + " " + r.enhanced;
}

// Plays the transport: carries out effects, records them with content chunking erased, and
// stores every committed message unless told to hold it.
class harness {
public:
    explicit harness(server_options options = {}) : session_(std::move(options)) {}

    server_session& session() { return session_; }

    void feed(std::string_view bytes) { take(session_.feed(bytes)); }
    void stored(std::string_view id) { take(session_.stored(id)); }
    void store_failed(store_error why) { take(session_.store_failed(why)); }

    // Hold committed messages: the test calls stored()/store_failed() itself.
    void hold_stores() { auto_store_ = false; }

    /// The events since the last call: "250 2.1.0", "354", "begin", "commit", "discard", "close".
    events take_events() { return std::exchange(events_, {}); }
    const events& all_events() const { return all_events_; }
    const std::vector<std::string>& messages() const { return messages_; }
    const std::vector<reply>& replies() const { return replies_; }
    std::size_t largest_chunk() const { return largest_chunk_; }
    std::size_t feeds_with_content() const { return feeds_with_content_; }

    void take(const std::vector<effect>& effects)
    {
        bool committed = false;
        std::size_t chunks = 0;
        for (std::size_t i = 0; i < effects.size(); ++i) {
            const bool is_last = i + 1 == effects.size();
            std::visit(
                [&](const auto& e) {
                    using type = std::decay_t<decltype(e)>;
                    if constexpr (std::is_same_v<type, send_reply>) {
                        record(describe(e.what));
                        replies_.push_back(e.what);
                    } else if constexpr (std::is_same_v<type, begin_message>) {
                        REQUIRE_FALSE(in_message_);
                        in_message_ = true;
                        messages_.emplace_back();
                        record("begin");
                    } else if constexpr (std::is_same_v<type, message_content>) {
                        REQUIRE(in_message_);
                        CHECK_FALSE(e.bytes.empty());
                        ++chunks;
                        messages_.back() += e.bytes;
                        largest_chunk_ = std::max(largest_chunk_, e.bytes.size());
                    } else if constexpr (std::is_same_v<type, commit_message>) {
                        REQUIRE(in_message_);
                        in_message_ = false;
                        committed = true;
                        CHECK(is_last); // nothing is processed until the store completes
                        record("commit");
                    } else if constexpr (std::is_same_v<type, discard_message>) {
                        REQUIRE(in_message_);
                        in_message_ = false;
                        record("discard");
                    } else {
                        static_assert(std::is_same_v<type, close_connection>);
                        CHECK(is_last);
                        record("close");
                    }
                },
                effects[i]);
        }
        // At most one content chunk per message per feed() call: content is streamed.
        if (chunks > 0)
            ++feeds_with_content_;
        if (committed && auto_store_)
            stored("Q" + std::to_string(++stores_));
    }

private:
    void record(std::string event)
    {
        events_.push_back(event);
        all_events_.push_back(std::move(event));
    }

    server_session session_;
    bool auto_store_ = true;
    bool in_message_ = false;
    int stores_ = 0;
    events events_;
    events all_events_;
    std::vector<std::string> messages_;
    std::vector<reply> replies_;
    std::size_t largest_chunk_ = 0;
    std::size_t feeds_with_content_ = 0;
};

server_options options_with(std::uint64_t max_size = 1000, std::size_t max_recipients = 100,
                            std::size_t max_bad_commands = 20)
{
    server_options o;
    o.hostname = "mx.test";
    o.max_message_size = max_size;
    o.max_recipients = max_recipients;
    o.max_bad_commands = max_bad_commands;
    return o;
}

// A session that said EHLO and opened a transaction with one recipient.
harness in_transaction(server_options options = options_with())
{
    harness h{std::move(options)};
    h.feed("EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\n");
    REQUIRE(h.take_events() == events{"250", "250 2.1.0", "250 2.1.5"});
    return h;
}

// Sends one message body (already on the wire format, without the final dot).
events send_message(harness& h, std::string_view wire_body)
{
    h.feed("DATA\r\n");
    REQUIRE(h.take_events() == events{"354", "begin"});
    h.feed(wire_body);
    h.feed(".\r\n");
    return h.take_events();
}

// The content stored for a wire body, or nullopt when the message was not committed.
std::optional<std::string> stored_content(std::string_view wire_body)
{
    harness h = in_transaction(options_with(1024 * 1024));
    const events result = send_message(h, wire_body);
    if (result != events{"commit", "250 2.0.0"})
        return std::nullopt;
    REQUIRE(h.messages().size() == 1);
    return h.messages().front();
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Greeting, HELO, EHLO

TEST_CASE("the greeting is 220 with our hostname", "[smtp][session]")
{
    const server_session session{options_with()};
    const reply r = session.greeting();
    CHECK(r.code == 220);
    REQUIRE_FALSE(r.lines.empty());
    CHECK(r.lines.front().rfind("mx.test ", 0) == 0);
}

TEST_CASE("HELO gives a plain 250, EHLO lists the extensions", "[smtp][session]")
{
    harness h{options_with(4096)};
    h.feed("HELO client.test\r\n");
    CHECK(h.take_events() == events{"250"});
    CHECK(h.replies().back().lines.size() == 1);
    CHECK(h.session().client_helo() == "client.test");
    CHECK_FALSE(h.session().is_esmtp());

    h.feed("EHLO other.test\r\n");
    CHECK(h.take_events() == events{"250"});
    CHECK(h.session().client_helo() == "other.test");
    CHECK(h.session().is_esmtp());
    const auto& lines = h.replies().back().lines;
    for (const char* keyword :
         {"SIZE 4096", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "HELP"}) {
        INFO(keyword);
        CHECK(std::find(lines.begin(), lines.end(), keyword) != lines.end());
    }
}

TEST_CASE("HELO and EHLO refuse 8-bit names and names longer than a domain", "[smtp][session]")
{
    // RFC 5321 4.1.1.1 and 4.5.3.1.2: a Domain (ASCII, at most 255 octets) or a literal.
    harness h{options_with()};
    h.feed("EHLO m\xc3\xbcller.example\r\n");
    h.feed("HELO caf\xe9.example\r\n");
    h.feed("EHLO " + std::string(993, 'a') + "\r\n"); // the longest a command line takes
    h.feed("EHLO " + std::string(256, 'a') + "\r\n");
    CHECK(h.take_events() == events{"501 5.5.2", "501 5.5.2", "501 5.5.2", "501 5.5.2"});
    CHECK(h.session().client_helo().empty());
    const std::string longest = std::string(251, 'a') + ".net";
    h.feed("EHLO " + longest + "\r\n");
    CHECK(h.take_events() == events{"250"});
    CHECK(h.session().client_helo() == longest);
    h.feed("EHLO under_score\r\n"); // lenient about ASCII that is not a Domain
    CHECK(h.take_events() == events{"250"});
}

TEST_CASE("HELO and EHLO need a name without control octets", "[smtp][session]")
{
    harness h{options_with()};
    h.feed("HELO\r\nEHLO \r\nEHLO a\x01"
           "b\r\nEHLO a\tb\r\n");
    CHECK(h.take_events() == events{"501 5.5.2", "501 5.5.2", "501 5.5.2", "501 5.5.2"});
    CHECK(h.session().client_helo().empty());
    h.feed("EHLO [192.0.2.7]\r\n");
    CHECK(h.take_events() == events{"250"});
}

TEST_CASE("HELO and EHLO reset the transaction but keep the session", "[smtp][session]")
{
    harness h = in_transaction();
    CHECK(h.session().current_transaction().recipients.size() == 1);
    h.feed("HELO again.test\r\n");
    CHECK(h.take_events() == events{"250"});
    CHECK(h.session().current_transaction().recipients.empty());
    CHECK(h.session().current_transaction().reverse_path.empty());
    h.feed("RCPT TO:<b@mx.test>\r\nMAIL FROM:<c@client.test>\r\n");
    CHECK(h.take_events() == events{"503 5.5.1", "250 2.1.0"});
}

TEST_CASE("a refused recipient gets 550 5.1.1 and the others are still taken", "[smtp][session]")
{
    auto options = options_with(1000, 100, 1); // one client mistake more would close
    options.refuse_recipient = [](std::string_view address) -> std::optional<std::string> {
        if (address == "root@mx.test")
            return "<root@mx.test> reaches nobody";
        return std::nullopt;
    };
    harness h{std::move(options)};
    h.feed("EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n");
    h.feed("RCPT TO:<root@mx.test>\r\nRCPT TO:<root@mx.test>\r\nRCPT TO:<b@mx.test>\r\n");
    // A well-formed request refused is no client mistake: the session stays open.
    CHECK(h.take_events() == events{"250", "250 2.1.0", "550 5.1.1", "550 5.1.1", "250 2.1.5"});
    CHECK(h.session().current_transaction().recipients == std::vector<std::string>{"b@mx.test"});
    CHECK_FALSE(h.session().is_closed());
}

// ---------------------------------------------------------------------------------------------
// A whole transaction

TEST_CASE("a message goes MAIL, RCPT, DATA, content, dot, commit, 250", "[smtp][session]")
{
    harness h{options_with()};
    h.hold_stores();
    h.feed("EHLO client.test\r\n");
    h.feed("MAIL FROM:<alice@client.test> SIZE=20 BODY=8BITMIME\r\n");
    h.feed("RCPT TO:<bob@mx.test>\r\n");
    h.feed("RCPT TO:<postmaster>\r\n");
    CHECK(h.take_events() == events{"250", "250 2.1.0", "250 2.1.5", "250 2.1.5"});

    const transaction& t = h.session().current_transaction();
    CHECK(t.reverse_path == "alice@client.test");
    CHECK(t.recipients == std::vector<std::string>{"bob@mx.test", "postmaster"});
    CHECK(t.declared_size == std::optional<std::uint64_t>{20});
    CHECK(t.body == body_type::eight_bit_mime);

    CHECK_FALSE(h.session().is_receiving_data());
    h.feed("DATA\r\n");
    CHECK(h.take_events() == events{"354", "begin"});
    CHECK(h.session().is_receiving_data());
    h.feed("Subject: hi\r\n\r\nHello\r\n.\r\n");
    CHECK(h.take_events() == events{"commit"});
    CHECK_FALSE(h.session().is_receiving_data());
    // The envelope stays readable while the transport stores the message.
    CHECK(h.session().current_transaction().recipients.size() == 2);
    CHECK(h.messages() == std::vector<std::string>{"Subject: hi\r\n\r\nHello\r\n"});

    h.stored("QUEUEID42");
    CHECK(h.take_events() == events{"250 2.0.0"});
    CHECK(h.replies().back().to_string().find("QUEUEID42") != std::string::npos);
    CHECK(h.session().current_transaction().recipients.empty());
    CHECK(h.session().client_helo() == "client.test"); // HELO state kept

    h.feed("MAIL FROM:<>\r\nRCPT TO:<c@mx.test>\r\nQUIT\r\n");
    CHECK(h.take_events() == events{"250 2.1.0", "250 2.1.5", "221 2.0.0", "close"});
    CHECK(h.session().is_closed());
}

TEST_CASE("a transaction is open from MAIL until the message is stored or reset", "[smtp][session]")
{
    harness h{options_with()};
    h.hold_stores();
    h.feed("EHLO client.test\r\n");
    CHECK_FALSE(h.session().is_in_transaction());
    h.feed("MAIL FROM:<>\r\n"); // the null path opens a transaction too
    CHECK(h.session().is_in_transaction());
    h.feed("RSET\r\n");
    CHECK_FALSE(h.session().is_in_transaction());
    h.feed("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\nx\r\n.\r\n");
    CHECK(h.session().is_in_transaction()); // awaiting the store
    h.stored("ID");
    CHECK_FALSE(h.session().is_in_transaction());
}

TEST_CASE("the null reverse path is accepted for MAIL", "[smtp][session]")
{
    harness h{options_with()};
    h.feed("HELO c\r\nMAIL FROM:<>\r\n");
    CHECK(h.take_events() == events{"250", "250 2.1.0"});
    CHECK(h.session().current_transaction().reverse_path.empty());
}

TEST_CASE("an empty message ends at the dot right after DATA", "[smtp][session][data]")
{
    // The CRLF ending the DATA command is the CRLF before the final dot.
    harness h = in_transaction();
    h.feed("DATA\r\n.\r\n");
    CHECK(h.take_events() == events{"354", "begin", "commit", "250 2.0.0"});
    CHECK(h.messages() == std::vector<std::string>{""});
}

// ---------------------------------------------------------------------------------------------
// Simple commands

TEST_CASE("RSET, NOOP, VRFY, HELP and EXPN", "[smtp][session]")
{
    harness h = in_transaction();
    h.feed("NOOP\r\nNOOP anything at all\r\n");
    CHECK(h.take_events() == events{"250 2.0.0", "250 2.0.0"});
    CHECK(h.session().current_transaction().recipients.size() == 1); // NOOP changes nothing

    h.feed("VRFY bob\r\nVRFY\r\nHELP\r\nHELP MAIL\r\nEXPN staff\r\n");
    CHECK(h.take_events() ==
          events{"252 2.5.0", "501 5.5.2", "214 2.0.0", "214 2.0.0", "502 5.5.1"});

    h.feed("RSET now\r\nRSET\r\n");
    CHECK(h.take_events() == events{"501 5.5.4", "250 2.0.0"});
    CHECK(h.session().current_transaction().recipients.empty());
    h.feed("RCPT TO:<b@mx.test>\r\n");
    CHECK(h.take_events() == events{"503 5.5.1"});
}

TEST_CASE("commands allowed before HELO", "[smtp][session]")
{
    harness h{options_with()};
    h.feed("NOOP\r\nRSET\r\nHELP\r\nVRFY x\r\n");
    CHECK(h.take_events() == events{"250 2.0.0", "250 2.0.0", "214 2.0.0", "252 2.5.0"});
    h.feed("MAIL FROM:<a@b.test>\r\n"); // RSET before HELO did not open the session
    CHECK(h.take_events() == events{"503 5.5.1"});
}

TEST_CASE("unknown and unimplemented verbs", "[smtp][session]")
{
    harness h{options_with()};
    h.feed("XYZZY\r\n\r\nHELOX a\r\n");
    CHECK(h.take_events() == events{"500 5.5.1", "500 5.5.1", "500 5.5.1"});
    h.feed("STARTTLS\r\nAUTH PLAIN AAAA\r\nBDAT 10 LAST\r\nTURN\r\nETRN x\r\nATRN\r\n");
    CHECK(h.take_events() ==
          events{"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"});
}

TEST_CASE("QUIT replies 221 and closes and later input is ignored", "[smtp][session]")
{
    harness h{options_with()};
    h.feed("QUIT\r\nHELO after.quit\r\n");
    CHECK(h.take_events() == events{"221 2.0.0", "close"});
    CHECK(h.session().is_closed());
    h.feed("NOOP\r\n");
    CHECK(h.take_events().empty());
    CHECK(h.session().client_helo().empty());
}

TEST_CASE("QUIT with an argument is refused", "[smtp][session]")
{
    harness h{options_with()};
    h.feed("QUIT now\r\n");
    CHECK(h.take_events() == events{"501 5.5.4"});
    CHECK_FALSE(h.session().is_closed());
}

// ---------------------------------------------------------------------------------------------
// Sequence

TEST_CASE("bad sequences get 503 5.5.1", "[smtp][session]")
{
    harness h{options_with()};
    SECTION("MAIL, RCPT or DATA before HELO")
    {
        h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
        CHECK(h.take_events() == events{"503 5.5.1", "503 5.5.1", "503 5.5.1"});
    }
    SECTION("RCPT and DATA before MAIL")
    {
        h.feed("EHLO c\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
        CHECK(h.take_events() == events{"250", "503 5.5.1", "503 5.5.1"});
    }
    SECTION("DATA without a recipient")
    {
        h.feed("EHLO c\r\nMAIL FROM:<a@b.test>\r\nDATA\r\n");
        CHECK(h.take_events() == events{"250", "250 2.1.0", "503 5.5.1"});
        CHECK_FALSE(h.session().is_receiving_data());
    }
    SECTION("DATA when every RCPT failed")
    {
        h.feed("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bad>\r\nDATA\r\n");
        CHECK(h.take_events() == events{"250", "250 2.1.0", "501 5.1.3", "503 5.5.1"});
    }
    SECTION("nested MAIL")
    {
        h.feed("EHLO c\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<x@y.test>\r\n");
        CHECK(h.take_events() == events{"250", "250 2.1.0", "503 5.5.1"});
        CHECK(h.session().current_transaction().reverse_path == "a@b.test");
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments

TEST_CASE("argument errors of MAIL and RCPT", "[smtp][session]")
{
    harness h{options_with()};
    h.feed("EHLO c\r\n");
    h.take_events();
    h.feed("MAIL\r\nMAIL TO:<a@b.test>\r\nMAIL FROM:a@b.test\r\n");
    CHECK(h.take_events() == events{"501 5.5.2", "501 5.5.2", "501 5.5.2"});
    h.feed("MAIL FROM:<a b@c.test>\r\nMAIL FROM:<a@b..test>\r\n");
    CHECK(h.take_events() == events{"501 5.1.7", "501 5.1.7"});
    h.feed("MAIL FROM:<a@b.test> SIZE=ten\r\nMAIL FROM:<a@b.test> SIZE=1 SIZE=2\r\n");
    CHECK(h.take_events() == events{"501 5.5.4", "501 5.5.4"});
    h.feed("MAIL FROM:<a@b.test> SMTPUTF8\r\nMAIL FROM:<a@b.test> RET=FULL\r\n");
    CHECK(h.take_events() == events{"555 5.5.4", "555 5.5.4"});
    h.feed("MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n");
    CHECK(h.take_events() == events{"504 5.5.4"});

    h.feed("MAIL FROM: <a@b.test> BODY=7BIT\r\n"); // one space after the colon is tolerated
    CHECK(h.take_events() == events{"250 2.1.0"});
    CHECK(h.session().current_transaction().body == body_type::seven_bit);

    h.feed("RCPT\r\nRCPT FROM:<x@y.test>\r\nRCPT TO:x@y.test\r\n");
    CHECK(h.take_events() == events{"501 5.5.2", "501 5.5.2", "501 5.5.2"});
    h.feed("RCPT TO:<>\r\nRCPT TO:<x@>\r\nRCPT TO:<x\x01@y.test>\r\n");
    CHECK(h.take_events() == events{"501 5.1.3", "501 5.1.3", "501 5.1.3"});
    h.feed("RCPT TO:<x@y.test> NOTIFY=NEVER\r\n");
    CHECK(h.take_events() == events{"555 5.5.4"});
    h.feed("RCPT TO: <x@y.test>\r\nRCPT TO:<Postmaster>\r\n");
    CHECK(h.take_events() == events{"250 2.1.5", "250 2.1.5"});
}

TEST_CASE("DATA takes no argument", "[smtp][session]")
{
    harness h = in_transaction();
    h.feed("DATA now\r\n");
    CHECK(h.take_events() == events{"501 5.5.4"});
    CHECK_FALSE(h.session().is_receiving_data());
}

// ---------------------------------------------------------------------------------------------
// Limits

TEST_CASE("a declared SIZE over the maximum is refused at MAIL", "[smtp][session][size]")
{
    harness h{options_with(1000)};
    h.feed("EHLO c\r\nMAIL FROM:<a@b.test> SIZE=1001\r\nRCPT TO:<c@d.test>\r\n");
    CHECK(h.take_events() == events{"250", "552 5.3.4", "503 5.5.1"});
    h.feed("MAIL FROM:<a@b.test> SIZE=99999999999999999999\r\n");
    CHECK(h.take_events() == events{"552 5.3.4"});
    h.feed("MAIL FROM:<a@b.test> SIZE=1000\r\n");
    CHECK(h.take_events() == events{"250 2.1.0"});
}

TEST_CASE("actual content over the maximum is discarded with 552", "[smtp][session][size]")
{
    harness h = in_transaction(options_with(100));
    SECTION("exactly the maximum is accepted")
    {
        const std::string body = std::string(98, 'x') + "\r\n";
        CHECK(send_message(h, body) == events{"commit", "250 2.0.0"});
        CHECK(h.messages().back() == body);
    }
    SECTION("one octet more is refused after reading to the end")
    {
        const std::string body = std::string(99, 'x') + "\r\n";
        CHECK(send_message(h, body) == events{"discard", "552 5.3.4"});
        CHECK(h.messages().back().size() <= 100);
    }
    SECTION("far more: emitted content stops at the maximum, the data is read to its end")
    {
        std::string body;
        for (int i = 0; i < 200; ++i)
            body += "line " + std::to_string(i) + "\r\n";
        h.feed("DATA\r\n");
        h.take_events();
        for (char c : body)
            h.feed(std::string(1, c));
        CHECK(h.take_events().empty());
        CHECK(h.messages().back().size() <= 100);
        h.feed(".\r\nMAIL FROM:<a@b.test>\r\n");
        CHECK(h.take_events() == events{"discard", "552 5.3.4", "250 2.1.0"});
    }
    SECTION("the declared size does not replace the count")
    {
        h.feed("RSET\r\nMAIL FROM:<a@b.test> SIZE=10\r\nRCPT TO:<c@d.test>\r\n");
        CHECK(h.take_events() == events{"250 2.0.0", "250 2.1.0", "250 2.1.5"});
        CHECK(send_message(h, std::string(200, 'y') + "\r\n") == events{"discard", "552 5.3.4"});
    }
}

TEST_CASE("recipients over the maximum get 452 and the transaction goes on",
          "[smtp][session][recipients]")
{
    harness h{options_with(1000, 2)};
    h.feed("EHLO c\r\nMAIL FROM:<a@b.test>\r\n"
           "RCPT TO:<r1@d.test>\r\nRCPT TO:<r2@d.test>\r\nRCPT TO:<r3@d.test>\r\n"
           "RCPT TO:<r4@d.test>\r\n");
    CHECK(h.take_events() ==
          events{"250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "452 4.5.3", "452 4.5.3"});
    CHECK(h.session().current_transaction().recipients ==
          std::vector<std::string>{"r1@d.test", "r2@d.test"});
    CHECK(send_message(h, "hi\r\n") == events{"commit", "250 2.0.0"});
}

TEST_CASE("the bad-command cap closes with 421 4.7.0", "[smtp][session][errors]")
{
    harness h{options_with(1000, 100, 3)};
    h.feed("FOO\r\nHELO\r\n");
    CHECK(h.take_events() == events{"500 5.5.1", "501 5.5.2"});
    // Refusals of well-formed requests are not client mistakes.
    h.feed("EHLO c\r\nMAIL FROM:<a@b.test> SIZE=5000\r\n");
    CHECK(h.take_events() == events{"250", "552 5.3.4"});
    h.feed("RCPT TO:<x@y.test>\r\nNOOP\r\nQUIT\r\n");
    CHECK(h.take_events() == events{"503 5.5.1", "421 4.7.0", "close"});
    CHECK(h.session().is_closed());
    h.feed("EHLO c\r\n");
    CHECK(h.take_events().empty());
}

TEST_CASE("every kind of client mistake counts toward the cap", "[smtp][session][errors]")
{
    const std::vector<std::string> mistakes{
        "XYZZY\r\n",                     // 500 5.5.1
        "NOOP\n",                        // 500 5.5.2 bare LF
        "NO\0OP\r\n"s,                   // 500 5.5.2 NUL
        std::string(1200, 'a') + "\r\n", // 500 5.5.2 too long
        "STARTTLS\r\n",                  // 502
        "EXPN x\r\n",                    // 502
        "HELO\r\n",                      // 501
        "DATA\r\n",                      // 503
        "RSET x\r\n",                    // 501
    };
    for (const auto& mistake : mistakes) {
        INFO(mistake.substr(0, 20));
        harness h{options_with(1000, 100, 1)};
        h.feed(mistake);
        const events e = h.take_events();
        REQUIRE(e.size() == 3);
        CHECK(e[1] == "421 4.7.0");
        CHECK(e[2] == "close");
    }
}

// ---------------------------------------------------------------------------------------------
// Command line framing

TEST_CASE("command lines must end in CRLF", "[smtp][session][framing]")
{
    harness h{options_with()};
    h.feed("EHLO bare.lf\nNOOP\r\n");
    CHECK(h.take_events() == events{"500 5.5.2", "250 2.0.0"});
    CHECK(h.session().client_helo().empty()); // the bare-LF command was not executed
    h.feed("EHLO a\rb\r\nEHLO c\r\r\n");
    CHECK(h.take_events() == events{"500 5.5.2", "500 5.5.2"});
    h.feed("\n\r\n");
    CHECK(h.take_events() == events{"500 5.5.2", "500 5.5.1"});
}

TEST_CASE("a NUL in a command line is refused", "[smtp][session][framing]")
{
    harness h{options_with()};
    h.feed("EHLO a\0b\r\nEHLO c\r\n"s);
    CHECK(h.take_events() == events{"500 5.5.2", "250"});
    CHECK(h.session().client_helo() == "c");
}

TEST_CASE("command lines up to 1000 octets are accepted", "[smtp][session][framing]")
{
    harness h{options_with()};
    const std::string noop_1000 = "NOOP " + std::string(1000 - 7, 'x') + "\r\n";
    REQUIRE(noop_1000.size() == 1000);
    h.feed(noop_1000);
    CHECK(h.take_events() == events{"250 2.0.0"});

    const std::string noop_1001 = "NOOP " + std::string(1001 - 7, 'x') + "\r\n";
    h.feed(noop_1001 + "NOOP\r\n");
    CHECK(h.take_events() == events{"500 5.5.2", "250 2.0.0"});
}

TEST_CASE("an endless command line is refused once and never buffered", "[smtp][session][framing]")
{
    harness h{options_with()};
    const std::string block(64 * 1024, 'z');
    for (int i = 0; i < 64; ++i) // 4 MiB without a line end
        h.feed(block);
    CHECK(h.take_events() == events{"500 5.5.2"});
    h.feed("zzz\r\nNOOP\r\n");
    CHECK(h.take_events() == events{"250 2.0.0"});
}

TEST_CASE("an overlong line split just before its LF is still refused once",
          "[smtp][session][framing]")
{
    harness h{options_with()};
    h.feed("NOOP " + std::string(995, 'x')); // 1000 octets, the line cannot end in time
    h.feed("\r\n");
    CHECK(h.take_events() == events{"500 5.5.2"});
    h.feed("NOOP " + std::string(994, 'x')); // 999 octets: with CR and LF the line is 1001
    h.feed("\r");
    h.feed("\n");
    CHECK(h.take_events() == events{"500 5.5.2"});
    h.feed("NOOP " + std::string(993, 'x')); // 998 + CRLF = 1000
    h.feed("\r");
    h.feed("\n");
    CHECK(h.take_events() == events{"250 2.0.0"});
}

// ---------------------------------------------------------------------------------------------
// PIPELINING

TEST_CASE("a pipelined batch is answered in order in one feed", "[smtp][session][pipelining]")
{
    harness h{options_with()};
    h.feed("EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r1@d.test>\r\nRCPT TO:<bad>\r\n"
           "RCPT TO:<r2@d.test>\r\nDATA\r\nline 1\r\n..dot\r\n.\r\n"
           "MAIL FROM:<>\r\nRCPT TO:<r3@d.test>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\nNOOP\r\n");
    CHECK(h.take_events() == events{"250", "250 2.1.0", "250 2.1.5", "501 5.1.3", "250 2.1.5",
                                    "354", "begin", "commit", "250 2.0.0", "250 2.1.0", "250 2.1.5",
                                    "354", "begin", "commit", "250 2.0.0", "221 2.0.0", "close"});
    CHECK(h.messages() == std::vector<std::string>{"line 1\r\n.dot\r\n", "second\r\n"});
}

TEST_CASE("input after the final dot waits for stored() and then runs", "[smtp][session][store]")
{
    harness h = in_transaction();
    h.hold_stores();
    h.feed("DATA\r\nfirst\r\n.\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<z@mx.test>\r\nDATA\r\n"
           "second\r\n.\r\nQU");
    CHECK(h.take_events() == events{"354", "begin", "commit"});
    h.feed("IT\r\n"); // arrives while the store is pending: buffered, not processed
    CHECK(h.take_events().empty());
    CHECK(h.session().current_transaction().reverse_path == "a@client.test");

    h.stored("Q1");
    CHECK(h.take_events() ==
          events{"250 2.0.0", "250 2.1.0", "250 2.1.5", "354", "begin", "commit"});
    CHECK(h.session().current_transaction().reverse_path == "x@y.test");

    SECTION("stored")
    {
        h.stored("Q2");
        CHECK(h.take_events() == events{"250 2.0.0", "221 2.0.0", "close"});
    }
    SECTION("insufficient storage")
    {
        h.store_failed(store_error::insufficient_storage);
        CHECK(h.take_events() == events{"452 4.3.1", "221 2.0.0", "close"});
    }
    SECTION("local error")
    {
        h.store_failed(store_error::local_error);
        CHECK(h.take_events() == events{"451 4.3.0", "221 2.0.0", "close"});
    }
    CHECK(h.messages() == std::vector<std::string>{"first\r\n", "second\r\n"});
}

TEST_CASE("a failed store resets the transaction and keeps the session", "[smtp][session][store]")
{
    harness h = in_transaction();
    h.hold_stores();
    h.feed("DATA\r\nx\r\n.\r\n");
    CHECK(h.take_events() == events{"354", "begin", "commit"});
    h.store_failed(store_error::local_error);
    CHECK(h.take_events() == events{"451 4.3.0"});
    CHECK(h.session().current_transaction().recipients.empty());
    h.feed("RCPT TO:<b@mx.test>\r\nMAIL FROM:<a@client.test>\r\n");
    CHECK(h.take_events() == events{"503 5.5.1", "250 2.1.0"});
}

// ---------------------------------------------------------------------------------------------
// DATA framing and content

TEST_CASE("dot transparency: a leading dot is removed", "[smtp][session][data]")
{
    CHECK(stored_content("..\r\n") == ".\r\n");
    CHECK(stored_content("...\r\n") == "..\r\n");
    CHECK(stored_content(".hidden\r\n") == "hidden\r\n");
    CHECK(stored_content("..leading\r\nmiddle.dot\r\n.. \r\n") ==
          ".leading\r\nmiddle.dot\r\n. \r\n");
    CHECK(stored_content("a\r\n..\r\nb\r\n") == "a\r\n.\r\nb\r\n");
}

TEST_CASE("the end of data is CRLF.CRLF and nothing else", "[smtp][session][data][smuggling]")
{
    // Each smuggled end is followed by a command that must stay content; the real end follows.
    struct smuggle {
        std::string name;
        std::string wire;   // between "DATA\r\nA" and "\r\n.\r\n"
        std::string stored; // content stored for "A" + wire
    };
    const std::vector<smuggle> cases{
        {"<LF>.<LF>", "\n.\nMAIL FROM:<x@y.test>", "A\r\n.\r\nMAIL FROM:<x@y.test>\r\n"},
        {"<CR>.<CR>", "\r.\rMAIL FROM:<x@y.test>", "A\r\n.\r\nMAIL FROM:<x@y.test>\r\n"},
        {"<LF>.<CRLF>", "\n.\r\nMAIL FROM:<x@y.test>", "A\r\n.\r\nMAIL FROM:<x@y.test>\r\n"},
        {"<CRLF>.<LF>", "\r\n.\nMAIL FROM:<x@y.test>", "A\r\n.\r\nMAIL FROM:<x@y.test>\r\n"},
        {"<CRLF>.<CR>", "\r\n.\rMAIL FROM:<x@y.test>", "A\r\n.\r\nMAIL FROM:<x@y.test>\r\n"},
        {"<CR>.<CRLF>", "\r.\r\nMAIL FROM:<x@y.test>", "A\r\n.\r\nMAIL FROM:<x@y.test>\r\n"},
        {"<CR><LF><CR>.<CR><LF>", "\r\n\r.\r\nRSET", "A\r\n\r\n.\r\nRSET\r\n"},
        {"<LF><LF>.<LF><LF>", "\n\n.\n\nRSET", "A\r\n\r\n.\r\n\r\nRSET\r\n"},
        {"<CRLF>. <CRLF>", "\r\n. \r\nRSET", "A\r\n \r\nRSET\r\n"},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        harness h = in_transaction();
        h.feed("DATA\r\nA" + c.wire);
        CHECK(h.take_events() == events{"354", "begin"});
        CHECK(h.session().is_receiving_data());
        h.feed("\r\n.\r\n");
        CHECK(h.take_events() == events{"commit", "250 2.0.0"});
        CHECK(h.messages() == std::vector<std::string>{c.stored});
        CHECK(h.session().current_transaction().recipients.empty()); // no smuggled MAIL ran
    }
}

TEST_CASE("bare LF and bare CR in content are stored as CRLF", "[smtp][session][data]")
{
    CHECK(stored_content("a\nb\rc\r\n") == "a\r\nb\r\nc\r\n");
    CHECK(stored_content("a\r\r\n") == "a\r\n\r\n");
    CHECK(stored_content("a\n\r\n") == "a\r\n\r\n");
    CHECK(stored_content("\n\r\n") == "\r\n\r\n");
    // After a bare line end the final ".\r\n" is content: the end needs a real CRLF first.
    CHECK(stored_content("x\n") == std::nullopt);
    CHECK(stored_content("x\r") == std::nullopt);
    // A line after a bare line end is not a line start: no unstuffing there.
    CHECK(stored_content("a\n..b\r\n") == "a\r\n..b\r\n");
}

TEST_CASE("content with a NUL is refused at the end with 554 5.6.0", "[smtp][session][data]")
{
    harness h = in_transaction();
    CHECK(send_message(h, "a\0b\r\nmore\r\n"s) == events{"discard", "554 5.6.0"});
    CHECK(h.messages().front() == "a"); // nothing is handed out after the NUL
    CHECK(h.session().current_transaction().recipients.empty());
    CHECK(h.session().client_helo() == "client.test");
    // The session goes on: a new transaction without a new HELO.
    h.feed("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\n");
    CHECK(h.take_events() == events{"250 2.1.0", "250 2.1.5"});
    CHECK(send_message(h, "clean\r\n") == events{"commit", "250 2.0.0"});
    CHECK(h.messages().back() == "clean\r\n");
    CHECK(stored_content(".\0\r\n"s) == std::nullopt); // right after a leading dot
}

TEST_CASE("content lines over 998 octets are refused with 554 5.6.0", "[smtp][session][data]")
{
    const std::string line_998(998, 'x');
    CHECK(stored_content(line_998 + "\r\n") == line_998 + "\r\n");
    CHECK(stored_content("." + line_998 + "\r\n") == line_998 + "\r\n"); // stuffed dot
    CHECK(stored_content(line_998 + "\n" + line_998 + "\r\n") ==
          line_998 + "\r\n" + line_998 + "\r\n");

    harness h = in_transaction(options_with(10'000));
    CHECK(send_message(h, line_998 + "x\r\n") == events{"discard", "554 5.6.0"});
    h.feed("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\n");
    h.take_events();
    CHECK(send_message(h, "ok\r\n" + line_998 + "x\n\r\n") == events{"discard", "554 5.6.0"});
}

TEST_CASE("8-bit content passes byte for byte", "[smtp][session][data]")
{
    std::string body;
    for (int c = 1; c < 256; ++c) {
        if (c == '\r' || c == '\n')
            continue;
        body.push_back(static_cast<char>(c));
        if (c % 32 == 0)
            body += "\r\n";
    }
    body += "\r\n\xff\xfe.\xc3\xa9\r\n";
    CHECK(stored_content(body) == body);
}

TEST_CASE("content is handed out per feed, memory bounded for 100 MiB",
          "[smtp][session][data][large]")
{
    constexpr std::uint64_t mib = 1024 * 1024;
    harness h = in_transaction(options_with(200 * mib));
    h.feed("DATA\r\n");
    REQUIRE(h.take_events() == events{"354", "begin"});

    std::string block;
    while (block.size() < 64 * 1024 - 80)
        block += std::string(78, static_cast<char>('a' + block.size() % 26)) + "\r\n";
    const std::size_t feeds = 100 * mib / block.size() + 1;
    for (std::size_t i = 0; i < feeds; ++i)
        h.feed(block);
    CHECK(h.take_events().empty());
    CHECK(h.feeds_with_content() == feeds + 0); // every feed streamed its content at once
    CHECK(h.largest_chunk() <= block.size());
    h.feed(".\r\n");
    CHECK(h.take_events() == events{"commit", "250 2.0.0"});
    REQUIRE(h.messages().size() == 1);
    CHECK(h.messages().front().size() == feeds * block.size());
    CHECK(h.messages().front().size() >= 100 * mib);
}

// ---------------------------------------------------------------------------------------------
// Splitting: the same input in any chunks gives the same replies and content

namespace {

struct replay_result {
    events all;
    std::vector<std::string> messages;
};

replay_result replay(const server_options& options, std::string_view input,
                     const std::vector<std::size_t>& cuts)
{
    harness h{options};
    std::size_t from = 0;
    for (std::size_t cut : cuts) {
        h.feed(input.substr(from, cut - from));
        from = cut;
    }
    h.feed(input.substr(from));
    events all{describe(h.session().greeting())};
    all.insert(all.end(), h.all_events().begin(), h.all_events().end());
    return {all, h.messages()};
}

void check_every_split(const server_options& options, std::string_view input)
{
    const replay_result whole = replay(options, input, {});
    for (std::size_t cut = 0; cut <= input.size(); ++cut) {
        const replay_result split = replay(options, input, {cut});
        if (split.all != whole.all || split.messages != whole.messages) {
            INFO("split at offset " << cut);
            CHECK(split.all == whole.all);
            CHECK(split.messages == whole.messages);
            return;
        }
    }
    std::vector<std::size_t> every_byte(input.size());
    for (std::size_t i = 0; i < input.size(); ++i)
        every_byte[i] = i;
    const replay_result bytewise = replay(options, input, every_byte);
    INFO("byte by byte");
    CHECK(bytewise.all == whole.all);
    CHECK(bytewise.messages == whole.messages);
}

} // namespace

TEST_CASE("inputs split at every offset give identical results", "[smtp][session][split]")
{
    const std::vector<std::string> inputs{
        "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n..a\r\n\r\n.\n.\r.\r\n"
        ".\r\n.\r\nQUIT\r\n",
        "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nx\0y\r\n.\r\nNOOP\n"s,
        "NOOP " + std::string(1100, 'n') + "\r\nNOOP\r\n",
        "NOOP " + std::string(994, 'n') + "\r\nNOOP\r\n",
        "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n" + std::string(999, 'l') +
            "\r\n.\r\nRSET\r\n",
    };
    for (const auto& input : inputs)
        check_every_split(options_with(), input);
}

// ---------------------------------------------------------------------------------------------
// Transcripts: tests/data/smtp-transcripts/*.in (format in README.md there)

namespace {

std::string read_file(const std::filesystem::path& path)
{
    std::ifstream in{path, std::ios::binary};
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

std::vector<std::string> split_lines(const std::string& text)
{
    std::vector<std::string> lines;
    std::istringstream in{text};
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        lines.push_back(line);
    }
    return lines;
}

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    FAIL("bad hex digit in transcript: " << c);
    return 0;
}

// One line of escaped bytes: \r \n \t \0 \\ \xHH and \[N*c] (the byte c repeated N times).
std::string unescape(const std::string& line)
{
    std::string out;
    for (std::size_t i = 0; i < line.size(); ++i) {
        if (line[i] != '\\') {
            out.push_back(line[i]);
            continue;
        }
        REQUIRE(i + 1 < line.size());
        const char e = line[++i];
        switch (e) {
        case 'r':
            out.push_back('\r');
            break;
        case 'n':
            out.push_back('\n');
            break;
        case 't':
            out.push_back('\t');
            break;
        case '0':
            out.push_back('\0');
            break;
        case '\\':
            out.push_back('\\');
            break;
        case 'x':
            REQUIRE(i + 2 < line.size());
            out.push_back(static_cast<char>(hex_digit(line[i + 1]) * 16 + hex_digit(line[i + 2])));
            i += 2;
            break;
        case '[': {
            const std::size_t star = line.find('*', i);
            REQUIRE(star != std::string::npos);
            REQUIRE(star + 2 < line.size());
            REQUIRE(line[star + 2] == ']');
            const auto count = std::stoul(line.substr(i + 1, star - i - 1));
            out.append(count, line[star + 1]);
            i = star + 2;
            break;
        }
        default:
            FAIL("unknown escape in transcript: \\" << e);
        }
    }
    return out;
}

struct transcript {
    std::string name;
    server_options options = options_with();
    std::string input;
    events expected;
    std::optional<std::string> expected_content; // all messages, concatenated
};

// "#option key=value ..." lines set options, other "#" lines are comments, the rest is bytes.
std::string read_escaped(const std::filesystem::path& path, server_options* options)
{
    std::string bytes;
    for (const auto& line : split_lines(read_file(path))) {
        if (line.rfind("#option ", 0) == 0 && options) {
            std::istringstream words{line.substr(8)};
            for (std::string word; words >> word;) {
                const auto equals = word.find('=');
                REQUIRE(equals != std::string::npos);
                const std::string key = word.substr(0, equals);
                const std::string value = word.substr(equals + 1);
                if (key == "hostname")
                    options->hostname = value;
                else if (key == "max_message_size")
                    options->max_message_size = std::stoull(value);
                else if (key == "max_recipients")
                    options->max_recipients = std::stoul(value);
                else if (key == "max_bad_commands")
                    options->max_bad_commands = std::stoul(value);
                else
                    FAIL("unknown transcript option " << key);
            }
        } else if (line.empty() || line.front() != '#') {
            bytes += unescape(line);
        }
    }
    return bytes;
}

std::vector<transcript> load_transcripts()
{
    const std::filesystem::path dir =
        std::filesystem::path{LEAFMAIL_TEST_DATA} / "smtp-transcripts";
    std::vector<std::filesystem::path> inputs;
    for (const auto& entry : std::filesystem::directory_iterator{dir})
        if (entry.path().extension() == ".in")
            inputs.push_back(entry.path());
    std::sort(inputs.begin(), inputs.end());

    std::vector<transcript> result;
    for (const auto& in_path : inputs) {
        transcript t;
        t.name = in_path.stem().string();
        t.input = read_escaped(in_path, &t.options);
        auto ref_path = in_path;
        ref_path.replace_extension(".ref");
        for (const auto& line : split_lines(read_file(ref_path)))
            if (!line.empty() && line.front() != '#')
                t.expected.push_back(line);
        auto content_path = in_path;
        content_path.replace_extension(".content");
        if (std::filesystem::exists(content_path))
            t.expected_content = read_escaped(content_path, nullptr);
        result.push_back(std::move(t));
    }
    return result;
}

} // namespace

TEST_CASE("transcripts give their expected replies, whole and split everywhere",
          "[smtp][session][transcript]")
{
    const auto transcripts = load_transcripts();
    REQUIRE(transcripts.size() >= 8);
    for (const auto& t : transcripts) {
        INFO("transcript " << t.name);
        const replay_result whole = replay(t.options, t.input, {});
        CHECK(whole.all == t.expected);
        if (t.expected_content) {
            std::string content;
            for (const auto& m : whole.messages)
                content += m;
            CHECK(content == *t.expected_content);
        }
        check_every_split(t.options, t.input);
    }
}
