// auth-password-command / auth-token-command: the real /bin/sh runs each case.
#include "leafmail/relay/secret_command.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace leafmail::relay;
using namespace std::chrono_literals;

TEST_CASE("a secret command's first line of output is the secret")
{
    auto r = run_secret_command("printf 's3cret with spaces\\r\\nsecond line\\n'", 5s,
                                "auth-password-command");
    REQUIRE(r.secret);
    CHECK(*r.secret == "s3cret with spaces");
    CHECK(r.failure.empty());

    auto no_newline = run_secret_command("printf token", 5s, "auth-token-command");
    REQUIRE(no_newline.secret);
    CHECK(*no_newline.secret == "token");
}

TEST_CASE("a secret command that fails gives no secret and says why")
{
    auto failed =
        run_secret_command("echo partial; echo oops >&2; exit 3", 5s, "auth-password-command");
    CHECK_FALSE(failed.secret);
    CHECK_THAT(failed.failure, Catch::Contains("auth-password-command"));
    CHECK_THAT(failed.failure, Catch::Contains("exit status 3"));

    auto missing = run_secret_command("/nonexistent/vault-client", 5s, "auth-password-command");
    CHECK_FALSE(missing.secret);
    CHECK_THAT(missing.failure, Catch::Contains("127"));

    auto silent = run_secret_command("true", 5s, "auth-token-command");
    CHECK_FALSE(silent.secret);
    CHECK_THAT(silent.failure, Catch::Contains("nothing"));

    auto blank = run_secret_command("echo; echo second", 5s, "auth-token-command");
    CHECK_FALSE(blank.secret);

    auto signalled = run_secret_command("kill -9 $$", 5s, "auth-token-command");
    CHECK_FALSE(signalled.secret);
    CHECK_THAT(signalled.failure, Catch::Contains("signal 9"));
}

TEST_CASE("a secret command that hangs is killed at its deadline")
{
    const auto start = std::chrono::steady_clock::now();
    auto slow = run_secret_command("sleep 30", 300ms, "auth-password-command");
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK_FALSE(slow.secret);
    CHECK_THAT(slow.failure, Catch::Contains("timeout"));

    // Printed its line, then closed its output and kept running: still bounded.
    auto lingering =
        run_secret_command("echo pw; exec >&- 2>&-; sleep 30", 300ms, "auth-password-command");
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    CHECK_FALSE(lingering.secret);
    CHECK_THAT(lingering.failure, Catch::Contains("timeout"));
}

TEST_CASE("a background grandchild holding the pipe does not hold up the secret")
{
    const auto start = std::chrono::steady_clock::now();
    auto r = run_secret_command("echo pw; sleep 2 &", 10s, "auth-password-command");
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    REQUIRE(r.secret);
    CHECK(*r.secret == "pw");
}

TEST_CASE("a secret command that floods its output is stopped")
{
    auto r = run_secret_command("yes", 10s, "auth-password-command");
    CHECK_FALSE(r.secret);
    CHECK_THAT(r.failure, Catch::Contains("more than"));
}
