#pragma once
// When to try again after a failure: retry-min doubling up to retry-max, with jitter so that
// machines that failed together do not come back together. Pure: the randomness is injected,
// no clock is read.
#include <chrono>
#include <cstdint>
#include <functional>

namespace leafmail::watch {

struct retry_policy {
    std::chrono::seconds min{60};   // `retry-min`: the first wait after a failure
    std::chrono::seconds max{3600}; // `retry-max`: the longest wait
};

/// A number in [0, 1): the jitter source. Tests inject a fixed one.
using random_source = std::function<double()>;

/// A random_source seeded from the system (std::random_device).
[[nodiscard]] random_source system_random_source();

/// The wait after the n-th consecutive failure (n >= 1; 0 is taken as 1): min * 2^(n-1),
/// capped at max, then shortened by up to a fifth by jitter (random_unit in [0, 1)). Jitter
/// only ever shortens, so max stays a bound and "back within retry-min" stays true.
[[nodiscard]] std::chrono::milliseconds retry_delay(const retry_policy& policy,
                                                    std::uint32_t failures, double random_unit);

} // namespace leafmail::watch
