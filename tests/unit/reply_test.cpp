#include "leafmail/smtp/replies.hpp"
#include "leafmail/smtp/reply.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

using leafmail::smtp::reply;
namespace replies = leafmail::smtp::replies;

TEST_CASE("a one-line reply carries code, enhanced code and text", "[smtp][reply]")
{
    const reply r{250, "2.1.0", {"Sender OK"}};
    CHECK(r.to_wire() == "250 2.1.0 Sender OK\r\n");
    CHECK(r.to_string() == "250 2.1.0 Sender OK");
}

TEST_CASE("a multi-line reply repeats the enhanced code on every line", "[smtp][reply]")
{
    const reply r{214, "2.0.0", {"first", "second", "last"}};
    CHECK(r.to_wire() == "214-2.0.0 first\r\n214-2.0.0 second\r\n214 2.0.0 last\r\n");
    CHECK(r.to_string() == "214 2.0.0 first second last");
}

TEST_CASE("a reply without enhanced code has none on the wire", "[smtp][reply]")
{
    CHECK(reply{220, "", {"mx.example ESMTP"}}.to_wire() == "220 mx.example ESMTP\r\n");
    CHECK(reply{250, "", {"mx.example", "PIPELINING"}}.to_wire() ==
          "250-mx.example\r\n250 PIPELINING\r\n");
}

TEST_CASE("a reply without text is still a well-formed line", "[smtp][reply]")
{
    CHECK(reply{250, "", {}}.to_wire() == "250\r\n");
    CHECK(reply{250, "2.0.0", {}}.to_wire() == "250 2.0.0\r\n");
    CHECK(reply{250, "", {""}}.to_wire() == "250\r\n");
}

TEST_CASE("line breaks inside a text cannot forge reply lines", "[smtp][reply]")
{
    using namespace std::string_literals;
    const reply r{250, "2.0.0", {"OK queued as x\r\n250 2.0.0 forged\n\r\0"s}};
    CHECK(r.to_wire() == "250 2.0.0 OK queued as x  250 2.0.0 forged   \r\n"s);
    CHECK(r.to_string().find('\n') == std::string::npos);
}

TEST_CASE("reply classification follows the first digit", "[smtp][reply]")
{
    CHECK(reply{250, "2.0.0", {"x"}}.is_positive());
    CHECK(reply{354, "", {"x"}}.is_intermediate());
    CHECK(reply{451, "4.3.0", {"x"}}.is_transient_failure());
    CHECK(reply{554, "5.7.1", {"x"}}.is_permanent_failure());
    CHECK_FALSE(reply{451, "4.3.0", {"x"}}.is_permanent_failure());
    CHECK(reply{250, "2.0.0", {"x"}} == reply{250, "2.0.0", {"x"}});
    CHECK_FALSE(reply{250, "2.0.0", {"x"}} == reply{250, "2.0.0", {"y"}});
}

TEST_CASE("every reply factory has its code and enhanced code", "[smtp][reply][replies]")
{
    const std::vector<std::pair<reply, std::pair<int, std::string>>> table{
        {replies::greeting("mx"), {220, ""}},
        {replies::helo("mx"), {250, ""}},
        {replies::ehlo("mx", 1000), {250, ""}},
        {replies::closing("mx"), {221, "2.0.0"}},
        {replies::service_shutting_down("mx"), {421, "4.3.2"}},
        {replies::timeout("mx"), {421, "4.4.2"}},
        {replies::too_many_connections("mx"), {421, "4.7.0"}},
        {replies::too_many_errors("mx"), {421, "4.7.0"}},
        {replies::access_denied(), {554, "5.7.1"}},
        {replies::ok(), {250, "2.0.0"}},
        {replies::sender_ok(), {250, "2.1.0"}},
        {replies::recipient_ok(), {250, "2.1.5"}},
        {replies::start_mail_input(), {354, ""}},
        {replies::queued("id"), {250, "2.0.0"}},
        {replies::help(), {214, "2.0.0"}},
        {replies::cannot_verify(), {252, "2.5.0"}},
        {replies::unrecognized_command(), {500, "5.5.1"}},
        {replies::line_too_long(), {500, "5.5.2"}},
        {replies::bad_line_ending(), {500, "5.5.2"}},
        {replies::nul_in_command(), {500, "5.5.2"}},
        {replies::not_implemented(), {502, "5.5.1"}},
        {replies::helo_syntax(), {501, "5.5.2"}},
        {replies::mail_syntax(), {501, "5.5.2"}},
        {replies::rcpt_syntax(), {501, "5.5.2"}},
        {replies::vrfy_syntax(), {501, "5.5.2"}},
        {replies::no_parameters_allowed(), {501, "5.5.4"}},
        {replies::invalid_parameter(), {501, "5.5.4"}},
        {replies::bad_sender_address(), {501, "5.1.7"}},
        {replies::bad_recipient_address(), {501, "5.1.3"}},
        {replies::unsupported_parameter_value(), {504, "5.5.4"}},
        {replies::unknown_parameter(), {555, "5.5.4"}},
        {replies::need_helo(), {503, "5.5.1"}},
        {replies::need_mail(), {503, "5.5.1"}},
        {replies::need_rcpt(), {503, "5.5.1"}},
        {replies::nested_mail(), {503, "5.5.1"}},
        {replies::too_many_recipients(), {452, "4.5.3"}},
        {replies::message_too_big(), {552, "5.3.4"}},
        {replies::content_has_nul(), {554, "5.6.0"}},
        {replies::content_line_too_long(), {554, "5.6.0"}},
        {replies::local_error(), {451, "4.3.0"}},
        {replies::insufficient_storage(), {452, "4.3.1"}},
    };
    for (const auto& [r, expected] : table) {
        INFO(r.to_string());
        CHECK(r.code == expected.first);
        CHECK(r.enhanced == expected.second);
        REQUIRE_FALSE(r.lines.empty());
        for (const auto& line : r.lines) {
            CHECK_FALSE(line.empty());
            // RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with code and CRLF.
            CHECK(line.size() + 4 + r.enhanced.size() + 1 + 2 <= 512);
        }
    }
}

TEST_CASE("greeting, closing and queued name what they are about", "[smtp][reply][replies]")
{
    CHECK(replies::greeting("mx.example").lines.front().rfind("mx.example", 0) == 0);
    CHECK(replies::closing("mx.example").to_string().find("mx.example") != std::string::npos);
    CHECK(replies::queued("Q123ABC").to_string().find("Q123ABC") != std::string::npos);
}

TEST_CASE("the EHLO reply advertises exactly our extensions", "[smtp][reply][replies]")
{
    const reply r = replies::ehlo("mx.example", 12345);
    REQUIRE(r.lines.size() == 6);
    CHECK(r.lines[0] == "mx.example");
    CHECK(std::vector<std::string>(r.lines.begin() + 1, r.lines.end()) ==
          std::vector<std::string>{"SIZE 12345", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES",
                                   "HELP"});
}
