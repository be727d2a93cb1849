#include "leafmail/relay/relay_settings.hpp"

#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fstream>

using namespace leafmail;
using namespace leafmail::relay;

namespace {

config relay_config(smtp::client_tls tls)
{
    config c;
    c.hostname = "flush.test";
    c.relay.smarthost = "smarthost.test";
    c.relay.tls = tls;
    return c;
}

} // namespace

TEST_CASE("the configured TLS mode reaches the client session unchanged")
{
    for (const auto tls :
         {smtp::client_tls::none, smtp::client_tls::starttls, smtp::client_tls::implicit}) {
        CHECK(client_options_for(relay_config(tls)).tls == tls);
    }
}

TEST_CASE("the endpoint takes the port from the smarthost or from the TLS mode")
{
    CHECK(endpoint_for(relay_config(smtp::client_tls::starttls), false).port == 587);
    CHECK(endpoint_for(relay_config(smtp::client_tls::implicit), false).port == 465);
    CHECK(endpoint_for(relay_config(smtp::client_tls::none), false).port == 25);
    config c = relay_config(smtp::client_tls::starttls);
    c.relay.smarthost = "[::1]:2525";
    c.relay.connect_timeout = std::chrono::seconds(7);
    const auto endpoint = endpoint_for(c, true);
    CHECK(endpoint.host == "::1");
    CHECK(endpoint.port == 2525);
    CHECK(endpoint.connect_timeout == std::chrono::seconds(7));
    CHECK(endpoint.verbose);
}

TEST_CASE("the client says our name, or helo when set")
{
    config c = relay_config(smtp::client_tls::starttls);
    CHECK(client_options_for(c).helo == "flush.test");
    c.relay.helo = "relay.example";
    CHECK(client_options_for(c).helo == "relay.example");
    CHECK_FALSE(client_options_for(c).auth.has_value());
}

TEST_CASE("settings a flush cannot work with are refused before it starts")
{
    config c = relay_config(smtp::client_tls::none);
    c.relay.smarthost.clear();
    CHECK_THROWS_AS(check_relay_settings(c), config_error);
    c = relay_config(smtp::client_tls::none);
    c.relay.auth_user = "user";
    CHECK_THROWS_AS(check_relay_settings(c), config_error); // RFC 4954 section 4
    c.relay.auth_over_plaintext = true;
    CHECK_NOTHROW(check_relay_settings(c));
    c = relay_config(smtp::client_tls::starttls);
    c.relay.ca_file = "/nonexistent/ca.pem";
    CHECK_THROWS_AS(tls_context_for(c), config_error);
}

TEST_CASE("a missing or empty ca-file is named as such not as an asio.ssl error")
{
    config c = relay_config(smtp::client_tls::starttls);
    c.relay.ca_file = "/nonexistent/ca.pem";
    CHECK_THROWS_WITH(tls_context_for(c),
                      "cannot read ca-file /nonexistent/ca.pem: No such file or directory");
    c.relay.ca_file = "/dev/null";
    CHECK_THROWS_WITH(tls_context_for(c), "cannot read ca-file /dev/null: not a regular file");
    leafmail::test::temp_dir dir;
    const auto empty = dir.path() / "ca.pem";
    std::ofstream(empty) << "not a certificate\n";
    c.relay.ca_file = empty;
    try {
        (void)tls_context_for(c);
        FAIL("no config_error");
    } catch (const config_error& e) {
        const std::string what = e.what();
        CHECK_THAT(what, Catch::StartsWith("ca-file " + empty.string() +
                                           " holds no usable PEM certificate ("));
        CHECK_THAT(what, !Catch::Contains("asio.ssl error"));
    }
}

TEST_CASE("the queue side gets the names and the age limit")
{
    config c = relay_config(smtp::client_tls::starttls);
    c.relay.smarthost = "smarthost.test:2525";
    c.relay.max_queue_age = std::chrono::hours(3);
    const auto o = queue_options_for(c, [] { return std::int64_t{42}; });
    CHECK(o.reporting_host == "flush.test");
    CHECK(o.relay_name == "smarthost.test:2525");
    CHECK(o.remote_host == "smarthost.test");
    CHECK(o.max_queue_age == std::chrono::hours(3));
    CHECK(o.now() == 42);
}
