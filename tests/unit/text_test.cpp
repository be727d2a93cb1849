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

TEST_CASE("plain text is shown as it is")
{
    CHECK(is_plain_text("550 5.1.1 <bob@example.net>: Recipient address rejected"));
    CHECK(escape_controls("bob@example.net") == "bob@example.net");
    CHECK(escape_controls("") == "");
}

TEST_CASE("terminal escape sequences and C0 controls are shown escaped")
{
    // OSC 0 (window title), CSI 2J (clear screen), BEL, CR, LF, DEL.
    CHECK(escape_controls("\x1b]0;owned\x07") == "\\x1b]0;owned\\x07");
    CHECK(escape_controls("a\x1b[2Jb") == "a\\x1b[2Jb");
    CHECK(escape_controls("x\r\ny\x7f") == "x\\x0d\\x0ay\\x7f");
    CHECK(escape_controls(std::string("nul\0here", 8)) == "nul\\x00here");
    // The escape character itself is escaped, so "\x1b" typed by a peer stays distinguishable.
    CHECK(escape_controls("C:\\x1b") == "C:\\\\x1b");
}

TEST_CASE("C1 controls raw or in UTF-8 and bidirectional overrides are shown escaped")
{
    CHECK(escape_controls("\x9b"
                          "2J") == "\\x9b2J"); // a raw 8-bit CSI
    CHECK(escape_controls("\xc2\x9b"
                          "2J") == "\\xc2\\x9b2J");     // U+009B CSI
    CHECK(escape_controls("\xc2\x85") == "\\xc2\\x85"); // U+0085 NEL
    CHECK(escape_controls("abc\xe2\x80\xae"
                          "txt.exe") == "abc\\xe2\\x80\\xaetxt.exe"); // U+202E RLO
    CHECK(escape_controls("\xe2\x80\xa8") == "\\xe2\\x80\\xa8");      // U+2028
    CHECK(escape_controls("\xff\xfe") == "\\xff\\xfe");               // not UTF-8
    CHECK(escape_controls("\xc0\xaf") == "\\xc0\\xaf");               // overlong '/'
    CHECK(escape_controls("\xed\xa0\x80") == "\\xed\\xa0\\x80");      // a surrogate
    CHECK(escape_controls("\xe2\x82") == "\\xe2\\x82");               // cut short
}

TEST_CASE("printable UTF-8 is kept unless 7-bit output is asked for")
{
    CHECK(escape_controls("Gr\xc3\xbc\xc3\x9f"
                          "e \xe2\x82\xac \xf0\x9f\x93\xa7") == "Gr\xc3\xbc\xc3\x9f"
                                                                "e \xe2\x82\xac \xf0\x9f\x93\xa7");
    CHECK(escape_controls("Gr\xc3\xbc\xc3\x9f"
                          "e",
                          false) == "Gr\\xc3\\xbc\\xc3\\x9fe");
}
