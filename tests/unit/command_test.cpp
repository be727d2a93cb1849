#include "leafmail/smtp/command.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace leafmail::smtp;

namespace {

mail_argument mail_ok(std::string_view arg)
{
    auto parsed = parse_mail_argument(arg);
    INFO("MAIL " << std::string{arg});
    REQUIRE(std::holds_alternative<mail_argument>(parsed));
    return std::get<mail_argument>(parsed);
}

argument_error mail_error(std::string_view arg)
{
    auto parsed = parse_mail_argument(arg);
    INFO("MAIL " << std::string{arg});
    REQUIRE(std::holds_alternative<argument_error>(parsed));
    return std::get<argument_error>(parsed);
}

std::string rcpt_ok(std::string_view arg)
{
    auto parsed = parse_rcpt_argument(arg);
    INFO("RCPT " << std::string{arg});
    REQUIRE(std::holds_alternative<rcpt_argument>(parsed));
    return std::get<rcpt_argument>(parsed).forward_path;
}

argument_error rcpt_error(std::string_view arg)
{
    auto parsed = parse_rcpt_argument(arg);
    INFO("RCPT " << std::string{arg});
    REQUIRE(std::holds_alternative<argument_error>(parsed));
    return std::get<argument_error>(parsed);
}

} // namespace

TEST_CASE("verbs are recognised case-insensitively", "[smtp][command]")
{
    CHECK(parse_command("HELO x").what == verb::helo);
    CHECK(parse_command("ehlo x").what == verb::ehlo);
    CHECK(parse_command("MaIl FROM:<>").what == verb::mail);
    CHECK(parse_command("rcpt TO:<a@b>").what == verb::rcpt);
    CHECK(parse_command("DATA").what == verb::data);
    CHECK(parse_command("rset").what == verb::rset);
    CHECK(parse_command("NOOP").what == verb::noop);
    CHECK(parse_command("QUIT").what == verb::quit);
    CHECK(parse_command("VRFY a").what == verb::vrfy);
    CHECK(parse_command("EXPN a").what == verb::expn);
    CHECK(parse_command("HELP").what == verb::help);
    CHECK(parse_command("STARTTLS").what == verb::starttls);
    CHECK(parse_command("AUTH PLAIN").what == verb::auth);
    CHECK(parse_command("BDAT 10 LAST").what == verb::bdat);
    CHECK(parse_command("TURN").what == verb::turn);
    CHECK(parse_command("ETRN x").what == verb::etrn);
}

TEST_CASE("anything else is an unknown verb", "[smtp][command]")
{
    CHECK(parse_command("").what == verb::unknown);
    CHECK(parse_command("HELOX x").what == verb::unknown);
    CHECK(parse_command("HEL").what == verb::unknown);
    CHECK(parse_command(" HELO x").what == verb::unknown);
    CHECK(parse_command("MAIL:FROM:<>").what == verb::unknown);
    CHECK(parse_command("\xc4\xb0"
                        "ELO x")
              .what == verb::unknown); // no locale case folding
}

TEST_CASE("the argument follows the verb and its blanks, trailing blanks removed",
          "[smtp][command]")
{
    CHECK(parse_command("HELO client.example").argument == "client.example");
    CHECK(parse_command("HELO   client.example  \t").argument == "client.example");
    CHECK(parse_command("NOOP a b  c").argument == "a b  c");
    CHECK(parse_command("DATA").argument.empty());
    CHECK(parse_command("DATA   ").argument.empty());
    CHECK(parse_command("QUIT now").argument == "now");
}

TEST_CASE("verb names are canonical", "[smtp][command]")
{
    CHECK(verb_name(verb::mail) == "MAIL");
    CHECK(verb_name(verb::starttls) == "STARTTLS");
    CHECK(verb_name(verb::unknown) == "unknown");
}

