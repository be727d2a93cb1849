#include "leafmail/spool/queue_id.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <unistd.h>

namespace leafmail::spool {

namespace {
constexpr std::size_t time_digits = 16, pid_digits = 8, seq_digits = 4;
constexpr std::size_t id_length = time_digits + 1 + pid_digits + 1 + seq_digits;

bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
} // namespace

std::string make_queue_id(std::uint64_t micros, std::uint32_t pid, std::uint16_t seq)
{
    char text[id_length + 1];
    std::snprintf(text, sizeof text, "%016llx-%08x-%04x", static_cast<unsigned long long>(micros),
                  static_cast<unsigned>(pid), static_cast<unsigned>(seq));
    return std::string(text, id_length);
}

std::string make_queue_id()
{
    // Time orders the ids; pid separates processes; the counter separates ids made by one
    // process within one microsecond. Creation with O_EXCL catches anything left over.
    static std::atomic<std::uint16_t> counter{0};
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
    return make_queue_id(static_cast<std::uint64_t>(micros), static_cast<std::uint32_t>(::getpid()),
                         counter.fetch_add(1, std::memory_order_relaxed));
}

bool is_valid_queue_id(std::string_view id)
{
    if (id.size() != id_length)
        return false;
    for (std::size_t i = 0; i < id.size(); ++i) {
        const bool is_separator = i == time_digits || i == time_digits + 1 + pid_digits;
        if (is_separator ? id[i] != '-' : !is_lower_hex(id[i]))
            return false;
    }
    return true;
}

std::int64_t queue_id_time(std::string_view id)
{
    if (!is_valid_queue_id(id))
        return 0;
    std::uint64_t micros = 0;
    for (char c : id.substr(0, time_digits))
        micros = micros << 4 | static_cast<unsigned>(c <= '9' ? c - '0' : c - 'a' + 10);
    return static_cast<std::int64_t>(micros / 1000000);
}

} // namespace leafmail::spool
