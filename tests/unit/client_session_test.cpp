// The SMTP client core driven by scripted server transcripts, whole and split at every byte.
#include "leafmail/smtp/client_session.hpp"

#include <catch2/catch.hpp>

#include <deque>
#include <map>
#include <string>
#include <vector>

using namespace leafmail::smtp;

namespace {

struct driver_result {
    std::string sent;               // every command's wire bytes, "<content N>" for content
    std::vector<std::string> shown; // what --verbose would print
    std::map<std::uint64_t, message_result> results;
    std::vector<std::uint64_t> result_order;
    std::size_t transactions_finished = 0;
    bool finished = false;
    std::optional<reply> failure;
    int tls_handshakes = 0;
};

/// Plays the transport: answers request_message from a queue, "handshakes" at start_tls.
class driver {
public:
    driver(client_options options, std::vector<outgoing_message> messages)
        : session_(std::move(options)), messages_(messages.begin(), messages.end())
    {
    }

    void feed(std::string_view bytes) { handle(session_.feed(bytes)); }
    void lose(std::string_view why) { handle(session_.connection_lost(why)); }
    client_session& session() { return session_; }
    driver_result result;

private:
    void handle(std::vector<client_effect> effects)
    {
        for (auto& e : effects) {
            if (auto* c = std::get_if<send_command>(&e)) {
                result.sent += c->wire;
                result.shown.push_back(c->shown);
            } else if (std::get_if<start_tls>(&e)) {
                ++result.tls_handshakes;
                result.sent += "<tls>";
                handle(session_.tls_established());
            } else if (std::get_if<request_message>(&e)) {
                if (messages_.empty()) {
                    handle(session_.no_more_messages());
                } else {
                    auto m = messages_.front();
                    messages_.pop_front();
                    handle(session_.message(m));
                }
            } else if (auto* s = std::get_if<send_message_content>(&e)) {
                result.sent += "<content " + std::to_string(s->tag) + ">";
            } else if (auto* f = std::get_if<message_finished>(&e)) {
                // One result per transaction: gather them per message, by recipient index.
                auto& gathered = result.results[f->result.tag];
                gathered.tag = f->result.tag;
                gathered.attempted = gathered.attempted || f->result.attempted;
                gathered.last = f->result.last;
                for (const auto& r : f->result.recipients) {
                    if (gathered.recipients.size() <= r.index)
                        gathered.recipients.resize(r.index + 1);
                    gathered.recipients[r.index] = r;
                }
                ++result.transactions_finished;
                result.result_order.push_back(f->result.tag);
            } else if (auto* cf = std::get_if<connection_finished>(&e)) {
                result.finished = true;
                result.failure = cf->failure;
            }
        }
    }

    client_session session_;
    std::deque<outgoing_message> messages_;
};

/// Runs a transcript in pieces: the server bytes of each piece are fed split at `split`
/// (relative to the piece); pieces are separated where the client must act first (TLS).
driver_result run(const client_options& options, const std::vector<outgoing_message>& messages,
                  const std::vector<std::string>& pieces, std::size_t split = 0)
{
    driver d(options, messages);
    for (const auto& piece : pieces) {
        std::size_t at = std::min(split, piece.size());
        d.feed(std::string_view(piece).substr(0, at));
        d.feed(std::string_view(piece).substr(at));
    }
    if (!d.result.finished)
        d.lose("closed by the server"); // the transcript ends: the server hangs up
    return d.result;
}

/// The same transcript at every split offset must give the same outcome.
driver_result run_all_splits(const client_options& options,
                             const std::vector<outgoing_message>& messages,
                             const std::vector<std::string>& pieces)
{
    driver_result whole = run(options, messages, pieces);
    std::size_t longest = 0;
    for (auto& p : pieces)
        longest = std::max(longest, p.size());
    for (std::size_t split = 1; split <= longest; ++split) {
        driver_result part = run(options, messages, pieces, split);
        INFO("split at " << split);
        REQUIRE(part.sent == whole.sent);
        REQUIRE(part.finished == whole.finished);
        REQUIRE(part.result_order == whole.result_order);
    }
    return whole;
}

client_options plain_options()
{
    client_options o;
    o.helo = "client.example";
    o.tls = client_tls::none;
    return o;
}

outgoing_message msg(std::uint64_t tag, std::vector<std::string> rcpts, std::uint64_t size = 100,
                     bool has_8bit = false)
{
    return outgoing_message{tag, "sender@example.org", std::move(rcpts), size, has_8bit};
}

const std::string ehlo_pipelining =
    "250-smarthost.example\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n"
    "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
const std::string ehlo_basic = "250-smarthost.example\r\n250 SIZE\r\n";

} // namespace

TEST_CASE("reply parser: single, multi-line, enhanced codes, any split", "[client_session]")
{
    const std::string input =
        "220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        "550 5.1.1 <x@y>: no such user\r\n451-4.3.0 first\r\n451 4.3.0 second\r\n"
        "354\r\n250 2.0.0\r\n";
    for (std::size_t split = 0; split <= input.size(); ++split) {
        reply_parser p;
        std::vector<reply> got;
        p.feed(input.substr(0, split));
        while (auto r = p.next())
            got.push_back(*r);
        p.feed(input.substr(split));
        while (auto r = p.next())
            got.push_back(*r);
        INFO("split " << split);
        REQUIRE_FALSE(p.has_error());
        REQUIRE(got.size() == 6);
        CHECK(got[0].code == 220);
        CHECK(got[0].lines == std::vector<std::string>{"mx.example ESMTP"});
        CHECK(got[1].lines.size() == 3);
        CHECK(got[2].code == 550);
        CHECK(got[2].enhanced == "5.1.1");
        CHECK(got[2].lines[0] == "<x@y>: no such user");
        CHECK(got[3].enhanced == "4.3.0");
        CHECK(got[3].lines == std::vector<std::string>{"first", "second"});
        CHECK(got[4].code == 354);
        CHECK(got[5].enhanced == "2.0.0");
        CHECK_FALSE(p.has_buffered_input());
    }
}

