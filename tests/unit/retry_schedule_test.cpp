#include "leafmail/watch/retry_schedule.hpp"

#include <catch2/catch.hpp>

using namespace leafmail::watch;
using namespace std::chrono_literals;

TEST_CASE("the retry delay doubles from retry-min and stops at retry-max")
{
    const retry_policy defaults; // 1m .. 1h
    CHECK(retry_delay(defaults, 1, 0.0) == 60s);
    CHECK(retry_delay(defaults, 2, 0.0) == 120s);
    CHECK(retry_delay(defaults, 3, 0.0) == 240s);
    CHECK(retry_delay(defaults, 6, 0.0) == 1920s);
    CHECK(retry_delay(defaults, 7, 0.0) == 3600s);
    CHECK(retry_delay(defaults, 100, 0.0) == 3600s);
    CHECK(retry_delay(defaults, UINT32_MAX, 0.0) == 3600s);
    CHECK(retry_delay(defaults, 0, 0.0) == 60s); // no failure yet is read as the first
}

TEST_CASE("jitter only shortens the delay and by at most a fifth")
{
    const retry_policy policy{10s, 80s};
    CHECK(retry_delay(policy, 1, 0.5) == 9s);
    CHECK(retry_delay(policy, 1, 0.999999) > 8s);
    CHECK(retry_delay(policy, 1, 0.999999) <= 10s);
    CHECK(retry_delay(policy, 4, 0.5) == 72s);
    // Out-of-range randomness is clamped, never a negative or longer wait.
    CHECK(retry_delay(policy, 1, -3.0) == 10s);
    CHECK(retry_delay(policy, 1, 7.0) == 8s);
}

TEST_CASE("a retry-max below retry-min is raised to it")
{
    CHECK(retry_delay(retry_policy{30s, 5s}, 4, 0.0) == 30s);
}

TEST_CASE("the system random source stays within zero and one")
{
    auto random = system_random_source();
    for (int i = 0; i < 1000; ++i) {
        const double u = random();
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
    }
}
