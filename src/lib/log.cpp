#include "leafmail/log.hpp"

#include "leafmail/text.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <syslog.h>

namespace leafmail::log {

namespace {
std::atomic<destination> where{destination::stderr_stream};
std::atomic<bool> verbose{false};
std::string ident = "leafmail"; // openlog keeps the pointer: it must outlive the program
std::mutex stderr_mutex;

int syslog_priority(level severity)
{
    switch (severity) {
    case level::error:
        return LOG_ERR;
    case level::warning:
        return LOG_WARNING;
    case level::info:
        return LOG_INFO;
    case level::debug:
        return LOG_DEBUG;
    }
    return LOG_INFO;
}

bool needs_quoting(std::string_view value)
{
    if (value.empty())
        return true;
    for (unsigned char c : value)
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 127)
            return true;
    return false;
}
} // namespace

void open(std::string_view program, destination to)
{
    ident = std::string(program);
    where = to;
    if (to == destination::syslog)
        ::openlog(ident.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
}

std::optional<destination> destination_named(std::string_view name)
{
    if (name == "syslog")
        return destination::syslog;
    if (name == "stderr")
        return destination::stderr_stream;
    return std::nullopt;
}

void set_verbose(bool on)
{
    verbose = on;
}

void write(level severity, std::string_view line)
{
    if (severity == level::debug && !verbose)
        return;
    if (where == destination::syslog) {
        ::syslog(syslog_priority(severity), "%.*s", static_cast<int>(line.size()), line.data());
        return;
    }
    std::lock_guard lock(stderr_mutex);
    std::fprintf(stderr, "%s: %.*s\n", ident.c_str(), static_cast<int>(line.size()), line.data());
    std::fflush(stderr);
}

std::string fields(std::initializer_list<std::pair<std::string_view, std::string_view>> kv)
{
    std::string out;
    for (const auto& [key, value] : kv) {
        if (!out.empty())
            out += ' ';
        out.append(key).append("=");
        if (!needs_quoting(value)) {
            out.append(value);
            continue;
        }
        // Controls (C0, DEL, C1, bidirectional) as \xNN, '\' doubled (text.hpp); then '"'.
        out += '"';
        for (const char c : text::escape_controls(value)) {
            if (c == '"')
                out += '\\';
            out += c;
        }
        out += '"';
    }
    return out;
}

} // namespace leafmail::log