TEST_CASE("reply parser: malformed input is an error, not an exception", "[client_session]")
{
    for (std::string bad :
         {"hello\r\n", "2500 x\r\n", "250-a\r\n251 b\r\n", "650 x\r\n", "25\r\n"}) {
        reply_parser p;
        p.feed(bad);
        while (p.next()) {
        }
        INFO(bad);
        CHECK(p.has_error());
    }
    reply_parser p;
    p.feed(std::string(reply_parser::max_line_length + 10, 'x'));
    CHECK_FALSE(p.next());
    CHECK(p.has_error());
    // An enhanced code whose class disagrees with the reply code stays text.
    reply_parser q;
    q.feed("250 5.1.1 odd\r\n");
    auto r = q.next();
    REQUIRE(r);
    CHECK(r->enhanced.empty());
    CHECK(r->lines[0] == "5.1.1 odd");
}

TEST_CASE("EHLO capabilities", "[client_session]")
{
    reply r{250,
            "",
            {"mx.example hi", "pipelining", "SIZE 52428800", "8BITMIME", "STARTTLS",
             "AUTH PLAIN login", "AUTH=CRAM-MD5", "ENHANCEDSTATUSCODES"}};
    auto caps = parse_ehlo_reply(r);
    CHECK(caps.esmtp);
    CHECK(caps.pipelining);
    CHECK(caps.size);
    CHECK(caps.size_limit == 52428800u);
    CHECK(caps.eight_bit_mime);
    CHECK(caps.starttls);
    CHECK(caps.enhanced_status_codes);
    CHECK(caps.auth_mechanisms == std::vector<std::string>{"PLAIN", "LOGIN", "CRAM-MD5"});
    auto zero = parse_ehlo_reply(reply{250, "", {"x", "SIZE 0"}});
    CHECK(zero.size);
    CHECK_FALSE(zero.size_limit);
}

TEST_CASE("one message without PIPELINING, per-recipient results", "[client_session]")
{
    auto res =
        run_all_splits(plain_options(), {msg(7, {"a@x", "b@x", "c@x"})},
                       {"220 mx ESMTP\r\n" + ehlo_basic +
                        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n450 4.2.0 busy\r\n550 5.1.1 unknown\r\n"
                        "354 go\r\n250 2.0.0 queued as X\r\n221 bye\r\n"});
    CHECK(res.sent ==
          "EHLO client.example\r\nMAIL FROM:<sender@example.org> SIZE=100\r\n"
          "RCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n<content 7>QUIT\r\n");
    REQUIRE(res.finished);
    CHECK_FALSE(res.failure);
    auto& r = res.results.at(7);
    CHECK(r.attempted);
    REQUIRE(r.recipients.size() == 3);
    CHECK(r.recipients[0].status == delivery_status::delivered);
    CHECK(r.recipients[0].why.code == 250);
    CHECK(r.recipients[1].status == delivery_status::deferred);
    CHECK(r.recipients[1].why.code == 450);
    CHECK(r.recipients[2].status == delivery_status::failed);
    CHECK(r.recipients[2].why.enhanced == "5.1.1");
}

TEST_CASE("PIPELINING: one batch per message, next envelope behind the final dot",
          "[client_session]")
{
    auto res = run_all_splits(plain_options(), {msg(1, {"a@x", "b@x"}), msg(2, {"c@x"}, 200, true)},
                              {"220 mx ESMTP\r\n" + ehlo_pipelining +
                               "250 2.1.0\r\n250 2.1.5\r\n250 2.1.5\r\n354 go\r\n"
                               "250 2.0.0 one\r\n250 2.1.0\r\n250 2.1.5\r\n354 go\r\n"
                               "250 2.0.0 two\r\n221 2.0.0 bye\r\n"});
    CHECK(res.sent ==
          "EHLO client.example\r\n"
          "MAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
          "<content 1>"
          "MAIL FROM:<sender@example.org> SIZE=200 BODY=8BITMIME\r\nRCPT TO:<c@x>\r\nDATA\r\n"
          "<content 2>QUIT\r\n");
    CHECK(res.result_order == std::vector<std::uint64_t>{1, 2});
    CHECK(res.results.at(1).recipients[1].status == delivery_status::delivered);
    CHECK(res.results.at(2).recipients[0].why.lines[0] == "two");
    CHECK_FALSE(res.failure);
}

TEST_CASE("PIPELINING: the next message goes out before the previous dot's reply",
          "[client_session]")
{
    driver d(plain_options(), {msg(1, {"a@x"}), msg(2, {"b@x"})});
    d.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 ok\r\n354 go\r\n");
    // Round trip saving of RFC 2920: content 1, then envelope 2, without waiting.
    CHECK(d.result.sent.ends_with("<content 1>MAIL FROM:<sender@example.org> SIZE=100\r\n"
                                  "RCPT TO:<b@x>\r\nDATA\r\n"));
    CHECK(d.session().waiting_for() == wait_kind::final_dot);
    CHECK(d.result.results.empty());
    d.feed("250 done 1\r\n");
    CHECK(d.result.results.count(1));
    CHECK(d.session().waiting_for() == wait_kind::command);
}

