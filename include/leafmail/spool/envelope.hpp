#pragma once
// The frozen object: everything relaying needs to know about one spooled message except its
// content. Serialized with Boost.Serialization (text archive, see spool-format/README.md).
// Fields are only ever appended behind a class-version check; never reorder or remove one.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::spool {

enum class recipient_state : std::int32_t { pending = 0, delivered = 1, failed = 2 };

[[nodiscard]] std::string_view to_string(recipient_state state);

struct recipient {
    std::string address; // without angle brackets
    recipient_state state = recipient_state::pending;
    std::uint32_t attempts = 0;       // relay attempts (spool-format/README.md says which count)
    std::int64_t last_attempt_at = 0; // Unix seconds, 0 = never tried
    std::string last_reply;           // smarthost's last reply, one line
    // Recipient class version 2 (envelope format 3):
    std::string original_address; // as the client gave it, when an alias replaced it; else ""
    std::int32_t unconfirmed = 0; // 1: the last attempt got no reply to the final dot, so the
                                  // message may already have been delivered (still pending)

    friend bool operator==(const recipient&, const recipient&) = default;
};

struct envelope {
    std::string id;             // queue id, also the entry's file name
    std::int64_t queued_at = 0; // Unix seconds (UTC) when the entry was committed
    std::string origin;         // "smtp" (leafmaild) or "sendmail" (leafmail-sendmail)
    std::string client_address; // peer address for smtp; "uid=N" for sendmail
    std::string helo_name;      // client's HELO/EHLO argument; empty for sendmail
    std::string reverse_path;   // without angle brackets; empty is the null path <>
    std::vector<recipient> recipients;
    std::uint64_t content_size = 0; // octets of content, our Received: header included
    std::int32_t body_8bit = 0;     // 1 when the content holds octets above 127
    std::int32_t is_bounce = 0;     // 1 for a delivery status notification we generated
    // Version 2:
    std::int64_t next_attempt_at = 0; // Unix seconds of the next scheduled attempt; 0 = now
    std::int64_t delay_notice_at = 0; // Unix seconds the "delayed" notice went; 0 = never

    [[nodiscard]] bool has_pending() const;
    [[nodiscard]] std::size_t count(recipient_state state) const;
    friend bool operator==(const envelope&, const envelope&) = default;
};

/// Newest format this build writes and the newest it can read: the envelope's class version.
inline constexpr unsigned envelope_format_version = 3;
/// The recipient's class version within that format (spool-format/README.md, "Versions").
inline constexpr unsigned recipient_format_version = 2;

/// The longest smarthost reply recorded for one recipient. RFC 5321 section 4.5.3.1.5 allows
/// 512 octets per reply line; a longer reply is cut to this size (cut_reply), which bounds
/// the size of every state the relay can record, so the room for it can be reserved before
/// the content goes out (spool::reserve_state).
inline constexpr std::size_t max_recorded_reply = 1024;
/// reply, or its first max_recorded_reply octets ending in "..." when it is longer.
[[nodiscard]] std::string cut_reply(std::string_view reply);
/// Octets of the largest archive that recording outcomes for env's pending recipients can
/// make: each one failed, with a reply of max_recorded_reply octets and every counter and
/// time at its widest. Recipients no longer pending never change again.
[[nodiscard]] std::size_t largest_state_size(const envelope& env);

/// Freeze to / thaw from the archive text. thaw() throws spool::corrupt_entry on anything
/// it cannot read, including a version newer than envelope_format_version.
[[nodiscard]] std::string freeze(const envelope& env);
[[nodiscard]] envelope thaw(std::string_view archive);

} // namespace leafmail::spool
