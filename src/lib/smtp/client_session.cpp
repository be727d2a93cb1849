#include "leafmail/smtp/client_session.hpp"

#include "leafmail/text.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>

namespace leafmail::smtp {

namespace {

constexpr std::string_view masked = "********";

using text::base64_encode;

std::optional<std::string> base64_decode(std::string_view in)
{
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z')
            return c - 'A';
        if (c >= 'a' && c <= 'z')
            return c - 'a' + 26;
        if (c >= '0' && c <= '9')
            return c - '0' + 52;
        if (c == '+')
            return 62;
        if (c == '/')
            return 63;
        return -1;
    };
    while (!in.empty() && in.back() == '=')
        in.remove_suffix(1);
    std::string out;
    unsigned bits = 0;
    int count = 0;
    for (char c : in) {
        int v = value(c);
        if (v < 0)
            return std::nullopt;
        bits = bits << 6 | unsigned(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out += char(bits >> count & 0xff);
        }
    }
    return out;
}

std::string hex(std::string_view bytes)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

// RFC 5801 section 4: ',' and '=' in a GS2 authzid are written =2C and =3D.
std::string gs2_escaped(std::string_view name)
{
    std::string out;
    for (char c : name) {
        if (c == ',')
            out += "=2C";
        else if (c == '=')
            out += "=3D";
        else
            out += c;
    }
    return out;
}

// Server text for a log line or a recorded reply: printable ASCII, bounded.
std::string printable(std::string_view text)
{
    constexpr std::size_t limit = 300;
    std::string out;
    for (char c : text.substr(0, limit))
        out += (c >= ' ' && c <= '~') ? c : '?';
    return out;
}

std::string upper(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        if (c >= 'a' && c <= 'z')
            c = char(c - 'a' + 'A');
    return out;
}

/// A reply we make up ourselves, for results the server never sent.
reply local_reply(int code, std::string enhanced, std::string text)
{
    return reply{code, std::move(enhanced), {std::move(text)}};
}

delivery_status status_of(const reply& r)
{
    if (r.is_positive())
        return delivery_status::delivered;
    if (r.is_permanent_failure())
        return delivery_status::failed;
    return delivery_status::deferred; // 4xx, and anything odd: never lose a message on a guess
}

} // namespace

bool server_capabilities::offers_auth(std::string_view mechanism) const
{
    return std::find(auth_mechanisms.begin(), auth_mechanisms.end(), mechanism) !=
           auth_mechanisms.end();
}

server_capabilities parse_ehlo_reply(const reply& ehlo)
{
    server_capabilities caps;
    caps.esmtp = true;
    // RFC 5321 section 4.1.1.1: the first line greets, each further line is
    // "keyword [SP parameter]*"; keywords are case-insensitive.
    for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {
        std::string_view line = ehlo.lines[i];
        std::vector<std::string_view> words;
        std::size_t at = 0;
        while (at < line.size()) {
            std::size_t end = line.find_first_of(" =", at);
            if (end == std::string_view::npos)
                end = line.size();
            if (end > at)
                words.push_back(line.substr(at, end - at));
            at = end + 1;
        }
        if (words.empty())
            continue;
        std::string keyword = upper(words[0]);
        if (keyword == "PIPELINING")
            caps.pipelining = true;
        else if (keyword == "STARTTLS")
            caps.starttls = true;
        else if (keyword == "8BITMIME")
            caps.eight_bit_mime = true;
        else if (keyword == "ENHANCEDSTATUSCODES")
            caps.enhanced_status_codes = true;
        else if (keyword == "SIZE") {
            caps.size = true;
            std::uint64_t limit = 0;
            // RFC 1870 section 4: SIZE 0 (or no number) means no fixed limit.
            if (words.size() > 1) {
                auto [p, ec] =
                    std::from_chars(words[1].data(), words[1].data() + words[1].size(), limit);
                if (ec == std::errc{} && p == words[1].data() + words[1].size() && limit > 0)
                    caps.size_limit = limit;
            }
        } else if (keyword == "AUTH") {
            // "AUTH=PLAIN LOGIN" is the pre-RFC 4954 spelling some servers still send.
            for (std::size_t w = 1; w < words.size(); ++w) {
                std::string mechanism = upper(words[w]);
                if (!caps.offers_auth(mechanism))
                    caps.auth_mechanisms.push_back(mechanism);
            }
        }
    }
    return caps;
}

client_session::client_session(client_options options) : options_(std::move(options))
{
    // Implicit TLS (RFC 8314 section 3.3): the transport handshakes before the greeting.
    tls_active_ = options_.tls == client_tls::implicit;
    expected_.push_back({command_kind::greeting});
}