TEST_CASE("PIPELINING: rejected MAIL or all RCPTs, RSET before the next one", "[client_session]")
{
    auto res =
        run_all_splits(plain_options(), {msg(1, {"a@x"}), msg(2, {"b@x"}), msg(3, {"c@x"})},
                       {"220 mx\r\n" + ehlo_pipelining +
                        "550 5.7.1 sender refused\r\n503 5.5.1 no mail\r\n503 5.5.1 no rcpt\r\n"
                        "250 ok\r\n550 5.1.1 nobody\r\n554 5.5.1 no valid recipients\r\n"
                        "250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 ok\r\n221 bye\r\n"});
    CHECK(res.results.at(1).recipients[0].status == delivery_status::failed);
    CHECK(res.results.at(1).recipients[0].why.code == 550);
    CHECK(res.results.at(2).recipients[0].why.enhanced == "5.1.1");
    CHECK(res.results.at(3).recipients[0].status == delivery_status::delivered);
    // The RSET goes before message 3 because message 2's MAIL was accepted.
    CHECK(res.sent.find("RSET\r\nMAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<c@x>") !=
          std::string::npos);
}

TEST_CASE("DATA accepted with no recipient: a lone dot keeps the session in step",
          "[client_session]")
{
    auto res = run_all_splits(plain_options(), {msg(1, {"a@x"})},
                              {"220 mx\r\n" + ehlo_pipelining +
                               "250 ok\r\n550 no\r\n354 go anyway\r\n250 empty\r\n221 bye\r\n"});
    CHECK(res.sent.ends_with("DATA\r\n.\r\nQUIT\r\n"));
    CHECK(res.results.at(1).recipients[0].status == delivery_status::failed);
    CHECK_FALSE(res.failure);
}

TEST_CASE("5xx and 4xx after the final dot", "[client_session]")
{
    auto res =
        run_all_splits(plain_options(), {msg(1, {"a@x", "b@x"}), msg(2, {"c@x"})},
                       {"220 mx\r\n" + ehlo_pipelining +
                        "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n554 5.6.0 content rejected\r\n"
                        "250 ok\r\n250 ok\r\n354 go\r\n452 4.3.1 full\r\n221 bye\r\n"});
    for (auto& r : res.results.at(1).recipients) {
        CHECK(r.status == delivery_status::failed);
        CHECK(r.why.code == 554);
    }
    CHECK(res.results.at(2).recipients[0].status == delivery_status::deferred);
    CHECK(res.results.at(2).recipients[0].why.code == 452);
}

TEST_CASE("DATA answered with anything but 354 never counts as delivered", "[client_session]")
{
    // A server out of step (or lying) that says 250 to DATA has not received the content:
    // taking it as delivered would remove a message that was never sent.
    auto res = run_all_splits(
        plain_options(), {msg(1, {"a@x"})},
        {"220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 ok\r\n250 ok\r\n221 bye\r\n"});
    REQUIRE(res.results.count(1) == 1);
    CHECK(res.results.at(1).recipients[0].status == delivery_status::deferred);
}

TEST_CASE("connection lost after the final dot: unconfirmed, not delivered", "[client_session]")
{
    driver d(plain_options(), {msg(1, {"a@x"}), msg(2, {"b@x"})});
    d.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 ok\r\n354 go\r\n");
    REQUIRE(d.result.results.empty());
    d.lose("connection reset during DATA");
    REQUIRE(d.result.finished);
    REQUIRE(d.result.failure);
    CHECK(d.result.failure->code == 451);
    CHECK(d.result.result_order == std::vector<std::uint64_t>{1, 2});
    // Message 1's dot went out: it may have arrived. Message 2 never got as far.
    CHECK(d.result.results.at(1).recipients[0].status == delivery_status::unconfirmed);
    CHECK(d.result.results.at(1).recipients[0].why.lines[0] == "connection reset during DATA");
    CHECK(d.result.results.at(2).recipients[0].status == delivery_status::deferred);
}

TEST_CASE("lost with a pipelined batch in flight: refusals already read stay final",
          "[client_session]")
{
    driver d(plain_options(), {msg(1, {"a@x", "b@x"})});
    d.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\n550 5.1.1 gone\r\n");
    d.lose("timeout");
    auto& r = d.result.results.at(1).recipients;
    CHECK(r[0].status == delivery_status::failed);
    CHECK(r[1].status == delivery_status::deferred);
}

TEST_CASE("EHLO refused: HELO fallback, no extensions used", "[client_session]")
{
    auto res = run_all_splits(
        plain_options(), {msg(1, {"a@x"}, 100, true)},
        {"220 old\r\n500 what\r\n250 old\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n"});
    CHECK(res.sent ==
          "EHLO client.example\r\nHELO client.example\r\nMAIL FROM:<sender@example.org>\r\n"
          "RCPT TO:<a@x>\r\nDATA\r\n<content 1>QUIT\r\n");
    CHECK(res.results.at(1).recipients[0].status == delivery_status::delivered);
}

TEST_CASE("greeting refused, 421 mid-session", "[client_session]")
{
    auto refused = run_all_splits(plain_options(), {msg(1, {"a@x"})}, {"554 5.3.2 go away\r\n"});
    REQUIRE(refused.failure);
    CHECK(refused.failure->code == 554);
    CHECK(refused.results.empty());
    // RFC 5321 section 3.1: after a 554 greeting the server waits for our QUIT.
    CHECK(refused.sent == "QUIT\r\n");

    auto closing = run_all_splits(plain_options(), {msg(1, {"a@x"})},
                                  {"220 mx\r\n" + ehlo_pipelining + "421 4.3.2 shutting down\r\n"});
    REQUIRE(closing.failure);
    CHECK(closing.failure->code == 421);
    CHECK(closing.results.at(1).recipients[0].status == delivery_status::deferred);
    CHECK(closing.sent.ends_with("DATA\r\nQUIT\r\n"));
}

