// Streaming dot-stuffing: the same output whatever the chunking.
#include "leafmail/smtp/dot_stuffer.hpp"

#include <catch2/catch.hpp>

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
