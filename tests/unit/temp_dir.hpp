#pragma once
// A fresh directory under the system temp dir, removed with everything in it at scope exit,
// and the two whole-file helpers the tests use in it.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>

namespace leafmail::test {

class temp_dir {
public:
    temp_dir()
    {
        std::random_device random;
        path_ =
            std::filesystem::temp_directory_path() / ("leafmail-test-" + std::to_string(random()));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir()
    {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

/// A whole file's bytes ("" when it cannot be read).
inline std::string file_bytes(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

/// Replaces the file's bytes, creating it when missing.
inline void write_file(const std::filesystem::path& p, std::string_view bytes)
{
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << bytes;
}

} // namespace leafmail::test