std::vector<client_effect> client_session::feed(std::string_view bytes)
{
    std::vector<client_effect> out;
    if (phase_ == phase::finished)
        return out;
    parser_.feed(bytes);
    drain(out);
    return out;
}

void client_session::drain(std::vector<client_effect>& out)
{
    // Replies are taken only while one is owed and no request_message is unanswered (so the
    // transport sees results in order). Other bytes wait in the parser until the next command
    // goes out, or, at STARTTLS, are refused as injected.
    while (phase_ != phase::finished && !expected_.empty() && !message_requested_) {
        std::optional<reply> r = parser_.next();
        if (!r)
            break;
        on_reply(*r, out);
    }
    if (parser_.has_error() && phase_ != phase::finished) {
        // Nothing more can be read: results for what is in flight, QUIT (unless it went out
        // already), and the close ends it without waiting for a reply we could not parse.
        if (!failure_ || !in_flight_.empty())
            fail(local_reply(451, "4.5.0", "protocol error from smarthost: " + parser_.error()),
                 out);
        phase_ = phase::finished;
        expected_.clear();
        out.push_back(connection_finished{failure_, authentication_required_});
    }
}

std::vector<client_effect> client_session::tls_established()
{
    std::vector<client_effect> out;
    assert(phase_ == phase::starttls && expected_.empty());
    // RFC 3207 section 4.2: forget everything learnt before the handshake, EHLO again.
    parser_.clear();
    tls_active_ = true;
    capabilities_ = {};
    phase_ = phase::hello;
    send("EHLO " + options_.helo + "\r\n", "EHLO " + options_.helo, command_kind::ehlo, out);
    return out;
}

std::vector<client_effect> client_session::message(outgoing_message next)
{
    std::vector<client_effect> out;
    assert(message_requested_);
    message_requested_ = false;
    if (phase_ != phase::ready)
        return out;
    if (next.recipients.empty()) {
        out.push_back(message_finished{{next.tag, false, {}}});
        advance(out);
        drain(out);
        return out;
    }
    // RFC 1870 section 6.1: a message over the server's declared limit is not sent; it would
    // be refused after the whole transfer anyway. This is a permanent failure.
    if (capabilities_.size_limit && next.size > *capabilities_.size_limit) {
        message_result result{next.tag, false, {}, true};
        reply why = local_reply(552, "5.3.4",
                                "message size " + std::to_string(next.size) +
                                    " exceeds the smarthost's limit of " +
                                    std::to_string(*capabilities_.size_limit));
        for (std::size_t i = 0; i < next.recipients.size(); ++i)
            result.recipients.push_back({i, next.recipients[i], delivery_status::failed, why});
        out.push_back(message_finished{std::move(result)});
        advance(out);
        drain(out);
        return out;
    }
    std::vector<pending_recipient> recipients;
    for (std::size_t i = 0; i < next.recipients.size(); ++i)
        recipients.push_back({next.recipients[i], i});
    in_flight_.push_back(make_transaction(next, std::move(recipients)));
    ++messages_started_;
    send_transaction(out);
    drain(out);
    return out;
}

std::vector<client_effect> client_session::no_more_messages()
{
    std::vector<client_effect> out;
    assert(message_requested_);
    message_requested_ = false;
    no_more_ = true;
    advance(out);
    drain(out);
    return out;
}

std::vector<client_effect> client_session::connection_lost(std::string_view why)
{
    std::vector<client_effect> out;
    if (phase_ == phase::finished)
        return out;
    if (phase_ == phase::quitting && in_flight_.empty()) {
        // Closed after our QUIT without a 221: nothing was lost.
        phase_ = phase::finished;
        out.push_back(connection_finished{failure_, authentication_required_});
        return out;
    }
    fail(local_reply(451, "4.4.2", std::string(why)), out, false);
    return out;
}

std::vector<client_effect> client_session::reply_timed_out(std::string_view why)
{
    std::vector<client_effect> out;
    if (phase_ == phase::finished)
        return out;
    if (phase_ == phase::quitting && in_flight_.empty()) {
        phase_ = phase::finished; // no 221 in time: QUIT was said, the rest is the close
        out.push_back(connection_finished{failure_, authentication_required_});
        return out;
    }
    // The channel is still in step (we are waiting for a reply, not in the middle of content):
    // QUIT lets the server log a clean end instead of "lost connection". Not before a greeting.
    fail(local_reply(451, "4.4.2", std::string(why)), out, phase_ != phase::greeting);
    return out;
}

