#include "leafmail/smtp/dot_stuffer.hpp"

namespace leafmail::smtp {

void dot_stuffer::stuff(std::string_view chunk, std::string& out)
{
    if (chunk.empty())
        return;
    out.reserve(out.size() + chunk.size() + 8);
    std::size_t copied = 0; // chunk[copied..i) is pending a bulk append
    for (std::size_t i = 0; i < chunk.size(); ++i) {
        char c = chunk[i];
        if (at_line_start_ && c == '.') {
            // RFC 5321 section 4.5.2: a line that starts with "." gets one more.
            out.append(chunk.data() + copied, i - copied);
            out.push_back('.');
            copied = i;
        }
        // A bare CR starts a line too, as a bare LF does (see the header): a receiver that
        // takes either for a line end must never see "<CR>.<CR>" from us as the end of data.
        // Content from leafmaild never holds one (it stores CRLF); other injectors may.
        at_line_start_ = c == '\n' || c == '\r';
        ends_with_crlf_ = c == '\n' && last_was_cr_;
        last_was_cr_ = c == '\r';
    }
    out.append(chunk.data() + copied, chunk.size() - copied);
    size_ += chunk.size();
}

void dot_stuffer::finish(std::string& out)
{
    // Empty content ends with the bare ".\r\n"; any other content must end in CRLF before it.
    if (size_ > 0 && !ends_with_crlf_)
        out.append("\r\n");
    out.append(".\r\n");
    reset();
}

} // namespace leafmail::smtp
