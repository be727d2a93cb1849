#pragma once
// One line per event, "key=value" words, to syslog (facility mail) or stderr. The only place
// that knows where log lines go; callers build the line with fields().
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace leafmail::log {

enum class destination { syslog, stderr_stream };
enum class level { error, warning, info, debug };

/// Chooses where lines go; program names the syslog ident and the stderr prefix.
void open(std::string_view program, destination where);
void set_verbose(bool on); // debug lines are dropped unless verbose
/// The value of a --log flag: "syslog" or "stderr"; nullopt for anything else.
[[nodiscard]] std::optional<destination> destination_named(std::string_view name);

void write(level severity, std::string_view line);
inline void error(std::string_view line)
{
    write(level::error, line);
}
inline void warning(std::string_view line)
{
    write(level::warning, line);
}
inline void info(std::string_view line)
{
    write(level::info, line);
}
inline void debug(std::string_view line)
{
    write(level::debug, line);
}

/// "event=accepted id=... from=<a@b>": values with spaces, quotes, '=' or control characters
/// are quoted and escaped, so one event is always one parseable line.
[[nodiscard]] std::string
fields(std::initializer_list<std::pair<std::string_view, std::string_view>> kv);

} // namespace leafmail::log
