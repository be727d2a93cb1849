#include "leafmail/text.hpp"

#include <catch2/catch.hpp>

using namespace leafmail::text;

TEST_CASE("case-insensitive comparison is ASCII only")
{
    CHECK(iequals("MAIL", "mail"));
    CHECK(iequals("8BitMime", "8BITMIME"));
    CHECK_FALSE(iequals("MAIL", "MAILX"));
    CHECK_FALSE(iequals("\xc3\xa9", "\xc3\x89")); // no locale folds octets above 127
    CHECK(iequals("", ""));
}

TEST_CASE("base64 matches the RFC 4648 test vectors")
{
    CHECK(base64_encode("") == "");
    CHECK(base64_encode("f") == "Zg==");
    CHECK(base64_encode("fo") == "Zm8=");
    CHECK(base64_encode("foo") == "Zm9v");
    CHECK(base64_encode("foob") == "Zm9vYg==");
    CHECK(base64_encode("fooba") == "Zm9vYmE=");
    CHECK(base64_encode("foobar") == "Zm9vYmFy");
    CHECK(base64_encode(std::string("\0user\0secret", 12)) == "AHVzZXIAc2VjcmV0"); // RFC 4616
    CHECK(base64_encode("\xff\xfe") == "//4=");
}

TEST_CASE("host and port are split as the configuration writes them")
{
    auto split = [](std::string_view text) { return split_host_port(text); };
    CHECK(split("smtp.example")->host == "smtp.example");
    CHECK_FALSE(split("smtp.example")->port.has_value());
    CHECK(split("smtp.example:587")->host == "smtp.example");
    CHECK(split("smtp.example:587")->port == "587");
    CHECK(split("[::1]:2525")->host == "::1");
    CHECK(split("[::1]:2525")->port == "2525");
    CHECK(split("[::1]")->host == "::1");
    CHECK_FALSE(split("[::1]")->port.has_value());
    CHECK(split("127.0.0.1:0")->port == "0");
    CHECK(split("host:")->port == "");
    CHECK_FALSE(split("").has_value());
    CHECK_FALSE(split(":25").has_value());
    CHECK_FALSE(split("[::1").has_value());
    CHECK_FALSE(split("[::1]25").has_value());
    CHECK_FALSE(split("[]:25").has_value());
}

TEST_CASE("ports are whole numbers up to 65535")
{
    CHECK(parse_port("25") == 25u);
    CHECK(parse_port("65535") == 65535u);
    CHECK_FALSE(parse_port("65536").has_value());
    CHECK_FALSE(parse_port("0").has_value());
    CHECK(parse_port("0", true) == 0u);
    CHECK_FALSE(parse_port("").has_value());
    CHECK_FALSE(parse_port("25x").has_value());
    CHECK_FALSE(parse_port("-1").has_value());
}