void client_session::content_abandoned(std::uint64_t tag)
{
    for (auto& t : in_flight_)
        if (t.message.tag == tag)
            t.content_sent = false;
}

wait_kind client_session::waiting_for() const
{
    if (phase_ == phase::finished || expected_.empty())
        return wait_kind::nothing;
    switch (expected_.front().kind) {
    case command_kind::greeting:
        return wait_kind::greeting;
    case command_kind::final_dot:
        return wait_kind::final_dot;
    case command_kind::quit:
        return failure_ ? wait_kind::quit : wait_kind::command;
    default:
        return wait_kind::command;
    }
}

void client_session::send(std::string wire, std::string shown, command_kind kind,
                          std::vector<client_effect>& out, std::size_t index)
{
    expected_.push_back({kind, index});
    out.push_back(send_command{std::move(wire), std::move(shown)});
}

void client_session::on_reply(const reply& r, std::vector<client_effect>& out)
{
    if (expected_.empty()) {
        fail(local_reply(451, "4.5.0", "unexpected reply from smarthost: " + r.to_string()), out);
        return;
    }
    expectation e = expected_.front();
    expected_.pop_front();
    // RFC 5321 section 3.8: 421 to any command means the server is closing the channel. As the
    // reply to the final dot it is an answer: the message was not taken.
    if (r.code == 421 && e.kind != command_kind::quit) {
        if (e.kind == command_kind::final_dot && !in_flight_.empty())
            finish_transaction(true, r, out);
        fail(r, out);
        return;
    }
    switch (e.kind) {
    case command_kind::greeting:
        on_greeting(r, out);
        break;
    case command_kind::ehlo:
        on_ehlo(r, out);
        break;
    case command_kind::helo:
        on_helo(r, out);
        break;
    case command_kind::starttls:
        on_starttls(r, out);
        break;
    case command_kind::auth:
        on_auth(r, out);
        break;
    case command_kind::rset:
    case command_kind::lone_dot:
        break; // nothing depends on these replies
    case command_kind::mail:
        on_mail(r, out);
        break;
    case command_kind::rcpt:
        on_rcpt(r, e.index, out);
        break;
    case command_kind::data:
        on_data(r, out);
        break;
    case command_kind::final_dot:
        on_final_dot(r, out);
        break;
    case command_kind::quit:
        phase_ = phase::finished;
        expected_.clear();
        out.push_back(connection_finished{failure_, authentication_required_});
        break;
    }
}

void client_session::on_greeting(const reply& r, std::vector<client_effect>& out)
{
    // RFC 5321 section 3.1: 220 opens the session; 554 (or anything else) refuses it.
    if (r.code != 220) {
        fail(r, out);
        return;
    }
    phase_ = phase::hello;
    send("EHLO " + options_.helo + "\r\n", "EHLO " + options_.helo, command_kind::ehlo, out);
}

void client_session::on_ehlo(const reply& r, std::vector<client_effect>& out)
{
    if (r.is_positive()) {
        capabilities_ = parse_ehlo_reply(r);
        after_hello(out);
        return;
    }
    // RFC 5321 section 3.2: a server that refuses EHLO with a 5xx may still take HELO. Not after
    // STARTTLS: a server that took EHLO in plaintext and refuses it under TLS is broken.
    bool after_starttls = tls_active_ && options_.tls == client_tls::starttls;
    if (r.is_permanent_failure() && !after_starttls) {
        send("HELO " + options_.helo + "\r\n", "HELO " + options_.helo, command_kind::helo, out);
        return;
    }
    fail(r, out);
}

void client_session::on_helo(const reply& r, std::vector<client_effect>& out)
{
    if (!r.is_positive()) {
        fail(r, out);
        return;
    }
    capabilities_ = {}; // RFC 821 server: no extensions at all
    after_hello(out);
}

void client_session::after_hello(std::vector<client_effect>& out)
{
    if (options_.tls == client_tls::starttls && !tls_active_) {
        // Never a silent downgrade: without STARTTLS the configured protection is impossible.
        if (!capabilities_.starttls) {
            fail(local_reply(
                     451, "4.7.0",
                     capabilities_.esmtp
                         ? "smarthost does not offer STARTTLS (tls = starttls)"
                         : "smarthost refused EHLO, so STARTTLS is impossible (tls = starttls)"),
                 out);
            return;
        }
        phase_ = phase::starttls;
        send("STARTTLS\r\n", "STARTTLS", command_kind::starttls, out);
        return;
    }
    start_auth(out);
}

