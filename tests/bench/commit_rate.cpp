// leafmail-bench-commit: the disk's own rate of durable file commits, the ceiling of any
// receiver that acknowledges only what is on stable storage. Each commit is what the spool
// does for one message: create, write, fdatasync, rename into another directory, fsync that
// directory; THREADS threads commit COUNT files in all. Prints commits per second.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

int main(int argc, char* argv[])
{
    if (argc != 5) {
        std::fprintf(stderr, "usage: leafmail-bench-commit DIR COUNT THREADS OCTETS\n");
        return 64;
    }
    const std::filesystem::path root = argv[1];
    const int count = std::atoi(argv[2]);
    const int threads = std::atoi(argv[3]);
    const std::string data(static_cast<std::size_t>(std::atol(argv[4])), 'x');
    std::filesystem::create_directories(root / "tmp");
    std::filesystem::create_directories(root / "queue");
    const int dir_fd = ::open((root / "queue").c_str(), O_RDONLY | O_DIRECTORY);
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&] {
            for (int i; (i = next++) < count;) {
                const std::string tmp = (root / "tmp" / std::to_string(i)).string();
                const std::string final_name = (root / "queue" / std::to_string(i)).string();
                const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640);
                if (fd < 0 ||
                    ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()) ||
                    ::fdatasync(fd) != 0 || ::rename(tmp.c_str(), final_name.c_str()) != 0 ||
                    ::fsync(dir_fd) != 0)
                    failed = true;
                if (fd >= 0)
                    ::close(fd);
            }
        });
    for (auto& w : workers)
        w.join();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (failed) {
        std::perror("leafmail-bench-commit");
        return 74;
    }
    std::printf("%.1f\n", count / seconds);
    return 0;
}
