// Streaming dot-stuffing: the same output whatever the chunking.
#include "leafmail/smtp/dot_stuffer.hpp"

#include <catch2/catch.hpp>
#include <random>

using leafmail::smtp::dot_stuffer;

namespace {

std::string stuff_whole(std::string_view content)
{
    dot_stuffer s;
    std::string out;
    s.stuff(content, out);
    s.finish(out);
    return out;
}

} // namespace

TEST_CASE("dot stuffing: RFC 5321 section 4.5.2", "[dot_stuffer]")
{
    CHECK(stuff_whole("") == ".\r\n");
    CHECK(stuff_whole("a\r\n") == "a\r\n.\r\n");
    CHECK(stuff_whole(".\r\n") == "..\r\n.\r\n");
    CHECK(stuff_whole("a\r\n.b\r\n..c\r\n") == "a\r\n..b\r\n...c\r\n.\r\n");
    CHECK(stuff_whole("no end") == "no end\r\n.\r\n");
    CHECK(stuff_whole("ends in cr\r") == "ends in cr\r\r\n.\r\n");
    CHECK(stuff_whole("x.y\r\n") == "x.y\r\n.\r\n");
    // A bare LF starts a line for stuffing: "\n.\r\n" never reaches the server unstuffed.
    CHECK(stuff_whole("a\n.\r\nb\r\n") == "a\n..\r\nb\r\n.\r\n");
    // So does a bare CR: a lenient receiver that ends data at "\r.\r" must not see one.
    CHECK(stuff_whole("a\r.\rb\r\n") == "a\r..\rb\r\n.\r\n");
    CHECK(stuff_whole("8bit \xc3\xa9\r\n") == "8bit \xc3\xa9\r\n.\r\n");
}

TEST_CASE("dot stuffing: split at every offset and into single bytes", "[dot_stuffer]")
{
    const std::string content = ".start\r\nline\r\n.\r\n..two\r\nx\n.y\r\n.\r\n\r\n.end";
    const std::string expected = stuff_whole(content);
    for (std::size_t a = 0; a <= content.size(); ++a) {
        for (std::size_t b = a; b <= content.size(); ++b) {
            dot_stuffer s;
            std::string out;
            s.stuff(std::string_view(content).substr(0, a), out);
            s.stuff(std::string_view(content).substr(a, b - a), out);
            s.stuff(std::string_view(content).substr(b), out);
            CHECK(s.content_size() == content.size());
            s.finish(out);
            INFO("split " << a << " " << b);
            REQUIRE(out == expected);
        }
    }
    // finish() resets: the stuffer is reusable for the next message.
    dot_stuffer s;
    std::string out;
    s.stuff("x", out);
    s.finish(out);
    out.clear();
    s.stuff(".y\r\n", out);
    s.finish(out);
    CHECK(out == "..y\r\n.\r\n");
}

TEST_CASE("dot stuffing: the same as the rule applied octet by octet, on random content",
          "[dot_stuffer]")
{
    // The rule, one octet at a time, as simply as it can be said: a '.' at the start of the
    // content or after a CR or LF gets one more; the end adds CRLF unless the content ends
    // in CRLF, then ".<CR><LF>".
    auto reference = [](const std::string& content) {
        std::string out;
        for (std::size_t i = 0; i < content.size(); ++i) {
            if (content[i] == '.' && (i == 0 || content[i - 1] == '\n' || content[i - 1] == '\r'))
                out += '.';
            out += content[i];
        }
        if (!content.empty() && !content.ends_with("\r\n"))
            out += "\r\n";
        return out + ".\r\n";
    };
    std::mt19937 random(15);
    const char alphabet[] = {'.', '\r', '\n', 'a', '.', '\n'};
    for (int round = 0; round < 2000; ++round) {
        std::string content(random() % 40, 'a');
        for (char& c : content)
            c = alphabet[random() % sizeof alphabet];
        dot_stuffer s;
        std::string out;
        for (std::size_t at = 0; at < content.size();) {
            const std::size_t n = 1 + random() % 7;
            s.stuff(std::string_view(content).substr(at, n), out);
            at += n;
        }
        s.finish(out);
        INFO("content of " << content.size() << " octets, round " << round);
        REQUIRE(out == reference(content));
    }
}
