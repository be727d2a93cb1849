// leafmail-bench-fill: puts N entries of a given content size into a spool's queue, written
// in the documented layout (spool-format/README.md) but without fsync: a benchmark fixture,
// not a way to spool mail.
#include "leafmail/spool/envelope.hpp"
#include "leafmail/spool/queue_id.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

int main(int argc, char* argv[])
{
    if (argc != 5) {
        std::fprintf(stderr, "usage: leafmail-bench-fill SPOOL COUNT CONTENT-OCTETS RECIPIENT\n");
        return 64;
    }
    const std::filesystem::path queue = std::filesystem::path(argv[1]) / "queue";
    std::filesystem::create_directories(queue);
    for (const char* area : {"tmp", "hold", "failed", "corrupt"})
        std::filesystem::create_directories(std::filesystem::path(argv[1]) / area);
    const long count = std::atol(argv[2]);
    const std::size_t size = static_cast<std::size_t>(std::atol(argv[3]));

    const auto start = std::chrono::system_clock::now().time_since_epoch();
    const auto base = static_cast<std::uint64_t>(
                          std::chrono::duration_cast<std::chrono::microseconds>(start).count()) -
                      static_cast<std::uint64_t>(count);
    for (long i = 0; i < count; ++i) {
        leafmail::spool::envelope env;
        env.id = leafmail::spool::make_queue_id(base + static_cast<std::uint64_t>(i),
                                                static_cast<std::uint32_t>(::getpid()), 0);
        env.queued_at = std::time(nullptr);
        env.origin = "smtp";
        env.client_address = "127.0.0.1";
        env.helo_name = "bench";
        env.reverse_path = "bench@example.org";
        env.recipients.push_back(
            {argv[4], leafmail::spool::recipient_state::pending, 0, 0, "", "", 0});
        std::string content =
            "Received: from bench ([127.0.0.1])\r\n\tby bench (leafmail) with ESMTP id " + env.id +
            "; Thu, 01 Jan 1970 00:00:00 +0000\r\nFrom: bench@example.org\r\nTo: " + argv[4] +
            "\r\nSubject: bench " + std::to_string(i) + "\r\n\r\n";
        while (content.size() + 80 < size)
            content += std::string(76, 'x') + "\r\n";
        env.content_size = content.size();
        char footer[33];
        std::snprintf(footer, sizeof footer, "\nLEAFMAIL1 %020llu\n",
                      static_cast<unsigned long long>(content.size()));
        std::ofstream out(queue / env.id, std::ios::binary);
        out << content << leafmail::spool::freeze(env) << footer;
    }
    return 0;
}
