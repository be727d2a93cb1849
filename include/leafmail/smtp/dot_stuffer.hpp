#pragma once
// Client-side DATA transparency (RFC 5321 section 4.5.2), streaming: content goes in chunk by
// chunk, split anywhere, and comes out with every line-initial "." doubled and the
// end-of-data marker appended once. Pure: no I/O; otherwise byte for byte.
#include <cstdint>
#include <string>
#include <string_view>

namespace leafmail::smtp {

class dot_stuffer {
public:
    /// Appends the stuffed form of chunk to out.
    void stuff(std::string_view chunk, std::string& out);
    /// Appends the end of data: a CRLF first when the content did not end with one
    /// (RFC 5321 section 4.1.1.4), then ".\r\n". Resets for the next message.
    void finish(std::string& out);
    void reset() { *this = dot_stuffer{}; }

    /// Content octets seen so far (before stuffing).
    [[nodiscard]] std::uint64_t content_size() const { return size_; }

private:
    // A line starts after any LF, a bare one included: a server that takes a bare LF as a
    // line end (the "SMTP smuggling" family) must never see "\n.\r\n" from us as the end.
    bool at_line_start_ = true;
    bool last_was_cr_ = false;
    bool ends_with_crlf_ = false;
    std::uint64_t size_ = 0;
};

} // namespace leafmail::smtp
