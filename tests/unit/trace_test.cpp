#include "leafmail/trace.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace leafmail;

TEST_CASE("RFC 5322 dates are in UTC with a numeric zone")
{
    CHECK(rfc5322_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
    CHECK(rfc5322_date(1700000000) == "Tue, 14 Nov 2023 22:13:20 +0000");
    CHECK(rfc5322_date(1795353501) == "Sun, 22 Nov 2026 13:18:21 +0000");
}

TEST_CASE("the Received: header names client, us, id and date, folded with CRLF")
{
    received_fields f;
    f.helo = "client.example";
    f.client_address = "127.0.0.1";
    f.hostname = "relay.example";
    f.protocol = "ESMTP";
    f.queue_id = "00005f4a3b2c1d0e-00001f3a-0001";
    f.recipient = "bob@example.net";
    f.when = 0;
    CHECK(received_header(f) ==
          "Received: from client.example ([127.0.0.1])\r\n"
          "\tby relay.example (leafmail) with ESMTP id 00005f4a3b2c1d0e-00001f3a-0001\r\n"
          "\tfor <bob@example.net>; Thu, 01 Jan 1970 00:00:00 +0000\r\n");
    f.client_address = "::1";
    f.recipient.clear();
    CHECK(received_header(f).find("([IPv6:::1])") != std::string::npos);
    CHECK(received_header(f).find(" for ") == std::string::npos);

    f.client_address = "local";
    CHECK(received_header(f).starts_with(
        "Received: from client.example (local)\r\n\tby relay.example"));

    received_fields local;
    local.local_user = "alice";
    local.hostname = "box";
    local.protocol = "local";
    local.queue_id = "id";
    CHECK(received_header(local).starts_with(
        "Received: (from alice@localhost)\r\n\tby box (leafmail) with local id id; "));
}

namespace {

// The lines of a header field without their CRLF; every one must end in CRLF.
std::vector<std::string> lines_of(const std::string& field)
{
    std::vector<std::string> lines;
    for (std::size_t start = 0; start < field.size();) {
        const auto end = field.find("\r\n", start);
        REQUIRE(end != std::string::npos);
        lines.push_back(field.substr(start, end - start));
        start = end + 2;
    }
    return lines;
}

void check_is_valid_field(const std::string& field)
{
    INFO(field);
    const auto lines = lines_of(field);
    REQUIRE_FALSE(lines.empty());
    CHECK(lines.front().starts_with("Received: "));
    for (const auto& line : lines) {
        CHECK(line.size() <= 998); // RFC 5322 2.1.1
        CHECK_FALSE(line.empty());
        for (const char c : line) { // 7-bit, no controls but the folding tab
            const auto u = static_cast<unsigned char>(c);
            CHECK(((u >= 0x20 && u < 0x7f) || c == '\t'));
        }
    }
    for (std::size_t i = 1; i < lines.size(); ++i) // continuation lines start with a blank
        CHECK((lines[i].front() == '\t' || lines[i].front() == ' '));
}

received_fields smtp_fields(std::string helo)
{
    received_fields f;
    f.helo = std::move(helo);
    f.client_address = "127.0.0.1";
    f.hostname = "relay.example";
    f.protocol = "ESMTP";
    f.queue_id = "00005f4a3b2c1d0e-00001f3a-0001";
    f.recipient = "bob@example.net";
    return f;
}

} // namespace

TEST_CASE("a HELO name of 995 octets still makes a valid Received field")
{
    const std::string helo(995, 'a');
    const std::string field = received_header(smtp_fields(helo));
    check_is_valid_field(field);
    // Shown cut at the 255 octets a domain may have (RFC 5321 4.5.3.1.2).
    CHECK(field.find(std::string(252, 'a') + "...") != std::string::npos);
    CHECK(field.find(std::string(253, 'a')) == std::string::npos);
}

TEST_CASE("a HELO name of 255 octets is kept whole and folded around")
{
    const std::string helo = std::string(251, 'h') + ".net";
    const std::string field = received_header(smtp_fields(helo));
    check_is_valid_field(field);
    CHECK(field.starts_with("Received: from " + helo + "\r\n\t([127.0.0.1])\r\n\tby "));
}

TEST_CASE("8-bit and control octets in a HELO name are shown escaped")
{
    const std::string field = received_header(smtp_fields("m\xc3\xbcller\x1b[2J.example"));
    check_is_valid_field(field);
    CHECK(field.starts_with("Received: from m\\xc3\\xbcller\\x1b[2J.example ([127.0.0.1])"));
}

TEST_CASE("a long recipient folds the date onto its own line")
{
    received_fields f = smtp_fields("client.example");
    f.recipient = std::string(240, 'r') + "@example.net";
    const std::string field = received_header(f);
    check_is_valid_field(field);
    CHECK(field.find("\tfor <" + f.recipient + ">;\r\n\tThu, 01 Jan 1970") != std::string::npos);
    f.recipient = std::string(980, 'r') + "@example.net"; // longer than a path may be: no "for"
    check_is_valid_field(received_header(f));
    CHECK(received_header(f).find(" for ") == std::string::npos);
    CHECK(received_header(f).find("0001;") != std::string::npos);
}
