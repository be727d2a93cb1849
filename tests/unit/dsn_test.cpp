// Delivery status notifications and the per-recipient state machine of a relay attempt.
#include "leafmail/relay/delivery.hpp"
#include "leafmail/relay/dsn.hpp"
#include "leafmail/smtp/reply_parser.hpp"
#include "leafmail/trace.hpp"

#include <catch2/catch.hpp>

using namespace leafmail;
using namespace leafmail::relay;

namespace {

spool::envelope sample_envelope()
{
    spool::envelope env;
    env.id = "0005f0e1a2b3c4d5-00001234-0001";
    env.queued_at = 1700000000;
    env.reverse_path = "alice@example.org";
    for (const char* a : {"ok@x", "later@x", "gone@x", "done@x"}) {
        spool::recipient r;
        r.address = a;
        env.recipients.push_back(r);
    }
    env.recipients[3].state = spool::recipient_state::delivered;
    return env;
}

} // namespace

TEST_CASE("status of a reply", "[dsn]")
{
    CHECK(status_of(smtp::reply{550, "5.1.1", {"no such user"}}) == "5.1.1");
    CHECK(status_of(smtp::reply{552, "", {"message too big"}}) == "5.0.0");
    CHECK(status_of(smtp::reply{451, "4.3.0", {"later"}}) == "4.3.0");
    CHECK(status_of(smtp::reply{}) == "5.0.0");
    // The parser keeps no enhanced code whose class differs from the reply's.
    smtp::reply_parser parser;
    parser.feed("550 4.1.1 class mismatch\r\n");
    const auto parsed = parser.next();
    REQUIRE(parsed.has_value());
    CHECK(status_of(*parsed) == "5.0.0");
}

TEST_CASE("header section of the original", "[dsn]")
{
    CHECK(header_section("A: 1\r\nB: 2\r\n\r\nbody\r\n", 1000) == "A: 1\r\nB: 2\r\n");
    CHECK(header_section("A: 1\r\n folded\r\n\r\n", 1000) == "A: 1\r\n folded\r\n");
    CHECK(header_section("A: 1\r\nB: 2\r\n\r\n", 8) == "A: 1\r\n"); // cut at a line end
    CHECK(header_section("no end of line", 1000).empty());
    CHECK(header_section("\r\nbody", 1000).empty());
}

TEST_CASE("never notify the null sender or about a notification", "[dsn]")
{
    auto env = sample_envelope();
    CHECK(should_notify(env));
    env.reverse_path.clear();
    CHECK_FALSE(should_notify(env));
    env.reverse_path = "a@b";
    env.is_bounce = 1;
    CHECK_FALSE(should_notify(env));
}

TEST_CASE("DSN: multipart/report naming each failed recipient", "[dsn]")
{
    dsn_request r;
    r.reporting_host = "client.example";
    r.remote_host = "smtp.example.net";
    r.queue_id = "0005f0e1a2b3c4d5-00001234-0001";
    r.message_id = "id.dsn";
    r.sender = "alice@example.org";
    r.arrival_date = 1700000000;
    r.now = 1700000100;
    r.recipients = {{"gone@x", "5.1.1", "550 5.1.1 no such user", true, "root"},
                    {"old@x", "4.4.7", "delivery time expired", false, ""}};
    r.original_headers = "Subject: hello\r\nFrom: alice@example.org\r\n";
    std::string m = make_dsn(r);
    // RFC 3464 section 2.3.1: the recipient as given, before an alias replaced it; only then.
    CHECK(
        m.find("\r\n\r\nOriginal-Recipient: rfc822; root\r\nFinal-Recipient: rfc822; gone@x\r\n") !=
        std::string::npos);
    CHECK(m.find("Original-Recipient: rfc822; old@x") == std::string::npos);
    CHECK(m.find("Original-Recipient") == m.rfind("Original-Recipient"));
    CHECK(m.find("To: <alice@example.org>\r\n") != std::string::npos);
    CHECK(m.find("Auto-Submitted: auto-replied\r\n") != std::string::npos);
    CHECK(m.find("Content-Type: multipart/report; report-type=delivery-status;") !=
          std::string::npos);
    CHECK(m.find("Reporting-MTA: dns; client.example\r\n") != std::string::npos);
    CHECK(m.find("Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n") != std::string::npos);
    CHECK(m.find("Final-Recipient: rfc822; gone@x\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                 "Remote-MTA: dns; smtp.example.net\r\nDiagnostic-Code: smtp; 550 5.1.1 no such "
                 "user\r\n") != std::string::npos);
    CHECK(m.find("Final-Recipient: rfc822; old@x\r\nAction: failed\r\nStatus: 4.4.7\r\n"
                 "Diagnostic-Code: X-leafmail; delivery time expired\r\n") != std::string::npos);
    CHECK(m.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\n") !=
          std::string::npos);
    std::string boundary = "=_leafmail_0005f0e1a2b3c4d5-00001234-0001_1700000100";
    CHECK(m.ends_with("--" + boundary + "--\r\n"));
    // Every line ends in CRLF and stays below the RFC 5322 limit.
    std::size_t start = 0;
    for (std::size_t lf; (lf = m.find('\n', start)) != std::string::npos; start = lf + 1) {
        REQUIRE(lf > 0);
        CHECK(m[lf - 1] == '\r');
        CHECK(lf - start < 998);
    }
    CHECK(start == m.size());
}