TEST_CASE("SIZE limit: an oversized message fails without being sent", "[client_session]")
{
    auto res = run_all_splits(
        plain_options(), {msg(1, {"a@x"}, 2000000), msg(2, {"b@x"})},
        {"220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n"});
    CHECK(res.results.at(1).recipients[0].status == delivery_status::failed);
    CHECK(res.results.at(1).recipients[0].why.code == 552);
    CHECK_FALSE(res.results.at(1).attempted);
    CHECK(res.sent.find("SIZE=2000000") == std::string::npos);
    CHECK(res.results.at(2).recipients[0].status == delivery_status::delivered);
}

TEST_CASE("8-bit content without 8BITMIME offered: no BODY parameter", "[client_session]")
{
    auto res = run(plain_options(), {msg(1, {"a@x"}, 10, true)},
                   {"220 mx\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n250 "
                    "ok\r\n221 bye\r\n"});
    CHECK(res.sent.find("MAIL FROM:<sender@example.org>\r\n") != std::string::npos);
    CHECK(res.sent.find("BODY=") == std::string::npos);
}

TEST_CASE("max_messages: QUIT after the limit, pipelined behind the dot", "[client_session]")
{
    auto options = plain_options();
    options.max_messages = 1;
    driver d(options, {msg(1, {"a@x"}), msg(2, {"b@x"})});
    d.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 ok\r\n354 go\r\n");
    CHECK(d.result.sent.ends_with("<content 1>QUIT\r\n"));
    d.feed("250 ok\r\n221 bye\r\n");
    CHECK(d.result.finished);
    CHECK_FALSE(d.result.failure);
    CHECK(d.result.results.size() == 1);
    CHECK(d.session().messages_started() == 1);
}

TEST_CASE("STARTTLS: required, re-EHLO after the handshake", "[client_session]")
{
    auto options = plain_options();
    options.tls = client_tls::starttls;
    auto res = run_all_splits(
        options, {msg(1, {"a@x"})},
        {"220 mx\r\n250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n220 2.0.0 go ahead\r\n",
         ehlo_pipelining + "250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n"});
    CHECK(res.sent.starts_with(
        "EHLO client.example\r\nSTARTTLS\r\n<tls>EHLO client.example\r\nMAIL"));
    CHECK(res.tls_handshakes == 1);
    CHECK(res.results.at(1).recipients[0].status == delivery_status::delivered);
}

TEST_CASE("STARTTLS: not offered is an error, never a downgrade", "[client_session]")
{
    auto options = plain_options();
    options.tls = client_tls::starttls;
    auto res = run_all_splits(options, {msg(1, {"a@x"})}, {"220 mx\r\n" + ehlo_pipelining});
    REQUIRE(res.failure);
    CHECK(res.sent.find("MAIL") == std::string::npos);
    CHECK(res.results.empty());
    // Nor after a HELO fallback.
    auto helo = run_all_splits(options, {msg(1, {"a@x"})}, {"220 mx\r\n502 no\r\n250 mx\r\n"});
    REQUIRE(helo.failure);
    CHECK(helo.sent.find("MAIL") == std::string::npos);
}

TEST_CASE("STARTTLS: plaintext bytes behind the 220 are an injection", "[client_session]")
{
    auto options = plain_options();
    options.tls = client_tls::starttls;
    auto res = run(options, {msg(1, {"a@x"})},
                   {"220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n250-injected\r\n"});
    REQUIRE(res.failure);
    CHECK(res.tls_handshakes == 0);
}

TEST_CASE("implicit TLS: no STARTTLS, AUTH allowed", "[client_session]")
{
    auto options = plain_options();
    options.tls = client_tls::implicit;
    options.auth = client_credentials{"user", "secret", ""};
    auto res = run_all_splits(options, {msg(1, {"a@x"})},
                              {"220 mx\r\n250-mx\r\n250 AUTH PLAIN LOGIN\r\n235 2.7.0 ok\r\n"
                               "250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n"});
    // RFC 4616: NUL user NUL password, base64 "AHVzZXIAc2VjcmV0".
    CHECK(res.sent.find("AUTH PLAIN AHVzZXIAc2VjcmV0\r\n") != std::string::npos);
    for (auto& line : res.shown)
        CHECK(line.find("AHVzZXIAc2VjcmV0") == std::string::npos);
    CHECK(res.results.at(1).recipients[0].status == delivery_status::delivered);
}

TEST_CASE("AUTH LOGIN, masked", "[client_session]")
{
    auto options = plain_options();
    options.tls = client_tls::implicit;
    options.auth = client_credentials{"user", "secret", ""};
    auto res = run_all_splits(options, {},
                              {"220 mx\r\n250-mx\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n"
                               "334 UGFzc3dvcmQ6\r\n235 ok\r\n221 bye\r\n"});
    CHECK(res.sent == "EHLO client.example\r\nAUTH LOGIN\r\ndXNlcg==\r\nc2VjcmV0\r\nQUIT\r\n");
    CHECK(res.shown == std::vector<std::string>{"EHLO client.example", "AUTH LOGIN", "********",
                                                "********", "QUIT"});
    CHECK_FALSE(res.failure);
}