void client_session::on_starttls(const reply& r, std::vector<client_effect>& out)
{
    if (r.code != 220) {
        fail(r, out);
        return;
    }
    // RFC 3207 section 4.2 / CVE-2011-0411 seen from the client side: bytes behind the 220
    // arrived in plaintext and would be taken as replies under TLS. Refuse the session.
    if (parser_.has_buffered_input()) {
        fail(local_reply(451, "4.7.0", "smarthost sent data after its STARTTLS reply"), out);
        return;
    }
    out.push_back(start_tls{});
}

void client_session::start_auth(std::vector<client_effect>& out)
{
    if (!options_.auth) {
        phase_ = phase::ready;
        advance(out);
        return;
    }
    // RFC 4954 section 4 and section 14: credentials go over an unprotected channel only when
    // the operator said so explicitly.
    if (!tls_active_ && !options_.auth_over_plaintext) {
        fail(local_reply(451, "4.7.0", "refusing to authenticate over an unencrypted connection"),
             out);
        return;
    }
    const auto& credentials = *options_.auth;
    auto is_usable = [&](std::string_view mechanism) {
        if (mechanism == "XOAUTH2" || mechanism == "OAUTHBEARER")
            return !credentials.token.empty();
        if (mechanism == "CRAM-MD5")
            return static_cast<bool>(options_.hmac_md5) && !credentials.password.empty();
        return (mechanism == "PLAIN" || mechanism == "LOGIN") && !credentials.password.empty();
    };
    std::vector<std::string> preference = options_.auth_mechanisms;
    if (preference.empty()) {
        // Under TLS, PLAIN is the standard choice. In plaintext CRAM-MD5 comes first because
        // it does not reveal the password itself.
        preference = default_auth_mechanisms;
        if (!tls_active_)
            std::rotate(preference.begin(), preference.end() - 1, preference.end());
    }
    auth_mechanism_.clear();
    for (const auto& mechanism : preference)
        if (capabilities_.offers_auth(mechanism) && is_usable(mechanism)) {
            auth_mechanism_ = mechanism;
            break;
        }
    if (auth_mechanism_.empty()) {
        auto joined = [](const std::vector<std::string>& names) {
            std::string text;
            for (const auto& name : names)
                text += (text.empty() ? "" : " ") + name;
            return text.empty() ? std::string("none") : text;
        };
        std::vector<std::string> ours;
        for (const auto& mechanism : preference)
            if (is_usable(mechanism))
                ours.push_back(mechanism);
        fail(local_reply(451, "4.7.0",
                         "no AUTH mechanism in common: we may use " + joined(ours) +
                             ", the smarthost offers " + joined(capabilities_.auth_mechanisms)),
             out);
        return;
    }
    phase_ = phase::auth;
    const std::string& chosen = auth_mechanism_;
    if (chosen == "PLAIN") {
        // RFC 4616 section 2: [authzid] NUL authcid NUL passwd, sent as the initial response
        // (RFC 4954 section 4) to save a round trip.
        std::string payload;
        payload += '\0';
        payload += credentials.user;
        payload += '\0';
        payload += credentials.password;
        auth_step_ = auth_step::plain;
        send("AUTH PLAIN " + base64_encode(payload) + "\r\n", "AUTH PLAIN " + std::string(masked),
             command_kind::auth, out);
    } else if (chosen == "LOGIN") {
        auth_step_ = auth_step::login_user;
        send("AUTH LOGIN\r\n", "AUTH LOGIN", command_kind::auth, out);
    } else if (chosen == "CRAM-MD5") {
        auth_step_ = auth_step::cram_md5;
        send("AUTH CRAM-MD5\r\n", "AUTH CRAM-MD5", command_kind::auth, out);
    } else {
        // XOAUTH2 (Google's and Microsoft's SMTP documentation):
        //   "user=" user ^A "auth=Bearer " token ^A ^A
        // OAUTHBEARER, RFC 7628 section 3.1: a GS2 header naming the user as authzid, then
        //   ^A "auth=Bearer " token ^A ^A
        // Both as the initial response (RFC 4954 section 4).
        const std::string payload = chosen == "XOAUTH2" ? "user=" + credentials.user +
                                                              "\x01"
                                                              "auth=Bearer " +
                                                              credentials.token + "\x01\x01"
                                                        : "n,a=" + gs2_escaped(credentials.user) +
                                                              ",\x01"
                                                              "auth=Bearer " +
                                                              credentials.token + "\x01\x01";
        auth_step_ = auth_step::oauth;
        oauth_error_.clear();
        send("AUTH " + chosen + " " + base64_encode(payload) + "\r\n",
             "AUTH " + chosen + " " + std::string(masked), command_kind::auth, out);
    }
}

