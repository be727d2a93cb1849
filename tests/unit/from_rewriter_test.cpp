// rewrite-from: a local From: gets the route's address, display name kept; any split.
#include "leafmail/relay/from_rewriter.hpp"

#include "leafmail/aliases.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace leafmail::relay;

namespace {

bool is_local(std::string_view address)
{
    return leafmail::is_local_address(address, "laptop") || address == "joe@example.org";
}

std::optional<std::string> rewrite(std::string_view value)
{
    return rewrite_from_value(value, "me@example.org", is_local);
}

// The whole message through the filter, in pieces of `split` octets (0: in one piece).
std::string filter_whole(std::string_view in, std::size_t split = 0)
{
    from_rewriter f("me@example.org", is_local);
    std::string out;
    if (split == 0)
        f.put(in, out);
    else
        for (std::size_t at = 0; at < in.size(); at += split)
            f.put(in.substr(at, split), out);
    f.finish(out);
    return out;
}

} // namespace

TEST_CASE("a local From keeps its display name and gets the route address", "[from_rewriter]")
{
    CHECK(rewrite(" \"root (laptop)\" <root@laptop>") == "\"root (laptop)\" <me@example.org>");
    CHECK(rewrite(" Cron Daemon <root@localhost>") == "Cron Daemon <me@example.org>");
    CHECK(rewrite(" root") == "me@example.org");
    CHECK(rewrite(" root@LAPTOP") == "me@example.org");
    CHECK(rewrite(" root (Cron Daemon)") == "\"Cron Daemon\" <me@example.org>");
    CHECK(rewrite(" Joe User <joe@example.org>") == "Joe User <me@example.org>");
    CHECK(rewrite(" <@relay.example:root@laptop>") == "me@example.org");
    CHECK(rewrite(" \"a \\\" quote\" <root>") == "\"a \\\" quote\" <me@example.org>");
    CHECK(rewrite(" root (a \"quoted\" name)") == "\"a \\\"quoted\\\" name\" <me@example.org>");
}

TEST_CASE("other From addresses and groups are left alone", "[from_rewriter]")
{
    CHECK_FALSE(rewrite(" Alice <alice@example.org>"));
    CHECK_FALSE(rewrite(" root@laptop.example.org"));
    CHECK_FALSE(rewrite(" \"root@laptop\" <alice@example.net>"));
    CHECK_FALSE(rewrite(" undisclosed: root@laptop;"));
    CHECK_FALSE(rewrite(" \"unbalanced <root@laptop>"));
    // Several authors (RFC 5322 section 3.6.2): only the local one changes.
    CHECK(rewrite(" Alice <alice@example.org>, root") ==
          "Alice <alice@example.org>, me@example.org");
}

TEST_CASE("the filter rewrites the From field of the header section only at any split",
          "[from_rewriter]")
{
    const std::string message = "Received: by laptop\r\n\tid 1\r\n"
                                "Subject: cron\r\n"
                                "from:\r\n \"root (laptop)\"\r\n <root@laptop>\r\n"
                                "To: alice@example.org\r\n"
                                "\r\n"
                                "From: root@laptop in the body stays\r\n"
                                "body\r\n";
    const std::string expected = "Received: by laptop\r\n\tid 1\r\n"
                                 "Subject: cron\r\n"
                                 "From: \"root (laptop)\" <me@example.org>\r\n"
                                 "To: alice@example.org\r\n"
                                 "\r\n"
                                 "From: root@laptop in the body stays\r\n"
                                 "body\r\n";
    for (std::size_t split = 0; split <= message.size(); ++split) {
        INFO("split " << split);
        CHECK(filter_whole(message, split) == expected);
    }
}

TEST_CASE("a message without a local From passes byte for byte", "[from_rewriter]")
{
    const std::string message =
        "From: Alice <alice@example.org>\r\nSubject: x\r\n\r\nFrom: root\r\n";
    for (std::size_t split = 0; split <= message.size(); split += 3)
        CHECK(filter_whole(message, split) == message);
    const std::string no_end = "Subject: x\r\nFrom: Alice <alice@example.org>";
    CHECK(filter_whole(no_end, 4) == no_end);
    CHECK(filter_whole("From: root", 4) == "From: me@example.org\r\n");
}

TEST_CASE("memory stays bounded by one field on an endless header line", "[from_rewriter]")
{
    from_rewriter f("me@example.org", is_local);
    const std::string head = "From: root\r\nX-Long: ";
    std::string out;
    f.put(head, out);
    std::size_t fed = head.size();
    const std::string chunk(4096, 'x');
    const std::size_t growth = std::string_view("me@example.org").size() - 4; // root -> me@...
    for (int i = 0; i < 64; ++i) { // 256 KiB of one header line
        f.put(chunk, out);
        fed += chunk.size();
        CHECK(fed + growth <= out.size() + from_rewriter::max_field + chunk.size());
    }
    f.finish(out);
    CHECK(out.starts_with("From: me@example.org\r\nX-Long: xxx"));
    CHECK(out.size() == fed + growth);
}