TEST_CASE("AUTH CRAM-MD5 with the injected HMAC", "[client_session]")
{
    auto options = plain_options();
    options.tls = client_tls::implicit;
    options.auth = client_credentials{"tim", "tanstaaftanstaaf", ""};
    std::string seen_key, seen_challenge;
    options.hmac_md5 = [&](std::string_view key, std::string_view message) {
        seen_key = key;
        seen_challenge = message;
        return std::string("\x01\x02\xab", 3);
    };
    // Plaintext prefers CRAM-MD5; under TLS PLAIN comes first.
    options.tls = client_tls::none;
    options.auth_over_plaintext = true;
    auto res = run(
        options, {},
        {"220 mx\r\n250-mx\r\n250 AUTH PLAIN CRAM-MD5\r\n"
         "334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n235 ok\r\n221 bye\r\n"});
    CHECK(seen_key == "tanstaaftanstaaf");
    CHECK(seen_challenge == "<1896.697170952@postoffice.reston.mci.net>");
    // base64("tim 0102ab")
    CHECK(res.sent.find("AUTH CRAM-MD5\r\ndGltIDAxMDJhYg==\r\n") != std::string::npos);
    CHECK_FALSE(res.failure);
}

TEST_CASE("AUTH refused over plaintext unless configured", "[client_session]")
{
    auto options = plain_options();
    options.auth = client_credentials{"user", "secret", ""};
    auto res = run(options, {msg(1, {"a@x"})}, {"220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n"});
    REQUIRE(res.failure);
    CHECK(res.sent.find("AUTH") == std::string::npos);

    options.auth_over_plaintext = true;
    auto allowed =
        run(options, {}, {"220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n235 ok\r\n221 bye\r\n"});
    CHECK_FALSE(allowed.failure);
    CHECK(allowed.sent.find("AUTH PLAIN") != std::string::npos);
}

TEST_CASE("AUTH failure fails the connection, messages untouched", "[client_session]")
{
    auto options = plain_options();
    options.tls = client_tls::implicit;
    options.auth = client_credentials{"user", "wrong", ""};
    auto res =
        run_all_splits(options, {msg(1, {"a@x"})},
                       {"220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n535 5.7.8 bad credentials\r\n"});
    REQUIRE(res.failure);
    CHECK(res.failure->code == 535);
    CHECK(res.results.empty());
    auto none = run(options, {msg(1, {"a@x"})}, {"220 mx\r\n250 mx\r\n"});
    REQUIRE(none.failure); // AUTH configured but not offered: do not send unauthenticated
}

TEST_CASE("garbage from the server fails the connection", "[client_session]")
{
    driver d(plain_options(), {msg(1, {"a@x"})});
    d.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\nHTTP/1.1 400 Bad\r\n");
    REQUIRE(d.result.finished);
    CHECK(d.result.results.at(1).recipients[0].status == delivery_status::deferred);
}

TEST_CASE("closed after QUIT without 221 is fine", "[client_session]")
{
    driver d(plain_options(), {});
    d.feed("220 mx\r\n" + ehlo_pipelining);
    CHECK(d.result.sent.ends_with("QUIT\r\n"));
    d.lose("eof");
    CHECK(d.result.finished);
    CHECK_FALSE(d.result.failure);
}

namespace {

client_options tls_auth_options(std::vector<std::string> mechanisms, client_credentials who)
{
    auto options = plain_options();
    options.tls = client_tls::implicit;
    options.auth = std::move(who);
    options.auth_mechanisms = std::move(mechanisms);
    options.hmac_md5 = [](std::string_view, std::string_view) { return std::string(16, 'x'); };
    return options;
}

} // namespace

TEST_CASE("auth_mechanisms: the first configured mechanism the server offers wins",
          "[client_session]")
{
    const std::string offers = "220 mx\r\n250-mx\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n";
    auto login_first = run(tls_auth_options({"LOGIN", "PLAIN"}, {"user", "secret", ""}), {},
                           {offers + "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n"});
    CHECK(login_first.sent.find("AUTH LOGIN\r\n") != std::string::npos);

    // Not offered by the server: skipped.
    auto skipped =
        run(tls_auth_options({"XOAUTH2", "CRAM-MD5", "PLAIN"}, {"user", "secret", "tok"}), {},
            {offers + "334 PDE+\r\n235 ok\r\n"});
    CHECK(skipped.sent.find("AUTH CRAM-MD5\r\n") != std::string::npos);

    // The default under TLS is today's order: PLAIN first.
    auto fallback =
        run(tls_auth_options({}, {"user", "secret", ""}), {}, {offers + "235 ok\r\n221 bye\r\n"});
    CHECK(fallback.sent.find("AUTH PLAIN ") != std::string::npos);
}

TEST_CASE("no AUTH mechanism in common: deferred, naming both lists", "[client_session]")
{
    auto res = run_all_splits(tls_auth_options({"XOAUTH2", "OAUTHBEARER"}, {"me", "", "tok"}),
                              {msg(1, {"a@x"})}, {"220 mx\r\n250-mx\r\n250 AUTH PLAIN LOGIN\r\n"});
    REQUIRE(res.failure);
    CHECK(res.failure->code == 451); // transient: the route is deferred, nothing bounces
    const std::string text = res.failure->to_string();
    CHECK_THAT(text, Catch::Contains("XOAUTH2 OAUTHBEARER"));
    CHECK_THAT(text, Catch::Contains("PLAIN LOGIN"));
    CHECK(res.sent.find("AUTH") == std::string::npos);

    // A password mechanism without a password is not "in common" either.
    auto no_password = run(tls_auth_options({"PLAIN"}, {"me", "", "tok"}), {},
                           {"220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n"});
    REQUIRE(no_password.failure);
    CHECK_THAT(no_password.failure->to_string(), Catch::Contains("we may use none"));
}

