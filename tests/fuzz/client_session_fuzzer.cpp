// client_session fed arbitrary smarthost bytes (issue 6). Besides "no crash, no sanitizer
// report" it checks what leafmail-flush relies on:
//  - every command is exactly one CRLF-terminated line (no CR or LF inside: a reply cannot
//    make us inject a command);
//  - the password never appears in what --verbose shows (plain, or base64 as PLAIN/LOGIN send it);
//  - tls = starttls never downgrades: no AUTH, MAIL, RCPT or DATA before the handshake;
//    no AUTH in plaintext unless auth_over_plaintext;
//  - content is streamed only after a DATA command went out;
//  - every message handed over is finished exactly once (at-least-once: a message is never
//    silently dropped), with one result per recipient in order; "delivered" only when MAIL
//    was sent for it;
//  - nothing comes after connection_finished;
//  - the outcome does not depend on how the server's bytes were split.
#include "fuzz_check.hpp"
#include "leafmail/smtp/client_session.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace leafmail::smtp;

constexpr std::string_view user = "fuzz-user";
constexpr std::string_view password = "Secret-Pa55word-4-fuzz";

std::string base64(std::string_view in)
{
    static constexpr char table[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = static_cast<unsigned char>(in[i]) << 16 |
                           static_cast<unsigned char>(in[i + 1]) << 8 |
                           static_cast<unsigned char>(in[i + 2]);
        out += {table[v >> 18 & 63], table[v >> 12 & 63], table[v >> 6 & 63], table[v & 63]};
    }
    if (i + 1 == in.size()) {
        const unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += {table[v >> 18 & 63], table[v >> 12 & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        const unsigned v =
            static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8;
        out += {table[v >> 18 & 63], table[v >> 12 & 63], table[v >> 6 & 63], '='};
    }
    return out;
}

struct outcome {
    std::string sent;
    std::map<std::uint64_t, std::vector<std::pair<std::string, int>>> results;
    bool finished = false;
};

class driver {
public:
    driver(const client_options& options, std::size_t messages, std::size_t recipients)
        : options_(options), session_(options)
    {
        for (std::size_t m = 0; m < messages; ++m) {
            outgoing_message msg;
            msg.tag = 100 + m;
            msg.reverse_path = m == 1 ? "" : "sender@example.org";
            for (std::size_t r = 0; r < recipients; ++r)
                msg.recipients.push_back("rcpt" + std::to_string(r) + "@example.net");
            msg.size = 1000 * (m + 1);
            msg.has_8bit = m % 2 == 1;
            queue_.push_back(msg);
        }
    }

    void feed(std::string_view bytes) { handle(session_.feed(bytes)); }

    outcome finish()
    {
        handle(session_.connection_lost("fuzz: connection closed"));
        FUZZ_CHECK(result_.finished);
        FUZZ_CHECK(session_.is_finished());
        // Every message handed over got exactly one result (checked as they came).
        FUZZ_CHECK(result_.results.size() == handed_.size());
        return std::move(result_);
    }

private:
    void handle(std::vector<client_effect> effects)
    {
        for (auto& e : effects) {
            FUZZ_CHECK(!result_.finished); // nothing after connection_finished
            if (const auto* c = std::get_if<send_command>(&e)) {
                check_command(*c);
                result_.sent += c->wire;
            } else if (std::holds_alternative<start_tls>(e)) {
                FUZZ_CHECK(!tls_);
                FUZZ_CHECK(options_.tls == client_tls::starttls);
                tls_ = true;
                result_.sent += "<tls>";
                handle(session_.tls_established());
            } else if (std::holds_alternative<request_message>(e)) {
                if (queue_.empty()) {
                    handle(session_.no_more_messages());
                } else {
                    auto next = queue_.front();
                    queue_.pop_front();
                    handed_[next.tag] = next;
                    handle(session_.message(next));
                }
            } else if (const auto* s = std::get_if<send_message_content>(&e)) {
                FUZZ_CHECK(data_commands_ > content_sends_);
                FUZZ_CHECK(handed_.count(s->tag) == 1);
                ++content_sends_;
                result_.sent += "<content " + std::to_string(s->tag) + ">";
            } else if (const auto* f = std::get_if<message_finished>(&e)) {
                const auto& r = f->result;
                const auto found = handed_.find(r.tag);
                FUZZ_CHECK(found != handed_.end());
                FUZZ_CHECK(result_.results.count(r.tag) == 0); // exactly once
                FUZZ_CHECK(r.recipients.size() == found->second.recipients.size());
                auto& recorded = result_.results[r.tag];
                for (std::size_t i = 0; i < r.recipients.size(); ++i) {
                    FUZZ_CHECK(r.recipients[i].address == found->second.recipients[i]);
                    if (r.recipients[i].status == delivery_status::delivered)
                        FUZZ_CHECK(r.attempted);
                    recorded.emplace_back(r.recipients[i].address,
                                          static_cast<int>(r.recipients[i].status));
                }
            } else if (std::holds_alternative<connection_finished>(e)) {
                result_.finished = true;
            }
        }
    }

    void check_command(const send_command& c)
    {
        FUZZ_CHECK(c.wire.size() >= 2 && c.wire.ends_with("\r\n"));
        const std::string_view line(c.wire.data(), c.wire.size() - 2);
        FUZZ_CHECK(line.find_first_of("\r\n") == std::string_view::npos);
        FUZZ_CHECK(c.shown.find_first_of("\r\n") == std::string::npos);
        FUZZ_CHECK(c.shown.find(password) == std::string::npos);
        FUZZ_CHECK(c.shown.find(base64(password)) == std::string::npos);
        const std::string plain =
            std::string(1, '\0') + std::string(user) + '\0' + std::string(password);
        FUZZ_CHECK(c.shown.find(base64(plain)) == std::string::npos);
        const bool needs_tls = options_.tls == client_tls::starttls && !tls_;
        const bool is_auth = line.starts_with("AUTH ");
        const bool is_mail =
            line.starts_with("MAIL ") || line.starts_with("RCPT ") || line == "DATA";
        if (needs_tls)
            FUZZ_CHECK(!is_auth && !is_mail);
        if (is_auth)
            FUZZ_CHECK(options_.auth &&
                       (options_.tls != client_tls::none || options_.auth_over_plaintext));
        if (line == "DATA")
            ++data_commands_;
    }

    client_options options_;
    client_session session_;
    std::deque<outgoing_message> queue_;
    std::map<std::uint64_t, outgoing_message> handed_;
    bool tls_ = false;
    std::size_t data_commands_ = 0;
    std::size_t content_sends_ = 0;
    outcome result_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 3)
        return 0;
    // Three octets of control: options, message/recipient counts, split step; the rest is
    // what the smarthost says.
    client_options options;
    options.helo = "fuzz.leafmail";
    options.tls = static_cast<client_tls>(data[0] % 3);
    if (data[0] & 4) {
        options.auth = client_credentials{std::string(user), std::string(password), {}};
        options.auth_over_plaintext = (data[0] & 8) != 0;
        if (data[0] & 16)
            options.hmac_md5 = [](std::string_view, std::string_view) {
                return std::string(16, '\x5a');
            };
    }
    options.max_messages = 1 + (data[0] >> 5) % 4;
    const std::size_t messages = data[1] % 4;
    const std::size_t recipients = 1 + (data[1] >> 2) % 3;
    const std::size_t step = 1 + data[2] % 64;
    const std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);

    driver whole(options, messages, recipients);
    whole.feed(input);
    const outcome expected = whole.finish();

    driver pieces(options, messages, recipients);
    for (std::size_t i = 0; i < input.size(); i += step)
        pieces.feed(input.substr(i, step));
    const outcome got = pieces.finish();

    // At STARTTLS the split matters by design: bytes behind the 220 in the same read are
    // refused as injected (RFC 3207 section 4.2), in a later read they are not.
    if (options.tls != client_tls::starttls) {
        FUZZ_CHECK(got.sent == expected.sent);
        FUZZ_CHECK(got.results == expected.results);
    }
    return 0;
}