void client_session::on_auth(const reply& r, std::vector<client_effect>& out)
{
    const auto& credentials = *options_.auth;
    if (r.is_positive()) { // 235 2.7.0
        auth_step_ = auth_step::none;
        phase_ = phase::ready;
        advance(out);
        return;
    }
    if (r.code != 334) { // 535 bad credentials, 454 temporary, 534 ...: the session cannot go on
        if (oauth_error_.empty()) {
            fail(r, out);
            return;
        }
        reply why = r; // the server's refusal, with the reason it gave in the challenge
        why.lines.push_back("token refused: " + oauth_error_);
        fail(std::move(why), out);
        return;
    }
    // RFC 4954 section 4: 334 carries a base64 challenge; each answer is one base64 line.
    switch (auth_step_) {
    case auth_step::plain: // the server ignored our initial response: give it once more
        auth_step_ = auth_step::none;
        send(base64_encode(std::string(1, '\0') + credentials.user + '\0' + credentials.password) +
                 "\r\n",
             std::string(masked), command_kind::auth, out);
        return;
    case auth_step::login_user:
        auth_step_ = auth_step::login_password;
        send(base64_encode(credentials.user) + "\r\n", std::string(masked), command_kind::auth,
             out);
        return;
    case auth_step::login_password:
        auth_step_ = auth_step::none;
        send(base64_encode(credentials.password) + "\r\n", std::string(masked), command_kind::auth,
             out);
        return;
    case auth_step::cram_md5: {
        // RFC 2195 section 2: user SP hex(HMAC-MD5(password, challenge)).
        auth_step_ = auth_step::none;
        auto challenge =
            base64_decode(r.lines.empty() ? std::string_view{} : std::string_view(r.lines[0]));
        if (!challenge) {
            fail(local_reply(451, "4.7.0", "smarthost sent a malformed CRAM-MD5 challenge"), out);
            return;
        }
        std::string digest = options_.hmac_md5(credentials.password, *challenge);
        send(base64_encode(credentials.user + " " + hex(digest)) + "\r\n", std::string(masked),
             command_kind::auth, out);
        return;
    }
    case auth_step::oauth: {
        // The token was refused: the 334 carries a JSON error (RFC 7628 section 3.2.2). The
        // exchange is completed so that the server sends its failure reply: OAUTHBEARER with
        // a lone ^A (RFC 7628 section 3.2.3), XOAUTH2 with an empty response (Google's
        // XOAUTH2 documentation).
        auth_step_ = auth_step::oauth_error;
        auto challenge =
            base64_decode(r.lines.empty() ? std::string_view{} : std::string_view(r.lines[0]));
        oauth_error_ = printable(challenge ? *challenge : std::string("(not base64)"));
        if (oauth_error_.empty())
            oauth_error_ = "(no details)";
        const bool oauthbearer = auth_mechanism_ == "OAUTHBEARER";
        send(oauthbearer ? base64_encode("\x01") + "\r\n" : std::string("\r\n"),
             oauthbearer ? "AQ==" : "", command_kind::auth, out);
        return;
    }
    case auth_step::oauth_error: // a second challenge after our dummy answer: give up
    case auth_step::none:
        break;
    }
    fail(local_reply(451, "4.7.0", "unexpected AUTH challenge from smarthost"), out);
}

client_session::transaction
client_session::make_transaction(const outgoing_message& base,
                                 std::vector<pending_recipient> recipients) const
{
    transaction t;
    t.message = base;
    t.message.recipients.clear();
    std::size_t n = std::min(recipients.size(),
                             std::max<std::size_t>(1, options_.max_recipients_per_transaction));
    for (std::size_t i = 0; i < n; ++i) {
        t.message.recipients.push_back(std::move(recipients[i].address));
        t.indexes.push_back(recipients[i].index);
    }
    t.later.assign(std::make_move_iterator(recipients.begin() + static_cast<std::ptrdiff_t>(n)),
                   std::make_move_iterator(recipients.end()));
    t.rcpt_replies.resize(n);
    return t;
}