TEST_CASE("XOAUTH2: user and bearer token in the initial response, masked", "[client_session]")
{
    auto options = tls_auth_options({"XOAUTH2"}, {"me@gmail.example", "", "ya29.token"});
    auto res = run_all_splits(options, {msg(1, {"a@x"})},
                              {"220 mx\r\n250-mx\r\n250 AUTH LOGIN XOAUTH2\r\n235 2.7.0 ok\r\n"
                               "250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n"});
    // base64("user=me@gmail.example\x01auth=Bearer ya29.token\x01\x01")
    CHECK(res.sent.find("AUTH XOAUTH2 "
                        "dXNlcj1tZUBnbWFpbC5leGFtcGxlAWF1dGg9QmVhcmVyIHlhMjkudG9rZW4BAQ==\r\n") !=
          std::string::npos);
    CHECK(std::find(res.shown.begin(), res.shown.end(), "AUTH XOAUTH2 ********") !=
          res.shown.end());
    for (auto& line : res.shown)
        CHECK(line.find("dXNlcj1t") == std::string::npos);
    CHECK(res.results.at(1).recipients[0].status == delivery_status::delivered);
}

TEST_CASE("OAUTHBEARER: RFC 7628 GS2 header with the user, then the bearer token",
          "[client_session]")
{
    auto options = tls_auth_options({"OAUTHBEARER"}, {"a,b=c@example", "", "t0k"});
    auto res = run_all_splits(
        options, {}, {"220 mx\r\n250-mx\r\n250 AUTH OAUTHBEARER\r\n235 ok\r\n221 bye\r\n"});
    // base64("n,a=a=2Cb=3Dc@example,\x01auth=Bearer t0k\x01\x01"): RFC 5801 escapes , and =.
    CHECK(res.sent.find("AUTH OAUTHBEARER "
                        "bixhPWE9MkNiPTNEY0BleGFtcGxlLAFhdXRoPUJlYXJlciB0MGsBAQ==\r\n") !=
          std::string::npos);
    CHECK_FALSE(res.failure);
    CHECK(driver(options, {}).session().auth_mechanism().empty());
}

TEST_CASE("a refused token: the error challenge is answered and the 535 defers with its reason",
          "[client_session]")
{
    // eyJzdGF0dXMiOiI0MDEifQ== is base64 of {"status":"401"}.
    const std::string transcript = "220 mx\r\n250-mx\r\n250 AUTH XOAUTH2 OAUTHBEARER\r\n"
                                   "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"
                                   "535 5.7.8 Username and Password not accepted\r\n";
    SECTION("OAUTHBEARER answers with a lone ^A, RFC 7628 section 3.2.3")
    {
        auto res = run_all_splits(tls_auth_options({"OAUTHBEARER"}, {"me", "", "expired"}),
                                  {msg(1, {"a@x"})}, {transcript});
        CHECK(res.sent.substr(res.sent.find("\r\n", res.sent.find("AUTH OAUTHBEARER")) + 2) ==
              "AQ==\r\nQUIT\r\n"); // then QUIT before closing (issue 11)
        REQUIRE(res.failure);
        CHECK(res.failure->code == 535);
        CHECK_THAT(res.failure->to_string(), Catch::Contains("not accepted"));
        CHECK_THAT(res.failure->to_string(), Catch::Contains("{\"status\":\"401\"}"));
        CHECK(res.results.empty()); // nothing was in flight: the messages wait for next time
    }
    SECTION("XOAUTH2 answers with an empty line")
    {
        auto res =
            run_all_splits(tls_auth_options({"XOAUTH2"}, {"me", "", "expired"}), {}, {transcript});
        CHECK(res.sent.substr(res.sent.find("\r\n", res.sent.find("AUTH XOAUTH2")) + 2) ==
              "\r\nQUIT\r\n");
        REQUIRE(res.failure);
        CHECK(res.failure->code == 535);
    }
    SECTION("a second challenge after the answer fails the session")
    {
        auto res = run(tls_auth_options({"XOAUTH2"}, {"me", "", "expired"}), {},
                       {"220 mx\r\n250-mx\r\n250 AUTH XOAUTH2\r\n334 e30=\r\n334 e30=\r\n"});
        REQUIRE(res.failure);
        CHECK(res.failure->code == 451);
    }
}

TEST_CASE("the chosen mechanism is reported for --check", "[client_session]")
{
    driver d(tls_auth_options({"LOGIN", "PLAIN"}, {"user", "secret", ""}), {});
    d.feed("220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n235 ok\r\n");
    CHECK(d.session().auth_mechanism() == "PLAIN");
}

TEST_CASE("only a 250 to the final dot delivers: a 221 to the pipelined QUIT is not one",
          "[client_session]")
{
    // The peer stays silent on the dot and answers only the QUIT behind it (RFC 5321 4.3.2).
    auto res = run_all_splits(plain_options(), {msg(1, {"a@x", "b@x"})},
                              {"220 mx\r\n" + ehlo_pipelining +
                               "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n221 2.0.0 bye\r\n"});
    CHECK(res.sent.ends_with("<content 1>QUIT\r\n"));
    REQUIRE(res.results.count(1) == 1);
    for (const auto& r : res.results.at(1).recipients)
        CHECK(r.status == delivery_status::unconfirmed);
    REQUIRE(res.failure);
    CHECK(res.failure->to_string().find("221") != std::string::npos);

    // Any other positive code is no better.
    auto odd = run(plain_options(), {msg(1, {"a@x"})},
                   {"220 mx\r\n" + ehlo_pipelining +
                    "250 ok\r\n250 ok\r\n354 go\r\n251 forwarded\r\n221 bye\r\n"});
    CHECK(odd.results.at(1).recipients[0].status == delivery_status::unconfirmed);
}

