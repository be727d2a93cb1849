// spool::thaw() fed arbitrary archive text (issue 6): it either returns an envelope or throws
// spool::corrupt_entry, never anything else, and never allocates from a garbage length (run
// under -rss_limit_mb / -malloc_limit_mb, a length of 4000000000 in the text is a crash).
// Whatever thaws must freeze and thaw again to the same envelope.
#include "leafmail/spool/envelope.hpp"
#include "leafmail/spool/spool.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    namespace spool = leafmail::spool;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    spool::envelope env;
    try {
        env = spool::thaw(text);
    } catch (const spool::corrupt_entry&) {
        return 0; // the one allowed failure; anything else escapes and libFuzzer reports it
    }
    if (!(spool::thaw(spool::freeze(env)) == env)) {
        std::fprintf(stderr, "invariant broken: freeze/thaw round trip differs\n");
        std::abort();
    }
    return 0;
}
