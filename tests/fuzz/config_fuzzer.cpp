// The configuration file parser fed an arbitrary file (issue 6): load_config_file() either
// returns settings that pass validate() or throws config_error (exit 78) naming the file;
// no other exception, no crash.
#include "leafmail/config.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    // One file per fuzzing process, rewritten for each input (tmpfs when there is one).
    static const std::string path = [] {
        const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        return std::string(dir) + "/leafmail-config-fuzz-" + std::to_string(::getpid()) + ".conf";
    }();
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const leafmail::config settings = leafmail::load_config_file(path, true);
        leafmail::validate(settings, path); // what it returned is valid by its own rules
    } catch (const leafmail::config_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) {
            std::fprintf(stderr, "invariant broken: config_error without the file name: %s\n",
                         e.what());
            std::abort();
        }
    }
    return 0;
}