TEST_CASE("421 as the reply to the final dot: deferred, then QUIT", "[client_session]")
{
    auto res = run_all_splits(
        plain_options(), {msg(1, {"a@x"})},
        {"220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 ok\r\n354 go\r\n421 4.3.2 bye\r\n"});
    CHECK(res.results.at(1).recipients[0].status == delivery_status::deferred);
    CHECK(res.results.at(1).recipients[0].why.code == 421);
}

TEST_CASE("452 too many recipients: the rest go in a new transaction on the same connection",
          "[client_session]")
{
    // RFC 5321 section 4.5.3.1.10: a server that takes two per transaction.
    auto res = run_all_splits(
        plain_options(), {msg(1, {"a@x", "b@x", "c@x", "d@x", "e@x"}), msg(2, {"f@x"})},
        {"220 mx\r\n" + ehlo_pipelining +
         "250 ok\r\n250 a\r\n250 b\r\n452 4.5.3 too many\r\n452 4.5.3 too many\r\n"
         "452 4.5.3 too many\r\n354 go\r\n250 2.0.0 first\r\n"
         "250 ok\r\n250 c\r\n250 d\r\n452 4.5.3 too many\r\n354 go\r\n250 2.0.0 second\r\n"
         "250 ok\r\n250 e\r\n354 go\r\n250 2.0.0 third\r\n"
         "250 ok\r\n250 f\r\n354 go\r\n250 2.0.0 fourth\r\n221 bye\r\n"});
    CHECK(res.sent ==
          "EHLO client.example\r\n"
          "MAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
          "RCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\nRCPT TO:<e@x>\r\nDATA\r\n<content 1>"
          "MAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\n"
          "RCPT TO:<e@x>\r\nDATA\r\n<content 1>"
          "MAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<e@x>\r\nDATA\r\n<content 1>"
          "MAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<f@x>\r\nDATA\r\n<content 2>"
          "QUIT\r\n");
    CHECK_FALSE(res.failure);
    CHECK(res.transactions_finished == 4);
    auto& one = res.results.at(1);
    CHECK(one.last);
    REQUIRE(one.recipients.size() == 5);
    for (const auto& r : one.recipients) {
        CHECK(r.status == delivery_status::delivered);
        CHECK(r.why.code == 250);
    }
    CHECK(one.recipients[0].why.lines[0] == "first");
    CHECK(one.recipients[2].why.lines[0] == "second");
    CHECK(one.recipients[4].why.lines[0] == "third");
    CHECK(res.results.at(2).recipients[0].status == delivery_status::delivered);
}

TEST_CASE("452 without PIPELINING: RCPT stops at the limit, the rest follow", "[client_session]")
{
    auto res = run_all_splits(plain_options(), {msg(1, {"a@x", "b@x", "c@x"})},
                              {"220 mx\r\n" + ehlo_basic +
                               "250 ok\r\n250 a\r\n452 4.5.3 too many\r\n354 go\r\n250 first\r\n"
                               "250 ok\r\n250 b\r\n250 c\r\n354 go\r\n250 second\r\n221 bye\r\n"});
    CHECK(res.sent == "EHLO client.example\r\n"
                      "MAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<a@x>\r\n"
                      "RCPT TO:<b@x>\r\nDATA\r\n<content 1>"
                      "MAIL FROM:<sender@example.org> SIZE=100\r\nRCPT TO:<b@x>\r\n"
                      "RCPT TO:<c@x>\r\nDATA\r\n<content 1>QUIT\r\n");
    for (const auto& r : res.results.at(1).recipients)
        CHECK(r.status == delivery_status::delivered);
}

TEST_CASE("452 to every recipient is an ordinary deferral, not a split", "[client_session]")
{
    auto res = run_all_splits(plain_options(), {msg(1, {"a@x", "b@x"})},
                              {"220 mx\r\n" + ehlo_pipelining +
                               "250 ok\r\n452 4.3.1 full\r\n452 4.3.1 full\r\n554 no valid "
                               "recipients\r\n221 bye\r\n"});
    CHECK(res.transactions_finished == 1);
    for (const auto& r : res.results.at(1).recipients) {
        CHECK(r.status == delivery_status::deferred);
        CHECK(r.why.code == 452);
    }
}

TEST_CASE("max_recipients_per_transaction splits before the server has to refuse",
          "[client_session]")
{
    auto options = plain_options();
    options.max_recipients_per_transaction = 2;
    auto res = run_all_splits(options, {msg(1, {"a@x", "b@x", "c@x"})},
                              {"220 mx\r\n" + ehlo_pipelining +
                               "250 ok\r\n250 a\r\n250 b\r\n354 go\r\n250 first\r\n"
                               "250 ok\r\n550 5.1.1 no c\r\n554 no valid recipients\r\n"
                               "221 bye\r\n"});
    CHECK(res.sent.find("RCPT TO:<b@x>\r\nDATA\r\n<content 1>MAIL FROM:<sender@example.org> "
                        "SIZE=100\r\nRCPT TO:<c@x>\r\nDATA\r\n") != std::string::npos);
    CHECK(res.transactions_finished == 2);
    auto& r = res.results.at(1).recipients;
    REQUIRE(r.size() == 3);
    CHECK(r[0].status == delivery_status::delivered);
    CHECK(r[1].status == delivery_status::delivered);
    CHECK(r[2].status == delivery_status::failed);
}

