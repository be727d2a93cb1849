#include "leafmail/smtp/reply.hpp"

#include <cassert>
#include <string_view>

namespace leafmail::smtp {
namespace {

// A text may carry a configured hostname or a queue id; a CR or LF in it would let that
// value forge extra reply lines, so every reply leaves through this one choke point.
void append_text(std::string& out, std::string_view text)
{
    for (const char c : text)
        out.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
}

void append_line(std::string& out, int code, char separator, std::string_view enhanced,
                 std::string_view text)
{
    out += std::to_string(code);
    if (separator == '-' || !enhanced.empty() || !text.empty())
        out.push_back(separator);
    if (!enhanced.empty()) {
        append_text(out, enhanced);
        if (!text.empty())
            out.push_back(' ');
    }
    append_text(out, text);
    out += "\r\n";
}

} // namespace

std::string reply::to_wire() const
{
    assert(code >= 100 && code <= 599);
    std::string out;
    if (lines.empty()) {
        append_line(out, code, ' ', enhanced, "");
        return out;
    }
    for (std::size_t i = 0; i < lines.size(); ++i)
        append_line(out, code, i + 1 < lines.size() ? '-' : ' ', enhanced, lines[i]);
    return out;
}

std::string reply::to_string() const
{
    std::string out = std::to_string(code);
    if (!enhanced.empty()) {
        out.push_back(' ');
        append_text(out, enhanced);
    }
    for (const auto& line : lines) {
        out.push_back(' ');
        append_text(out, line);
    }
    return out;
}

} // namespace leafmail::smtp