bool client_session::is_too_many(const transaction& t, std::size_t i)
{
    // RFC 5321 section 4.5.3.1.10: a server out of recipient slots answers 452 and the client
    // sends the rest in another transaction. A 452 counts as that only when this transaction
    // has a recipient accepted: otherwise the server took none (storage, policy) and the next
    // transaction would fare no better, so it is an ordinary deferral.
    bool any_accepted = std::any_of(t.rcpt_replies.begin(), t.rcpt_replies.end(),
                                    [](const auto& r) { return r && r->is_positive(); });
    if (!any_accepted)
        return false;
    if (t.rcpt_replies[i])
        return t.rcpt_replies[i]->code == 452;
    // Not sent at all: RCPT stopped at the limit (without PIPELINING).
    return std::any_of(t.rcpt_replies.begin(), t.rcpt_replies.end(),
                       [](const auto& r) { return r && r->code == 452; });
}

bool client_session::needs_continuation(const transaction& t)
{
    if (!t.later.empty())
        return true;
    for (std::size_t i = 0; i < t.rcpt_replies.size(); ++i)
        if (is_too_many(t, i))
            return true;
    return false;
}

void client_session::send_transaction(std::vector<client_effect>& out)
{
    transaction& t = in_flight_.back();
    if (need_rset_) {
        // RFC 5321 section 4.1.1.5: clear what the aborted transaction left at the server.
        need_rset_ = false;
        send("RSET\r\n", "RSET", command_kind::rset, out);
    }
    std::string mail = "MAIL FROM:<" + t.message.reverse_path + ">";
    if (capabilities_.size)
        mail += " SIZE=" + std::to_string(t.message.size); // RFC 1870 section 6
    if (t.message.has_8bit && capabilities_.eight_bit_mime)
        mail += " BODY=8BITMIME"; // RFC 6152 section 3
    send(mail + "\r\n", mail, command_kind::mail, out);
    if (!capabilities_.pipelining)
        return; // RCPT follows the MAIL reply
    // RFC 2920 section 3.1: MAIL, every RCPT and DATA go as one group; DATA is its last command.
    for (std::size_t i = 0; i < t.message.recipients.size(); ++i) {
        std::string rcpt = "RCPT TO:<" + t.message.recipients[i] + ">";
        send(rcpt + "\r\n", rcpt, command_kind::rcpt, out, i);
    }
    send("DATA\r\n", "DATA", command_kind::data, out);
}

void client_session::send_next_rcpt_or_data(std::vector<client_effect>& out)
{
    transaction& t = in_flight_.back();
    for (std::size_t i = 0; i < t.rcpt_replies.size(); ++i) {
        if (t.rcpt_replies[i] && is_too_many(t, i))
            break; // the server is out of slots: the rest go in the next transaction
        if (!t.rcpt_replies[i]) {
            std::string rcpt = "RCPT TO:<" + t.message.recipients[i] + ">";
            send(rcpt + "\r\n", rcpt, command_kind::rcpt, out, i);
            return;
        }
    }
    bool any_accepted = std::any_of(t.rcpt_replies.begin(), t.rcpt_replies.end(),
                                    [](const auto& r) { return r->is_positive(); });
    if (any_accepted) {
        send("DATA\r\n", "DATA", command_kind::data, out);
        return;
    }
    need_rset_ = true; // MAIL was accepted: the transaction is still open at the server
    finish_transaction(false, std::nullopt, out);
    advance(out);
}

bool client_session::refused_for_authentication(const reply& r, std::vector<client_effect>& out)
{
    // RFC 4954 section 6: 530 5.7.0 "Authentication required" (Exim at MAIL). Postfix with
    // permit_sasl_authenticated says 554 5.7.1 "Access denied" (at RCPT, smtpd_delay_reject).
    // From a smarthost that offers AUTH to a client that did not authenticate, a 5.7.0 or
    // 5.7.1 refusal is about us, not the message: bouncing would blame every sender for our
    // configuration. Everything is deferred and the operator is told what to set.
    if (options_.auth || !r.is_permanent_failure())
        return false;
    bool policy = r.enhanced == "5.7.0" || r.enhanced == "5.7.1";
    if (r.code != 530 && !(policy && !capabilities_.auth_mechanisms.empty()))
        return false;
    authentication_required_ = true;
    fail(local_reply(451, "4.7.0",
                     "smarthost requires authentication (" + r.to_string() +
                         "): set auth-user and auth-password-file"),
         out);
    return true;
}

void client_session::on_mail(const reply& r, std::vector<client_effect>& out)
{
    if (refused_for_authentication(r, out))
        return;
    transaction& t = in_flight_.back();
    t.mail_reply = r;
    if (capabilities_.pipelining)
        return; // the group's RCPT and DATA replies follow; decide at DATA
    if (!r.is_positive()) {
        finish_transaction(false, std::nullopt, out);
        advance(out);
        return;
    }
    send_next_rcpt_or_data(out);
}