TEST_CASE("a split message whose connection drops: the rest deferred, the first part kept",
          "[client_session]")
{
    auto options = plain_options();
    options.max_recipients_per_transaction = 1;
    driver d(options, {msg(1, {"a@x", "b@x"})});
    d.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 a\r\n354 go\r\n250 first\r\n");
    d.lose("reset");
    auto& r = d.result.results.at(1).recipients;
    REQUIRE(r.size() == 2);
    CHECK(r[0].status == delivery_status::delivered);
    CHECK(r[1].status == delivery_status::deferred);
    CHECK(d.result.results.at(1).last);
}

TEST_CASE("QUIT before closing after any failure past the greeting", "[client_session]")
{
    auto options = plain_options();
    options.tls = client_tls::implicit;
    options.auth = client_credentials{"user", "wrong", ""};
    driver d(options, {msg(1, {"a@x"})});
    d.feed("220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n535 5.7.8 bad credentials\r\n");
    CHECK(d.result.sent.ends_with("QUIT\r\n"));
    CHECK_FALSE(d.result.finished); // waits (briefly) for the 221
    CHECK(d.session().waiting_for() == wait_kind::quit);
    d.feed("221 bye\r\n");
    REQUIRE(d.result.finished);
    REQUIRE(d.result.failure);
    CHECK(d.result.failure->code == 535); // the reason, not the 221

    // STARTTLS refused by the server.
    auto starttls = plain_options();
    starttls.tls = client_tls::starttls;
    auto refused = run(starttls, {msg(1, {"a@x"})},
                       {"220 mx\r\n250-mx\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n"});
    CHECK(refused.sent == "EHLO client.example\r\nSTARTTLS\r\nQUIT\r\n");
    REQUIRE(refused.failure);
    CHECK(refused.failure->code == 454);

    // Our timeout on a reply: QUIT too, the message in flight unconfirmed after its dot.
    driver t(plain_options(), {msg(1, {"a@x"})});
    t.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 ok\r\n354 go\r\n");
    auto effects = t.session().reply_timed_out("timeout waiting for the reply to the end of data");
    bool quit = false, unconfirmed = false;
    for (auto& e : effects) {
        if (auto* c = std::get_if<send_command>(&e))
            quit = quit || c->wire == "QUIT\r\n";
        if (auto* f = std::get_if<message_finished>(&e))
            unconfirmed = f->result.recipients.at(0).status == delivery_status::unconfirmed;
    }
    // QUIT was already pipelined behind the dot, so it is not sent twice.
    CHECK(t.result.sent.ends_with("<content 1>QUIT\r\n"));
    CHECK_FALSE(quit);
    CHECK(unconfirmed);

    // A connection that breaks: no QUIT into a dead channel.
    driver lost(plain_options(), {msg(1, {"a@x"})});
    lost.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\n");
    std::string before = lost.result.sent;
    lost.lose("reset");
    CHECK(lost.result.sent == before);
    CHECK(lost.result.finished);
}

TEST_CASE("content abandoned by the transport is deferred, never unconfirmed", "[client_session]")
{
    driver d(plain_options(), {msg(1, {"a@x"})});
    d.feed("220 mx\r\n" + ehlo_pipelining + "250 ok\r\n250 ok\r\n354 go\r\n");
    d.session().content_abandoned(1);
    d.lose("cannot read spooled content");
    CHECK(d.result.results.at(1).recipients[0].status == delivery_status::deferred);
}

TEST_CASE("authentication required but not configured: everything deferred, nothing failed",
          "[client_session]")
{
    // Exim: 530 5.7.0 at MAIL.
    auto exim = run_all_splits(plain_options(), {msg(1, {"a@x", "b@x"}), msg(2, {"c@x"})},
                               {"220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"
                                "530 5.7.0 Authentication required\r\n503 5.5.1 no MAIL\r\n"
                                "503 5.5.1 no MAIL\r\n503 5.5.1 no valid recipients\r\n"
                                "221 bye\r\n"});
    REQUIRE(exim.finished);
    REQUIRE(exim.failure);
    CHECK(exim.failure->is_transient_failure());
    CHECK(exim.results.count(2) == 0); // never offered
    for (const auto& r : exim.results.at(1).recipients)
        CHECK(r.status == delivery_status::deferred);
    CHECK(exim.sent.ends_with("DATA\r\nQUIT\r\n"));

    // Postfix (permit_sasl_authenticated, smtpd_delay_reject): 554 5.7.1 at RCPT.
    driver postfix(plain_options(), {msg(1, {"a@x"})});
    postfix.feed("220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n250 2.1.0 Ok\r\n"
                 "554 5.7.1 <a@x>: Relay access denied\r\n");
    postfix.feed("554 5.5.1 Error: no valid recipients\r\n221 2.0.0 Bye\r\n");
    REQUIRE(postfix.result.finished);
    CHECK(postfix.result.results.at(1).recipients[0].status == delivery_status::deferred);

    // With AUTH configured (or from a server that offers none), a 5.7.1 is the recipient's.
    auto no_auth_offered = run(plain_options(), {msg(1, {"a@x"})},
                               {"220 mx\r\n" + ehlo_pipelining +
                                "250 ok\r\n554 5.7.1 <a@x>: Recipient address rejected\r\n"
                                "554 5.5.1 no valid recipients\r\n221 bye\r\n"});
    CHECK(no_auth_offered.results.at(1).recipients[0].status == delivery_status::failed);
    CHECK_FALSE(no_auth_offered.failure);
}
