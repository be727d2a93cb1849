#pragma once
// rewrite-from: a route's streaming filter that gives a local From: header (root, root@laptop,
// the address leafmail-sendmail made from a login) the route's rewrite-sender address, keeping
// the display name, because providers refuse or rewrite mail whose From: is not the account.
// Pure: bytes in, bytes out; it holds one line, or one From: field, never the message. Only
// the message's own header section is looked at; other From: fields are left alone.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace leafmail::relay {

/// The From: field value `value` (RFC 5322 section 3.6.2 mailbox-list, unfolded or folded)
/// with each mailbox whose address `is_local` says is local replaced by `address`, the
/// display name kept (an old-style comment such as `root (Cron Daemon)` becomes the display
/// name). nullopt when no mailbox is local or the value cannot be parsed (left alone).
[[nodiscard]] std::optional<std::string>
rewrite_from_value(std::string_view value, std::string_view address,
                   const std::function<bool(std::string_view)>& is_local);

class from_rewriter {
public:
    // A From: field longer than this passes as it is (RFC 5322 section 2.1.1 wants 998
    // octets per line; a field of many folded lines this long is not a mailer's From:).
    static constexpr std::size_t max_field = 64 * 1024;

    from_rewriter(std::string address, std::function<bool(std::string_view)> is_local);

    /// Filters the next chunk (split anywhere); appends the result to out.
    void put(std::string_view in, std::string& out);
    /// The content ended: flushes what is held.
    void finish(std::string& out);

    [[nodiscard]] bool rewrote() const { return rewrote_; }

private:
    enum class state { line_start, in_field_line, passing_line, body };

    void end_line(std::string& out);
    void flush_field(std::string& out);

    std::string address_;
    std::function<bool(std::string_view)> is_local_;
    state state_ = state::line_start;
    std::string line_;  // the current header line, until its LF or a decision
    std::string field_; // a From: field being collected, its lines with their ends
    bool rewrote_ = false;
};

} // namespace leafmail::relay