void client_session::on_rcpt(const reply& r, std::size_t index, std::vector<client_effect>& out)
{
    if (refused_for_authentication(r, out))
        return;
    transaction& t = in_flight_.back();
    t.rcpt_replies[index] = r;
    if (!capabilities_.pipelining)
        send_next_rcpt_or_data(out);
}

void client_session::on_data(const reply& r, std::vector<client_effect>& out)
{
    transaction& t = in_flight_.back();
    t.data_reply = r;
    bool mail_ok = t.mail_reply && t.mail_reply->is_positive();
    bool any_accepted =
        mail_ok && std::any_of(t.rcpt_replies.begin(), t.rcpt_replies.end(),
                               [](const auto& rr) { return rr && rr->is_positive(); });
    if (r.code == 354) {
        if (any_accepted) {
            t.content_sent = true;
            out.push_back(send_message_content{t.message.tag, t.message.has_8bit &&
                                                                  !capabilities_.eight_bit_mime});
            expected_.push_back({command_kind::final_dot});
            // RFC 2920 section 3.1: with PIPELINING the next transaction may follow the final
            // dot in the same round trip; advance() asks for it now.
            advance(out);
            return;
        }
        // RFC 2920 section 3.1: DATA accepted although no recipient was: send a lone dot, so
        // the server gets an empty message for nobody and the session stays in step.
        send(".\r\n", ".", command_kind::lone_dot, out);
        finish_transaction(false, std::nullopt, out);
        advance(out);
        return;
    }
    if (mail_ok)
        need_rset_ = true;
    finish_transaction(false, std::nullopt, out);
    advance(out);
}

void client_session::on_final_dot(const reply& r, std::vector<client_effect>& out)
{
    // RFC 5321 section 4.3.2: the end of data is answered with 250 or a failure. Anything else
    // means the server is out of step with us, typically silent on the dot and answering only
    // the QUIT pipelined behind it: its 221 must never pass for a delivery. The message stays
    // pending, unconfirmed since its dot went out.
    if (r.code == 250 || r.is_transient_failure() || r.is_permanent_failure()) {
        finish_transaction(true, r, out);
        advance(out);
        return;
    }
    fail(local_reply(451, "4.5.0",
                     "unexpected reply to the end of data from smarthost: " + r.to_string()),
         out);
}

void client_session::finish_transaction(bool front, const std::optional<reply>& final_reply,
                                        std::vector<client_effect>& out)
{
    transaction t = std::move(front ? in_flight_.front() : in_flight_.back());
    if (front)
        in_flight_.pop_front();
    else
        in_flight_.pop_back();
    message_result result{t.message.tag, true, {}, true};
    // RFC 5321 section 4.3.2: DATA is answered with 354 or a failure. A 2xx (or any other
    // odd code) instead means the content was never sent: never count that as delivered.
    std::optional<reply> odd_data_reply;
    if (t.data_reply && t.data_reply->code != 354 && !t.data_reply->is_transient_failure() &&
        !t.data_reply->is_permanent_failure())
        odd_data_reply = local_reply(
            451, "4.5.0", "unexpected reply to DATA from smarthost: " + t.data_reply->to_string());
    bool mail_ok = t.mail_reply && t.mail_reply->is_positive();
    bool taken = final_reply && final_reply->code == 250;
    std::vector<pending_recipient> retry;
    for (std::size_t i = 0; i < t.message.recipients.size(); ++i) {
        const std::string& address = t.message.recipients[i];
        if (taken && is_too_many(t, i)) {
            retry.push_back({address, t.indexes[i]});
            continue;
        }
        // The first reply that went wrong decides: MAIL, then this RCPT, then DATA, then the dot.
        const reply* decisive = nullptr;
        if (!mail_ok)
            decisive = t.mail_reply ? &*t.mail_reply : nullptr;
        else if (!t.rcpt_replies[i] || !t.rcpt_replies[i]->is_positive())
            decisive = t.rcpt_replies[i] ? &*t.rcpt_replies[i] : nullptr;
        else if (final_reply)
            decisive = &*final_reply;
        else if (odd_data_reply)
            decisive = &*odd_data_reply;
        else if (t.data_reply && t.data_reply->code != 354)
            decisive = &*t.data_reply;
        if (decisive)
            result.recipients.push_back(
                {t.indexes[i], address, status_of(*decisive), *decisive, true});
        else
            result.recipients.push_back({t.indexes[i], address, delivery_status::deferred,
                                         local_reply(451, "4.4.2", "no reply from smarthost")});
    }
    // Recipients beyond this transaction go on in the next one when this one completed, or
    // when the server refused each recipient on its own merits (its MAIL was taken).
    bool none_accepted = std::none_of(t.rcpt_replies.begin(), t.rcpt_replies.end(),
                                      [](const auto& r) { return r && r->is_positive(); });
    if (taken || (mail_ok && none_accepted)) {
        for (auto& p : t.later)
            retry.push_back(std::move(p));
    } else {
        reply why = local_reply(451, "4.5.3",
                                "not sent: the transaction for this message's other recipients "
                                "did not complete");
        for (auto& p : t.later)
            result.recipients.push_back({p.index, p.address, delivery_status::deferred, why});
    }
    if (!retry.empty()) {
        std::sort(retry.begin(), retry.end(),
                  [](const auto& a, const auto& b) { return a.index < b.index; });
        continuations_.push_back(make_transaction(t.message, std::move(retry)));
        result.last = false;
    }
    out.push_back(message_finished{std::move(result)});
}

