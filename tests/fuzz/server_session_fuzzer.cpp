// server_session fed arbitrary client bytes (issue 6). Besides "no crash, no sanitizer report"
// it checks what the transport relies on:
//  - every reply has a valid code (2xx..5xx, RFC 5321 4.2) with a matching enhanced code
//    class, and its wire form is whole CRLF lines of "ddd-" / "ddd " with no other CR or LF;
//  - effects come in a legal order (content only between begin_message and its end; one
//    commit or discard per message; nothing after close_connection);
//  - committed content has CRLF line ends only (no bare LF or CR, no NUL), lines of at most
//    998 octets and at most max_message_size octets;
//  - the outcome does not depend on how the bytes were split (whole vs. split at two
//    offsets taken from the input): same replies, same effects, same content per message.
#include "fuzz_check.hpp"
#include "leafmail/smtp/server_session.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

using namespace leafmail::smtp;

constexpr std::uint64_t max_size = 4096; // small, so that the size limit is reachable

struct outcome {
    std::vector<std::string> events;   // replies and effect kinds, in order
    std::vector<std::string> messages; // content of each committed message
};

bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

void check_reply(const reply& r)
{
    FUZZ_CHECK(r.code >= 200 && r.code <= 599);
    FUZZ_CHECK(!r.lines.empty());
    if (!r.enhanced.empty()) {
        // RFC 3463: class.subject.detail, the class matching the reply's first digit.
        FUZZ_CHECK(r.enhanced.size() >= 5 && r.enhanced[0] == char('0' + r.code / 100) &&
                   r.enhanced[1] == '.');
        FUZZ_CHECK(r.code / 100 != 3);
    }
    const std::string wire = r.to_wire();
    FUZZ_CHECK(wire.size() >= 6 && wire.ends_with("\r\n"));
    std::size_t start = 0;
    std::size_t lines = 0;
    while (start < wire.size()) {
        const auto end = wire.find("\r\n", start);
        FUZZ_CHECK(end != std::string::npos);
        const std::string_view line(wire.data() + start, end - start);
        FUZZ_CHECK(line.size() >= 4 && line.size() <= 510); // RFC 5321 4.5.3.1.5: 512 with CRLF
        FUZZ_CHECK(is_digit(line[0]) && is_digit(line[1]) && is_digit(line[2]));
        FUZZ_CHECK(std::stoi(std::string(line.substr(0, 3))) == r.code);
        const bool last = end + 2 == wire.size();
        FUZZ_CHECK(line[3] == (last ? ' ' : '-'));
        FUZZ_CHECK(line.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos);
        start = end + 2;
        ++lines;
    }
    FUZZ_CHECK(lines == r.lines.size());
}

void check_content(const std::string& content)
{
    FUZZ_CHECK(content.size() <= max_size);
    std::size_t line_length = 0;
    for (std::size_t i = 0; i < content.size(); ++i) {
        const char c = content[i];
        FUZZ_CHECK(c != '\0');
        if (c == '\r') {
            FUZZ_CHECK(i + 1 < content.size() && content[i + 1] == '\n'); // no bare CR
        } else if (c == '\n') {
            FUZZ_CHECK(i > 0 && content[i - 1] == '\r'); // no bare LF
            FUZZ_CHECK(line_length <= 998 + 1);          // the CR counted: 998 octets of text
            line_length = 0;
            continue;
        }
        ++line_length;
    }
    FUZZ_CHECK(content.empty() || content.ends_with("\r\n"));
}

class driver {
public:
    // store_plan: bit i says whether the i-th commit succeeds, fails with 451 or with 452.
    explicit driver(std::uint32_t store_plan)
        : session_(server_options{"fuzz.example", max_size, 5, 8}), plan_(store_plan)
    {
        record(send_reply{session_.greeting()});
    }

    void feed(std::string_view bytes)
    {
        if (closed_) {
            FUZZ_CHECK(session_.feed(bytes).empty());
            return;
        }
        carry_out(session_.feed(bytes));
    }

    outcome finish()
    {
        FUZZ_CHECK(closed_ == session_.is_closed());
        return std::move(result_);
    }

private:
    void carry_out(std::vector<effect> effects)
    {
        for (std::size_t i = 0; i < effects.size(); ++i) {
            FUZZ_CHECK(!closed_); // close_connection is the last thing ever
            auto more = record(effects[i]);
            effects.insert(effects.end(), more.begin(), more.end());
        }
    }

    std::vector<effect> record(const effect& e)
    {
        std::vector<effect> more;
        if (const auto* r = std::get_if<send_reply>(&e)) {
            check_reply(r->what);
            result_.events.push_back(r->what.to_wire());
        } else if (std::holds_alternative<begin_message>(e)) {
            FUZZ_CHECK(!in_message_);
            in_message_ = true;
            content_.clear();
            result_.events.push_back("begin");
        } else if (const auto* c = std::get_if<message_content>(&e)) {
            FUZZ_CHECK(in_message_);
            FUZZ_CHECK(!c->bytes.empty());
            content_ += c->bytes;
            FUZZ_CHECK(content_.size() <= max_size); // never a byte past the limit
        } else if (std::holds_alternative<commit_message>(e)) {
            FUZZ_CHECK(in_message_);
            in_message_ = false;
            check_content(content_);
            result_.messages.push_back(content_);
            result_.events.push_back("commit");
            const unsigned choice = (plan_ >> (2 * (commits_++ % 16))) & 3u;
            if (choice == 1)
                more = session_.store_failed(store_error::local_error);
            else if (choice == 2)
                more = session_.store_failed(store_error::insufficient_storage);
            else
                more = session_.stored("0123456789abcdef-00000001-0000");
        } else if (std::holds_alternative<discard_message>(e)) {
            FUZZ_CHECK(in_message_);
            in_message_ = false;
            result_.events.push_back("discard");
        } else if (std::holds_alternative<close_connection>(e)) {
            closed_ = true;
            result_.events.push_back("close");
        }
        return more;
    }

    server_session session_;
    std::uint32_t plan_;
    unsigned commits_ = 0;
    bool in_message_ = false;
    bool closed_ = false;
    std::string content_;
    outcome result_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 6)
        return 0;
    // Six octets of control: the store plan and two split offsets; the rest is client input.
    std::uint32_t plan = 0;
    for (int i = 0; i < 4; ++i)
        plan = plan << 8 | data[i];
    const std::string_view input(reinterpret_cast<const char*>(data + 6), size - 6);
    std::size_t a = input.empty() ? 0 : data[4] * input.size() / 256;
    std::size_t b = input.empty() ? 0 : data[5] * input.size() / 256;
    if (a > b)
        std::swap(a, b);

    driver whole(plan);
    whole.feed(input);
    const outcome expected = whole.finish();

    driver split(plan);
    split.feed(input.substr(0, a));
    split.feed(input.substr(a, b - a));
    split.feed(input.substr(b));
    const outcome got = split.finish();

    FUZZ_CHECK(got.events == expected.events);
    FUZZ_CHECK(got.messages == expected.messages);

    // Byte by byte too, for short inputs (the classic parsegrind).
    if (input.size() <= 256) {
        driver bytewise(plan);
        for (std::size_t i = 0; i < input.size(); ++i)
            bytewise.feed(input.substr(i, 1));
        const outcome one = bytewise.finish();
        FUZZ_CHECK(one.events == expected.events);
        FUZZ_CHECK(one.messages == expected.messages);
    }
    return 0;
}
