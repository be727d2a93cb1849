#pragma once
// Queue ids: unique across concurrent processes, sortable by arrival time as plain strings,
// safe as file names. Every id that comes from outside is validated before it becomes a path.
#include <cstdint>
#include <string>
#include <string_view>

namespace leafmail::spool {

/// "<16 hex: microseconds since the epoch>-<8 hex: pid>-<4 hex: per-process counter>".
[[nodiscard]] std::string make_queue_id();
[[nodiscard]] std::string make_queue_id(std::uint64_t micros, std::uint32_t pid, std::uint16_t seq);

/// True only for strings make_queue_id() could have produced (so never "..", "/", "").
[[nodiscard]] bool is_valid_queue_id(std::string_view id);

/// Unix seconds at which the id was made; 0 for a string that is not a valid id.
[[nodiscard]] std::int64_t queue_id_time(std::string_view id);

} // namespace leafmail::spool
