#include "leafmail/routes.hpp"

#include <catch2/catch.hpp>

using namespace leafmail;

namespace {

route make_route(std::string name, std::vector<std::string> patterns)
{
    route r;
    r.name = std::move(name);
    for (const auto& p : patterns)
        r.senders.push_back(*parse_sender_pattern(p));
    r.relay.smarthost = r.name + ".example:25";
    return r;
}

} // namespace

TEST_CASE("sender patterns are an address or an at sign and a domain")
{
    auto exact = parse_sender_pattern("Me@Example.ORG");
    REQUIRE(exact);
    CHECK(exact->local == "Me");
    CHECK(exact->domain == "example.org");
    auto whole = parse_sender_pattern("@example.org");
    REQUIRE(whole);
    CHECK(whole->local.empty());
    CHECK(whole->domain == "example.org");
    CHECK(parse_sender_pattern("first.last+tag@mail-1.example.org"));

    for (const char* bad :
         {"", "example.org", "@", "me@", "a@b@c", "<me@example.org>", "me@exa mple.org",
          "\"me\"@example.org", "me@.example.org", "me@example.org.", "me@exa..mple",
          ".me@example.org", "me@example_org"}) {
        INFO(bad);
        CHECK_FALSE(parse_sender_pattern(bad));
    }
}

TEST_CASE("a pattern matches the local part exactly and the domain without regard to case")
{
    const auto exact = *parse_sender_pattern("me@example.org");
    CHECK(matches(exact, "me@example.org"));
    CHECK(matches(exact, "me@EXAMPLE.org"));
    CHECK_FALSE(matches(exact, "Me@example.org"));
    CHECK_FALSE(matches(exact, "you@example.org"));
    CHECK_FALSE(matches(exact, "me@example.org.evil"));
    CHECK_FALSE(matches(exact, "me@sub.example.org"));
    CHECK_FALSE(matches(exact, ""));
    CHECK_FALSE(matches(exact, "me"));

    const auto domain = *parse_sender_pattern("@Example.org");
    CHECK(matches(domain, "anyone@example.ORG"));
    CHECK_FALSE(matches(domain, "anyone@sub.example.org"));
    CHECK_FALSE(matches(domain, "example.org"));
    CHECK_FALSE(matches(domain, ""));
}

TEST_CASE("the first section whose senders match carries the mail, else the default route")
{
    config c;
    c.relay.smarthost = "default.example:25";
    c.routes = {make_route("work", {"boss@work.example", "@work.example"}),
                make_route("also-work", {"@work.example", "me@gmail.example"}),
                make_route("gmail", {"me@gmail.example"})};
    CHECK(route_name_for_sender(c, "boss@work.example") == "work");
    CHECK(route_name_for_sender(c, "intern@Work.Example") == "work");
    CHECK(route_name_for_sender(c, "me@gmail.example") == "also-work");
    CHECK(route_name_for_sender(c, "you@gmail.example") == "default");
    CHECK(route_name_for_sender(c, "") == "default"); // bounces: the null sender
    CHECK(route_name_for_sender(c, "root") == "default");

    CHECK(relay_of_route(c, "default") == &c.relay);
    REQUIRE(relay_of_route(c, "gmail"));
    CHECK(relay_of_route(c, "gmail")->smarthost == "gmail.example:25");
    CHECK(relay_of_route(c, "nope") == nullptr);
}

TEST_CASE("lists are split at blanks and commas")
{
    CHECK(split_list(" a, b ,c\td,,") == std::vector<std::string>{"a", "b", "c", "d"});
    CHECK(split_list("").empty());
    CHECK(split_list(" , ").empty());
}
