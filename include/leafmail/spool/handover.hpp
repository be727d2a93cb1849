#pragma once
// The handover: how leafmail-sendmail gives a small new entry to the running leafmaild, whose
// journal makes it durable with one shared, data-only fdatasync instead of the two metadata
// commits of a new file (issue 15). A Unix socket in the spool's root, reachable only by the
// spool's owner and group (the root is 2770), one entry per connection. Any failure (no
// daemon, a refusal, a timeout) leaves the injector to commit the entry itself, the one-file
// way. Format: spool-format/README.md, "The handover".
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace leafmail::spool::handover {

/// The socket's name in the spool's root.
inline constexpr std::string_view socket_name = "handover";
inline constexpr std::string_view request_magic = "LMHAND1";
/// A request line is at most this long, its '\n' included.
inline constexpr std::size_t max_request_line = 64;
/// What the receiver answers once the fdatasync covering the entry has returned; the same
/// words as its SMTP reply, so one test shim checks the order of both.
inline constexpr std::string_view accepted_prefix = "250 2.0.0 OK queued as ";

/// "LMHAND1 <id> <size>\n"; the entry's octets follow.
[[nodiscard]] std::string encode_request(std::string_view id, std::size_t size);
struct request {
    std::string id;
    std::size_t size = 0;
};
/// The request in `line` (without its '\n'), or nullopt when it is not one. The id is only
/// checked to be a queue id by the spool's commit.
[[nodiscard]] std::optional<request> parse_request(std::string_view line);
[[nodiscard]] std::string encode_accepted(std::string_view id);
/// "451 4.3.0 <why>\n", the reason made printable and cut to one short line.
[[nodiscard]] std::string encode_refused(std::string_view why);

/// The injector's side: connects to `socket_path`, checks that the process listening runs as
/// `receiver_uid` (the spool's owner), sends the entry and waits at most `timeout` for the
/// answer. True only when the receiver answered that this entry is durable in queue/.
[[nodiscard]] bool send_entry(const std::string& socket_path, unsigned receiver_uid,
                              std::string_view id, std::string_view entry,
                              std::chrono::milliseconds timeout);

/// The receiver's side: a listening Unix socket at `path` (a stale socket there is replaced;
/// anything else is refused), mode 0660. Returns its descriptor. Throws std::system_error.
[[nodiscard]] int listen_at(const std::string& path);

} // namespace leafmail::spool::handover
