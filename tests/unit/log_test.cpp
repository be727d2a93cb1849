#include "leafmail/log.hpp"

#include <catch2/catch.hpp>

using leafmail::log::fields;

TEST_CASE("log fields stay one parseable line whatever the values hold")
{
    CHECK(fields({{"event", "accepted"}, {"size", "12"}}) == "event=accepted size=12");
    CHECK(fields({{"from", "<>"}}) == "from=<>");
    CHECK(fields({{"reply", "550 5.1.1 no such user"}}) == "reply=\"550 5.1.1 no such user\"");
    CHECK(fields({{"x", ""}}) == "x=\"\"");
    CHECK(fields({{"x", "a\"b\\c"}}) == "x=\"a\\\"b\\\\c\"");
    CHECK(fields({{"x", "line\r\nevent=forged"}}) == "x=\"line\\x0d\\x0aevent=forged\"");
    CHECK(fields({{"x", "k=v"}}) == "x=\"k=v\"");
}

TEST_CASE("the --log flag names syslog or stderr, nothing else")
{
    CHECK(leafmail::log::destination_named("syslog") == leafmail::log::destination::syslog);
    CHECK(leafmail::log::destination_named("stderr") == leafmail::log::destination::stderr_stream);
    CHECK_FALSE(leafmail::log::destination_named("file"));
    CHECK_FALSE(leafmail::log::destination_named(""));
    CHECK_FALSE(leafmail::log::destination_named("Syslog"));
}
