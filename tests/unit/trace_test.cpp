#include "leafmail/trace.hpp"

#include <catch2/catch.hpp>

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