TEST_CASE("apply_result: 2xx delivered, 4xx pending with the reply, 5xx failed", "[dsn]")
{
    auto env = sample_envelope();
    env.recipients[2].original_address = "postmaster";
    std::vector<std::size_t> sent;
    auto out = outgoing_for(env, 9, sent);
    CHECK(out.tag == 9);
    CHECK(out.reverse_path == "alice@example.org");
    CHECK(out.recipients == std::vector<std::string>{"ok@x", "later@x", "gone@x"});
    CHECK(sent == std::vector<std::size_t>{0, 1, 2});

    smtp::message_result result{9, true, {}};
    result.recipients = {
        {0, "ok@x", smtp::delivery_status::delivered, {250, "2.0.0", {"ok"}}},
        {1, "later@x", smtp::delivery_status::deferred, {450, "4.2.0", {"busy"}}},
        {2, "gone@x", smtp::delivery_status::failed, {550, "5.1.1", {"no such user"}}}};
    auto failed = apply_result(env, sent, result, 1700000500);
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].address == "gone@x");
    CHECK(failed[0].status == "5.1.1");
    CHECK(failed[0].diagnostic == "550 5.1.1 no such user");
    CHECK(failed[0].original == "postmaster"); // for the notification's Original-Recipient
    CHECK(env.recipients[0].state == spool::recipient_state::delivered);
    CHECK(env.recipients[1].state == spool::recipient_state::pending);
    CHECK(env.recipients[1].attempts == 1);
    CHECK(env.recipients[1].last_reply == "450 4.2.0 busy");
    CHECK(env.recipients[1].last_attempt_at == 1700000500);
    CHECK(env.recipients[2].state == spool::recipient_state::failed);
    CHECK(env.recipients[3].attempts == 0); // delivered earlier, not part of this attempt
    CHECK(env.has_pending());

    // The next attempt carries only the pending one.
    auto again = outgoing_for(env, 10, sent);
    CHECK(again.recipients == std::vector<std::string>{"later@x"});
    CHECK(sent == std::vector<std::size_t>{1});
}

TEST_CASE("expiry fails the pending recipients with 4.4.7", "[dsn]")
{
    auto env = sample_envelope();
    env.recipients[1].last_reply = "450 4.2.0 busy";
    CHECK_FALSE(is_expired(env, env.queued_at + 100, std::chrono::seconds(100)));
    CHECK(is_expired(env, env.queued_at + 101, std::chrono::seconds(100)));
    auto failed = expire(env, env.queued_at + 5 * 86400);
    CHECK(failed.size() == 3);
    CHECK(failed[1].status == "4.4.7");
    CHECK_FALSE(failed[1].from_smarthost);
    CHECK(failed[1].diagnostic.find("last reply: 450 4.2.0 busy") != std::string::npos);
    CHECK_FALSE(env.has_pending());
    CHECK(env.recipients[3].state == spool::recipient_state::delivered);
    CHECK_FALSE(is_expired(env, env.queued_at + 10 * 86400, std::chrono::seconds(100)));
}

TEST_CASE("DSN: Remote-MTA names a host by name and an address as an address literal", "[dsn]")
{
    dsn_request r;
    r.reporting_host = "client.example";
    r.queue_id = "0005f0e1a2b3c4d5-00001234-0001";
    r.sender = "alice@example.org";
    r.recipients = {{"gone@x", "5.1.1", "550 5.1.1 no such user", true, ""}};
    r.remote_host = "127.0.0.1";
    CHECK(make_dsn(r).find("Remote-MTA: dns; [127.0.0.1]\r\n") != std::string::npos);
    r.remote_host = "::1";
    CHECK(make_dsn(r).find("Remote-MTA: dns; [IPv6:::1]\r\n") != std::string::npos);
    r.remote_host = "smtp.example.net";
    CHECK(make_dsn(r).find("Remote-MTA: dns; smtp.example.net\r\n") != std::string::npos);
}

TEST_CASE("DSN: a delay warning says delayed and until when it is retried", "[dsn]")
{
    dsn_request r;
    r.reporting_host = "leaf.example";
    r.remote_host = "smarthost.example";
    r.queue_id = "0005f0e1a2b3c4d5-00001234-0001";
    r.message_id = "0005f0e1a2b3c4d5-00001234-0002.dsn";
    r.sender = "alice@example.org";
    r.arrival_date = 1700000000;
    r.now = 1700014400;
    r.delayed = true;
    r.will_retry_until = 1700432000;
    r.recipients.push_back({"later@x", "4.2.0", "450 4.2.0 mailbox busy", true, ""});
    const std::string m = make_dsn(r);
    CHECK(m.find("Subject: Delayed Mail (still being retried)\r\n") != std::string::npos);
    CHECK(m.find("Action: delayed\r\n") != std::string::npos);
    CHECK(m.find("Action: failed") == std::string::npos);
    CHECK(m.find("Status: 4.2.0\r\n") != std::string::npos);
    CHECK(m.find("Diagnostic-Code: smtp; 450 4.2.0 mailbox busy\r\n") != std::string::npos);
    CHECK(m.find("Will-Retry-Until: " + rfc5322_date(1700432000) + "\r\n") != std::string::npos);
    CHECK(m.find("Undelivered") == std::string::npos);
}
