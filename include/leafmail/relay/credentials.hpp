#pragma once
// The smarthost password: read from auth-password-file, which must be private to its owner
// (as ssh insists for keys). The password is never logged; errors name only the file.
#include <filesystem>
#include <string>

namespace leafmail::relay {

/// The first line of the file without its line end. Throws config_error (exit 78) when the
/// file cannot be read, is not a regular file, or is accessible by group or others.
[[nodiscard]] std::string read_password_file(const std::filesystem::path& file);

} // namespace leafmail::relay