void client_session::advance(std::vector<client_effect>& out)
{
    if (phase_ != phase::ready || message_requested_)
        return;
    // A transaction still waiting for its MAIL/RCPT/DATA replies must finish setting up first;
    // one whose recipients go on in another transaction waits for its dot's reply, which
    // decides that continuation.
    for (const auto& t : in_flight_)
        if (!t.content_sent || needs_continuation(t))
            return;
    // Without PIPELINING nothing may be sent before the final dot's reply (RFC 5321 4.1.1.4).
    if (!in_flight_.empty() && !capabilities_.pipelining)
        return;
    if (!continuations_.empty()) {
        in_flight_.push_back(std::move(continuations_.front()));
        continuations_.pop_front();
        send_transaction(out);
        return;
    }
    if (!no_more_ && messages_started_ < options_.max_messages) {
        message_requested_ = true;
        out.push_back(request_message{});
        return;
    }
    quit(out); // pipelined behind the final dot when one is in flight (RFC 2920 section 3.1)
}

void client_session::quit(std::vector<client_effect>& out)
{
    phase_ = phase::quitting;
    quit_sent_ = true;
    send("QUIT\r\n", "QUIT", command_kind::quit, out);
}

void client_session::report_unsent(const transaction& t, const reply& why,
                                   std::vector<client_effect>& out)
{
    message_result result{t.message.tag, true, {}, true};
    for (std::size_t i = 0; i < t.message.recipients.size(); ++i) {
        const std::string& address = t.message.recipients[i];
        // A refusal that already arrived is final whatever happened later.
        const reply* refusal = nullptr;
        if (t.mail_reply && !t.mail_reply->is_positive())
            refusal = &*t.mail_reply;
        else if (t.rcpt_replies[i] && !t.rcpt_replies[i]->is_positive())
            refusal = &*t.rcpt_replies[i];
        bool accepted = t.mail_reply && t.mail_reply->is_positive() && t.rcpt_replies[i] &&
                        t.rcpt_replies[i]->is_positive();
        if (refusal)
            result.recipients.push_back(
                {t.indexes[i], address, status_of(*refusal), *refusal, true});
        else if (accepted && t.content_sent) // the dot went out, its reply never came
            result.recipients.push_back({t.indexes[i], address, delivery_status::unconfirmed, why});
        else
            result.recipients.push_back({t.indexes[i], address, delivery_status::deferred, why});
    }
    for (const auto& p : t.later)
        result.recipients.push_back({p.index, p.address, delivery_status::deferred, why});
    std::sort(result.recipients.begin(), result.recipients.end(),
              [](const auto& a, const auto& b) { return a.index < b.index; });
    out.push_back(message_finished{std::move(result)});
}

void client_session::fail(reply why, std::vector<client_effect>& out, bool send_quit)
{
    // Nothing that fails the connection is the messages' fault: all in flight are deferred,
    // or unconfirmed when their final dot went out without a reply (at-least-once delivery).
    for (const auto& t : in_flight_)
        report_unsent(t, why, out);
    for (const auto& t : continuations_)
        report_unsent(t, why, out);
    in_flight_.clear();
    continuations_.clear();
    expected_.clear();
    failure_ = why;
    if (send_quit) {
        // RFC 5321 section 4.1.1.10: end with QUIT whenever the channel still works, so the
        // server records a clean end rather than a lost connection.
        phase_ = phase::quitting;
        if (quit_sent_)
            expected_.push_back({command_kind::quit}); // already pipelined; its reply or a close
        else
            quit(out);
        return;
    }
    phase_ = phase::finished;
    out.push_back(connection_finished{std::move(why), authentication_required_});
}

} // namespace leafmail::smtp
