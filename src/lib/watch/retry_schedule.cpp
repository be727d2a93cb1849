#include "leafmail/watch/retry_schedule.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <random>

namespace leafmail::watch {

random_source system_random_source()
{
    struct state {
        std::mutex mutex;
        std::mt19937_64 engine{std::random_device{}()};
        std::uniform_real_distribution<double> unit{0.0, 1.0};
    };
    auto s = std::make_shared<state>();
    return [s] {
        std::lock_guard lock(s->mutex);
        return s->unit(s->engine);
    };
}

std::chrono::milliseconds retry_delay(const retry_policy& policy, std::uint32_t failures,
                                      double random_unit)
{
    using std::chrono::milliseconds;
    const milliseconds min = std::max(milliseconds(policy.min), milliseconds(1));
    const milliseconds max = std::max(milliseconds(policy.max), min);
    // Doubling stops at max; counting the shifts keeps 2^n from overflowing for any n.
    milliseconds delay = min;
    for (std::uint32_t n = 1; n < failures && delay < max; ++n)
        delay = std::min(delay * 2, max);
    delay = std::min(delay, max);
    const double unit = std::clamp(random_unit, 0.0, 1.0);
    const auto cut = static_cast<milliseconds::rep>(static_cast<double>(delay.count()) * unit / 5);
    return delay - milliseconds(cut);
}

} // namespace leafmail::watch