TEST_CASE("MAIL FROM accepts ordinary, null and tolerated forms", "[smtp][command][path]")
{
    CHECK(mail_ok("FROM:<alice@example.org>").reverse_path == "alice@example.org");
    CHECK(mail_ok("from:<alice@example.org>").reverse_path == "alice@example.org");
    CHECK(mail_ok("FROM: <alice@example.org>").reverse_path == "alice@example.org");
    CHECK(mail_ok("FROM:<>").reverse_path.empty());
    CHECK(mail_ok("FROM: <>").reverse_path.empty());
    CHECK(mail_ok("FROM:<a.b+c_d-e@sub.example-host.org>").reverse_path ==
          "a.b+c_d-e@sub.example-host.org");
    CHECK(mail_ok("FROM:<user@localhost>").reverse_path == "user@localhost");
    CHECK(mail_ok("FROM:<user@[192.0.2.1]>").reverse_path == "user@[192.0.2.1]");
    CHECK(mail_ok("FROM:<user@[IPv6:2001:db8::1]>").reverse_path == "user@[IPv6:2001:db8::1]");
}

TEST_CASE("quoted local parts may hold what atoms cannot", "[smtp][command][path]")
{
    CHECK(mail_ok(R"(FROM:<"john doe"@example.org>)").reverse_path == R"("john doe"@example.org)");
    CHECK(mail_ok(R"(FROM:<"a>b@c"@example.org>)").reverse_path == R"("a>b@c"@example.org)");
    CHECK(mail_ok(R"(FROM:<"a\"b"@example.org>)").reverse_path == R"("a\"b"@example.org)");
    CHECK(mail_error(R"(FROM:<"">)") == argument_error::bad_address);
    CHECK(mail_error(R"(FROM:<"a"b@example.org>)") == argument_error::bad_address);
    CHECK(rcpt_ok(R"(TO:<"a>b@c"@example.org>)") == R"("a>b@c"@example.org)");
}

TEST_CASE("one mailbox grammar for paths and for leafmail-sendmail", "[smtp][command][path]")
{
    // RFC 5321 4.1.2: qtextSMTP is %d32-33 / %d35-91 / %d93-126, '<' and '>' included.
    CHECK(is_valid_mailbox(R"("a>b@c"@example.org)"));
    CHECK(is_valid_mailbox("user@[192.0.2.1]"));
    CHECK(is_valid_mailbox("a.b+c@sub.example.org"));
    CHECK_FALSE(is_valid_mailbox("a>b@example.org"));
    CHECK_FALSE(is_valid_mailbox("postmaster")); // a path may be <Postmaster>, a mailbox not
    CHECK_FALSE(is_valid_mailbox("a@"));
    CHECK_FALSE(is_valid_mailbox("a@b.org "));
    CHECK_FALSE(is_valid_mailbox("a@b\r\nRCPT TO:<x@y>"));
    CHECK_FALSE(is_valid_mailbox(std::string(65, 'a') + "@example.org"));
    CHECK_FALSE(is_valid_mailbox("a@" + std::string(250, 'b')));
    CHECK(is_valid_local_part(R"("odd user")"));
    CHECK(is_valid_local_part("root"));
    CHECK_FALSE(is_valid_local_part("root@"));
    CHECK_FALSE(is_valid_local_part("a b"));
    // Whatever is a valid mailbox is read back whole as a path.
    for (const std::string address : {R"("a>b@c"@example.org)", "u@[IPv6:2001:db8::1]"}) {
        REQUIRE(is_valid_mailbox(address));
        CHECK(rcpt_ok("TO:<" + address + ">") == address);
    }
}

TEST_CASE("a source route is accepted and dropped", "[smtp][command][path]")
{
    CHECK(mail_ok("FROM:<@relay.example:alice@example.org>").reverse_path == "alice@example.org");
    CHECK(rcpt_ok("TO:<@a.example,@b.example:bob@example.org>") == "bob@example.org");
    CHECK(mail_error("FROM:<@relay.example alice@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<@:alice@example.org>") == argument_error::bad_address);
}

TEST_CASE("malformed paths are bad addresses, missing structure is a syntax error",
          "[smtp][command][path]")
{
    CHECK(mail_error("") == argument_error::syntax);
    CHECK(mail_error("FROM") == argument_error::syntax);
    CHECK(mail_error("TO:<a@b>") == argument_error::syntax);
    CHECK(mail_error("FROM:alice@example.org") == argument_error::syntax);
    CHECK(mail_error("FROM:  <alice@example.org>") == argument_error::syntax); // one space only
    CHECK(mail_error("FROM :<alice@example.org>") == argument_error::syntax);

    CHECK(mail_error("FROM:<alice@example.org") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<postmaster>") == argument_error::bad_address); // only for RCPT
    CHECK(mail_error("FROM:<@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<a lice@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<.alice@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice.@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<al..ice@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@example..org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@example.org.>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@-example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@example-.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@exa_mple.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@[]>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@[1.2.3.4>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<\"unterminated@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<<alice@example.org>>") == argument_error::bad_address);
}

TEST_CASE("addresses never carry control or 8-bit octets", "[smtp][command][path]")
{
    using namespace std::string_literals;
    CHECK(mail_error("FROM:<al\x01ice@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<alice@exa\x7fmple.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<al\0ice@example.org>"s) == argument_error::bad_address);
    CHECK(mail_error("FROM:<al\rice@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<al\nice@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<al\tice@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<\"al\tice\"@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<\"al\\\x01ice\"@example.org>") == argument_error::bad_address);
    // Without SMTPUTF8 (not advertised) an address is ASCII (RFC 5321 4.1.2).
    CHECK(mail_error("FROM:<j\xc3\xbcrgen@example.org>") == argument_error::bad_address);
    CHECK(mail_error("FROM:<juergen@b\xc3\xbc"
                     "cher.example>") == argument_error::bad_address);
}

TEST_CASE("address length limits of RFC 5321 4.5.3.1", "[smtp][command][path]")
{
    const std::string local_64(64, 'a');
    CHECK(mail_ok("FROM:<" + local_64 + "@example.org>").reverse_path.size() == 64 + 12);
    CHECK(mail_error("FROM:<" + local_64 + "a@example.org>") == argument_error::bad_address);

    const std::string label_63(63, 'b');
    CHECK(rcpt_ok("TO:<x@" + label_63 + ".org>").size() == 2 + 63 + 4);
    CHECK(rcpt_error("TO:<x@" + label_63 + "b.org>") == argument_error::bad_address);

    // Domain of 255 octets: 63.63.63.63 = 255.
    const std::string domain_255 = label_63 + "." + label_63 + "." + label_63 + "." + label_63;
    REQUIRE(domain_255.size() == 255);
    // With brackets, "@" and a local part a path always outgrows 256 before its domain
    // reaches 255, so the path limit is the one that refuses here.
    CHECK(rcpt_error("TO:<a@" + domain_255 + ">") == argument_error::bad_address);
    CHECK(rcpt_error("TO:<a@" + domain_255 + ".x>") == argument_error::bad_address);

    // Path of exactly 256 octets with brackets: local 64 + "@" + domain 190 + 2 = 257 -> 189.
    std::string domain_189 = label_63 + "." + label_63 + "." + std::string(61, 'c');
    REQUIRE(domain_189.size() == 189);
    CHECK(rcpt_ok("TO:<" + local_64 + "@" + domain_189 + ">").size() == 254);
    CHECK(rcpt_error("TO:<" + local_64 + "@" + domain_189 + "c>") == argument_error::bad_address);
}

TEST_CASE("SIZE and BODY parameters are parsed", "[smtp][command][parameters]")
{
    const auto plain = mail_ok("FROM:<a@b.example>");
    CHECK_FALSE(plain.size.has_value());
    CHECK(plain.body == body_type::unspecified);

    const auto both = mail_ok("FROM:<a@b.example> SIZE=12345 BODY=8BITMIME");
    CHECK(both.size == std::optional<std::uint64_t>{12345});
    CHECK(both.body == body_type::eight_bit_mime);

    CHECK(mail_ok("FROM:<> body=7bit size=0").body == body_type::seven_bit);
    CHECK(mail_ok("FROM:<>  SIZE=1   BODY=7BIT").size == std::optional<std::uint64_t>{1});
    CHECK(mail_ok("FROM:<> SIZE=99999999999999999999").size ==
          std::optional<std::uint64_t>{UINT64_MAX}); // 20 digits saturate
}

TEST_CASE("parameter errors are told apart", "[smtp][command][parameters]")
{
    CHECK(mail_error("FROM:<a@b.example>SIZE=1") == argument_error::syntax);
    CHECK(mail_error("FROM:<a@b.example> SIZE=") == argument_error::invalid_parameter);
    CHECK(mail_error("FROM:<a@b.example> SIZE") == argument_error::invalid_parameter);
    CHECK(mail_error("FROM:<a@b.example> SIZE=12a") == argument_error::invalid_parameter);
    CHECK(mail_error("FROM:<a@b.example> SIZE=-1") == argument_error::invalid_parameter);
    CHECK(mail_error("FROM:<a@b.example> SIZE=123456789012345678901") ==
          argument_error::invalid_parameter); // 21 digits
    CHECK(mail_error("FROM:<a@b.example> SIZE=1 SIZE=2") == argument_error::invalid_parameter);
    CHECK(mail_error("FROM:<a@b.example> BODY=7BIT BODY=7BIT") ==
          argument_error::invalid_parameter);
    CHECK(mail_error("FROM:<a@b.example> =x") == argument_error::invalid_parameter);
    CHECK(mail_error("FROM:<a@b.example> -X=1") == argument_error::invalid_parameter);
    CHECK(mail_error("FROM:<a@b.example> X=a=b") == argument_error::invalid_parameter);

    CHECK(mail_error("FROM:<a@b.example> BODY=BINARYMIME") == argument_error::unsupported_value);
    CHECK(mail_error("FROM:<a@b.example> BODY=whatever") == argument_error::unsupported_value);

    CHECK(mail_error("FROM:<a@b.example> SMTPUTF8") == argument_error::unknown_parameter);
    CHECK(mail_error("FROM:<a@b.example> RET=HDRS") == argument_error::unknown_parameter);
    CHECK(mail_error("FROM:<a@b.example> AUTH=<>") == argument_error::unknown_parameter);
    CHECK(mail_error("FROM:<a@b.example> SIZE=10 X-FOO") == argument_error::unknown_parameter);
}

TEST_CASE("RCPT TO paths", "[smtp][command][path]")
{
    CHECK(rcpt_ok("TO:<bob@example.org>") == "bob@example.org");
    CHECK(rcpt_ok("to: <bob@example.org>") == "bob@example.org");
    CHECK(rcpt_ok("TO:<postmaster>") == "postmaster");
    CHECK(rcpt_ok("TO:<PostMaster>") == "PostMaster");
    CHECK(rcpt_ok("TO:<postmaster@example.org>") == "postmaster@example.org");
    CHECK(rcpt_error("TO:<>") == argument_error::bad_address); // <> only for MAIL
    CHECK(rcpt_error("TO:<bob>") == argument_error::bad_address);
    CHECK(rcpt_error("TO:bob@example.org") == argument_error::syntax);
    CHECK(rcpt_error("FROM:<bob@example.org>") == argument_error::syntax);
    CHECK(rcpt_error("") == argument_error::syntax);
    CHECK(rcpt_error("TO:<bob@example.org> NOTIFY=NEVER") == argument_error::unknown_parameter);
    CHECK(rcpt_error("TO:<bob@example.org> =") == argument_error::invalid_parameter);
    CHECK(rcpt_error("TO:<bob@example.org>x") == argument_error::syntax);
}
