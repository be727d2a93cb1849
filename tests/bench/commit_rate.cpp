// leafmail-bench-commit: the disk's own rate of durable commits, the ceilings of any receiver
// that acknowledges only what is on stable storage. Two kinds (MODE):
//  file       (default) what the spool does for one message without its journal: create,
//             write, fdatasync, rename into another directory, fsync that directory; each
//             commits a filesystem transaction (new inode, blocks, names) twice.
//  data-only  what the journal does: overwrite OCTETS inside a file whose blocks were written
//             beforehand, then fdatasync: a device flush with no metadata to commit. One
//             flush per commit (no sharing), so group commit can only beat it.
// THREADS threads commit COUNT times in all. Prints commits per second.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

bool commit_file(const std::filesystem::path& root, int dir_fd, int i, const std::string& data)
{
    const std::string tmp = (root / "tmp" / std::to_string(i)).string();
    const std::string final_name = (root / "queue" / std::to_string(i)).string();
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640);
    const bool ok = fd >= 0 &&
                    ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                    ::fdatasync(fd) == 0 && ::rename(tmp.c_str(), final_name.c_str()) == 0 &&
                    ::fsync(dir_fd) == 0;
    if (fd >= 0)
        ::close(fd);
    return ok;
}

// One preallocated file per thread, written with zeros and fsynced before the clock starts.
int preallocated(const std::filesystem::path& root, int thread, std::size_t size)
{
    const std::string path = (root / ("segment-" + std::to_string(thread))).string();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (fd < 0)
        return -1;
    const std::string zeros(1024 * 1024, '\0');
    for (std::size_t done = 0; done < size;) {
        const std::size_t n = std::min(zeros.size(), size - done);
        if (::pwrite(fd, zeros.data(), n, static_cast<off_t>(done)) != static_cast<ssize_t>(n)) {
            ::close(fd);
            return -1;
        }
        done += n;
    }
    if (::fsync(fd) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

} // namespace

int main(int argc, char* argv[])
{
    if (argc != 5 && argc != 6) {
        std::fprintf(stderr,
                     "usage: leafmail-bench-commit DIR COUNT THREADS OCTETS [file|data-only]\n");
        return 64;
    }
    const std::filesystem::path root = argv[1];
    const int count = std::atoi(argv[2]);
    const int threads = std::atoi(argv[3]);
    const std::string data(static_cast<std::size_t>(std::atol(argv[4])), 'x');
    const bool data_only = argc == 6 && std::strcmp(argv[5], "data-only") == 0;
    if (argc == 6 && !data_only && std::strcmp(argv[5], "file") != 0) {
        std::fprintf(stderr, "leafmail-bench-commit: MODE is file or data-only\n");
        return 64;
    }
    if (count <= 0 || threads <= 0) {
        std::fprintf(stderr, "leafmail-bench-commit: COUNT and THREADS must be positive\n");
        return 64;
    }
    std::filesystem::create_directories(root / "tmp");
    std::filesystem::create_directories(root / "queue");
    const int dir_fd = ::open((root / "queue").c_str(), O_RDONLY | O_DIRECTORY);
    std::vector<int> files;
    if (data_only) {
        const std::size_t per_thread =
            (static_cast<std::size_t>(count / threads) + 1) * data.size();
        for (int t = 0; t < threads; ++t)
            if (const int fd = preallocated(root, t, per_thread); fd >= 0)
                files.push_back(fd);
        if (files.size() != static_cast<std::size_t>(threads)) {
            std::perror("leafmail-bench-commit: preallocate");
            return 74;
        }
    }
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&, t] {
            std::size_t offset = 0;
            for (int i; (i = next++) < count;) {
                if (data_only) {
                    const int fd = files[static_cast<std::size_t>(t)];
                    if (::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)) !=
                            static_cast<ssize_t>(data.size()) ||
                        ::fdatasync(fd) != 0)
                        failed = true;
                    offset += data.size();
                } else if (!commit_file(root, dir_fd, i, data)) {
                    failed = true;
                }
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
