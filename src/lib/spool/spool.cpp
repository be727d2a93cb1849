#include "leafmail/spool/spool.hpp"

#include "leafmail/spool/queue_id.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

namespace leafmail::spool {

namespace fs = std::filesystem;

namespace {

// Entry file: content, then the frozen envelope, then this 32-octet footer naming where the
// envelope starts (spool-format/README.md). One file per message means one fsync per message.
constexpr std::string_view footer_magic = "\nLEAFMAIL1 ";
constexpr std::size_t footer_size = 32;
constexpr std::size_t max_envelope_size = 16 * 1024 * 1024;
constexpr std::size_t write_buffer_size = 64 * 1024;
constexpr std::string_view state_suffix = ".env";
constexpr mode_t directory_mode = 0770; // group-writable: see the install model in README.md
constexpr mode_t file_mode = 0640;

[[noreturn]] void throw_errno(int error, const std::string& what)
{
    throw std::system_error(error, std::generic_category(), what);
}

std::string make_footer(std::uint64_t envelope_offset)
{
    char text[footer_size + 1];
    std::snprintf(text, sizeof text, "\nLEAFMAIL1 %020llu\n",
                  static_cast<unsigned long long>(envelope_offset));
    return std::string(text, footer_size);
}

void write_all(int fd, std::string_view bytes, const fs::path& path)
{
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw_errno(errno, "cannot write " + path.string());
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

std::string pread_exactly(int fd, std::uint64_t offset, std::size_t size, const std::string& path)
{
    std::string out(size, '\0');
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n =
            ::pread(fd, out.data() + done, size - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw_errno(errno, "cannot read " + path);
        }
        if (n == 0)
            throw corrupt_entry(path + ": file ends early");
        done += static_cast<std::size_t>(n);
    }
    return out;
}

struct fd_guard {
    int fd = -1;
    ~fd_guard()
    {
        if (fd >= 0)
            ::close(fd);
    }
    int release() { return std::exchange(fd, -1); }
};

bool is_unreadable_error(int error)
{
    return error == EACCES || error == EPERM || error == EISDIR || error == ELOOP || error == EIO;
}

// Where an entry's envelope sits: the footer must be ours and point inside the file.
std::uint64_t read_envelope_offset(int fd, std::uint64_t file_size, const std::string& path)
{
    if (file_size < footer_size)
        throw corrupt_entry(path + ": too short for an entry (" + std::to_string(file_size) +
                            " octets)");
    const std::string footer = pread_exactly(fd, file_size - footer_size, footer_size, path);
    if (footer.compare(0, footer_magic.size(), footer_magic) != 0 || footer.back() != '\n')
        throw corrupt_entry(path + ": no entry footer (truncated or not a leafmail entry)");
    std::uint64_t offset = 0;
    const char* digits = footer.data() + footer_magic.size();
    const char* digits_end = footer.data() + footer_size - 1;
    const auto [end, error] = std::from_chars(digits, digits_end, offset);
    if (error != std::errc{} || end != digits_end)
        throw corrupt_entry(path + ": entry footer is damaged");
    if (offset > file_size - footer_size || file_size - footer_size - offset > max_envelope_size)
        throw corrupt_entry(path + ": entry footer points outside the file");
    return offset;
}

std::uint64_t file_size_of(int fd, const std::string& path)
{
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        throw_errno(errno, "cannot stat " + path);
    return static_cast<std::uint64_t>(st.st_size);
}

// Renames without replacing: two entries can never end up sharing a name.
int rename_no_replace(const fs::path& from, const fs::path& to)
{
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return errno;
    // A filesystem without RENAME_NOREPLACE: ids are unique by construction, so a plain
    // rename is still safe.
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

void write_durable_file(const fs::path& tmp_path, std::string_view bytes)
{
    fd_guard file{::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, file_mode)};
    if (file.fd < 0)
        throw_errno(errno, "cannot create " + tmp_path.string());
    try {
        ::flock(file.fd, LOCK_EX); // recover() leaves files alone while a writer holds them
        write_all(file.fd, bytes, tmp_path);
        if (::fdatasync(file.fd) != 0)
            throw_errno(errno, "cannot fsync " + tmp_path.string());
    } catch (...) {
        ::unlink(tmp_path.c_str());
        throw;
    }
}

} // namespace

// Group commit of a directory's fsync: a caller that renamed a file into the directory waits
// for an fsync that *started* after its rename; one fsync covers every rename before it, so
// concurrent committers share them instead of queueing one fsync each.
class directory_syncer {
public:
    explicit directory_syncer(fs::path dir) : path_(std::move(dir))
    {
        fd_ = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd_ < 0)
            throw_errno(errno, "cannot open directory " + path_.string());
    }
    ~directory_syncer() { ::close(fd_); }
    directory_syncer(const directory_syncer&) = delete;
    directory_syncer& operator=(const directory_syncer&) = delete;

    void sync_after_change()
    {
        std::unique_lock lock(mutex_);
        const std::uint64_t ticket = ++requested_;
        while (completed_ < ticket) {
            if (in_progress_) {
                done_.wait(lock);
                continue;
            }
            in_progress_ = true;
            const std::uint64_t covers = requested_;
            lock.unlock();
            const int rc = ::fsync(fd_);
            const int error = errno;
            lock.lock();
            in_progress_ = false;
            done_.notify_all();
            if (rc != 0) // waiters not covered retry with their own fsync
                throw_errno(error, "cannot fsync directory " + path_.string());
            completed_ = std::max(completed_, covers);
        }
    }

private:
    fs::path path_;
    int fd_ = -1;
    std::mutex mutex_;
    std::condition_variable done_;
    std::uint64_t requested_ = 0;
    std::uint64_t completed_ = 0;
    bool in_progress_ = false;
};

std::string_view to_string(area where)
{
    switch (where) {
    case area::queue:
        return "queue";
    case area::hold:
        return "hold";
    case area::failed:
        return "failed";
    case area::corrupt:
        return "corrupt";
    }
    return "queue";
}

std::optional<area> area_from_string(std::string_view name)
{
    for (area a : all_areas)
        if (to_string(a) == name)
            return a;
    return std::nullopt;
}

// ---------------------------------------------------------------------------- entry_writer

entry_writer::entry_writer(fs::path tmp_dir, fs::path queue_dir, std::string id, int fd,
                           std::shared_ptr<directory_syncer> syncer)
    : tmp_path_(tmp_dir / id), final_path_(queue_dir / id), id_(std::move(id)), fd_(fd),
      syncer_(std::move(syncer))
{
    buffer_.reserve(write_buffer_size);
}

entry_writer::entry_writer(entry_writer&& other) noexcept
    : tmp_path_(std::move(other.tmp_path_)), final_path_(std::move(other.final_path_)),
      id_(std::move(other.id_)), fd_(std::exchange(other.fd_, -1)),
      syncer_(std::move(other.syncer_)), buffer_(std::move(other.buffer_)),
      content_size_(other.content_size_), has_8bit_(other.has_8bit_)
{
}

entry_writer& entry_writer::operator=(entry_writer&& other) noexcept
{
    if (this != &other) {
        abort();
        tmp_path_ = std::move(other.tmp_path_);
        final_path_ = std::move(other.final_path_);
        id_ = std::move(other.id_);
        fd_ = std::exchange(other.fd_, -1);
        syncer_ = std::move(other.syncer_);
        buffer_ = std::move(other.buffer_);
        content_size_ = other.content_size_;
        has_8bit_ = other.has_8bit_;
    }
    return *this;
}

entry_writer::~entry_writer()
{
    abort();
}

void entry_writer::write(std::string_view bytes)
{
    if (fd_ < 0)
        throw std::logic_error("entry_writer::write after commit or abort");
    if (!has_8bit_)
        has_8bit_ = std::any_of(bytes.begin(), bytes.end(),
                                [](char c) { return static_cast<unsigned char>(c) > 127; });
    content_size_ += bytes.size();
    if (buffer_.size() + bytes.size() > write_buffer_size) {
        flush_buffer();
        if (bytes.size() >= write_buffer_size) {
            write_all(fd_, bytes, tmp_path_);
            return;
        }
    }
    buffer_.append(bytes);
}

void entry_writer::flush_buffer()
{
    write_all(fd_, buffer_, tmp_path_);
    buffer_.clear();
}

void entry_writer::commit(envelope env)
{
    if (fd_ < 0)
        throw std::logic_error("entry_writer::commit after commit or abort");
    env.id = id_;
    env.content_size = content_size_;
    env.body_8bit = has_8bit_ ? 1 : 0;
    if (env.queued_at == 0)
        env.queued_at = static_cast<std::int64_t>(std::time(nullptr));
    try {
        buffer_.append(freeze(env));
        buffer_.append(make_footer(content_size_));
        flush_buffer();
        // Order matters: the content must be on disk before its name appears in queue/, and
        // the name must be on disk before the client hears 250.
        if (::fdatasync(fd_) != 0)
            throw_errno(errno, "cannot fsync " + tmp_path_.string());
        if (const int error = rename_no_replace(tmp_path_, final_path_); error != 0)
            throw_errno(error,
                        "cannot rename " + tmp_path_.string() + " to " + final_path_.string());
    } catch (...) {
        abort();
        throw;
    }
    ::close(std::exchange(fd_, -1));
    try {
        syncer_->sync_after_change();
    } catch (...) {
        // Not known to be durable, so the client must not be told 250 and will send again;
        // take the entry back so it is not relayed twice.
        ::unlink(final_path_.c_str());
        throw;
    }
}

void entry_writer::abort() noexcept
{
    if (fd_ >= 0) {
        ::unlink(tmp_path_.c_str());
        ::close(std::exchange(fd_, -1));
    }
}

// -------------------------------------------------------------------------- content_reader

content_reader::content_reader(content_reader&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(other.size_), offset_(other.offset_)
{
}

content_reader& content_reader::operator=(content_reader&& other) noexcept
{
    if (this != &other) {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        size_ = other.size_;
        offset_ = other.offset_;
    }
    return *this;
}

content_reader::~content_reader()
{
    if (fd_ >= 0)
        ::close(fd_);
}

std::string content_reader::read(std::size_t max)
{
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(max, size_ - offset_));
    if (want == 0)
        return {};
    std::string out(want, '\0');
    for (;;) {
        const ssize_t n = ::pread(fd_, out.data(), want, static_cast<off_t>(offset_));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_errno(errno, "cannot read spooled content");
        if (n == 0)
            throw corrupt_entry("spooled content ends early");
        out.resize(static_cast<std::size_t>(n));
        offset_ += static_cast<std::uint64_t>(n);
        return out;
    }
}

// ------------------------------------------------------------------------------- file_lock

file_lock::file_lock(file_lock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

file_lock& file_lock::operator=(file_lock&& other) noexcept
{
    if (this != &other) {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

file_lock::~file_lock()
{
    if (fd_ >= 0)
        ::close(fd_); // closing the last descriptor releases the flock
}

// ----------------------------------------------------------------------------------- spool

spool::spool(fs::path root, bool create) : root_(std::move(root))
{
    std::vector<fs::path> dirs{root_, root_ / "tmp"};
    for (area a : all_areas)
        dirs.push_back(root_ / to_string(a));
    for (const auto& d : dirs) {
        if (create && ::mkdir(d.c_str(), directory_mode) != 0 && errno != EEXIST)
            throw_errno(errno, "cannot create spool directory " + d.string());
        struct stat st {};
        if (::stat(d.c_str(), &st) != 0)
            throw_errno(errno, "cannot use spool directory " + d.string());
        if (!S_ISDIR(st.st_mode))
            throw_errno(ENOTDIR, "cannot use spool directory " + d.string());
    }
    for (area a : all_areas)
        syncers_.push_back(std::make_shared<directory_syncer>(dir(a)));
    for (area a : all_areas)
        area_prefixes_.push_back(dir(a).string() + "/");
}

spool::~spool() = default;

fs::path spool::dir(area where) const
{
    return root_ / to_string(where);
}

std::shared_ptr<directory_syncer> spool::syncer_for(area where) const
{
    return syncers_.at(static_cast<std::size_t>(where));
}

// Plain strings, not std::filesystem::path: building a path per entry was a fifth of the
// time of listing a large spool.
std::string spool::entry_file(area where, std::string_view id) const
{
    if (!is_valid_queue_id(id))
        throw std::invalid_argument("not a queue id: " + std::string(id));
    std::string file = area_prefixes_.at(static_cast<std::size_t>(where));
    file.append(id);
    return file;
}

std::string spool::state_file(area where, std::string_view id) const
{
    return entry_file(where, id).append(state_suffix);
}

fs::path spool::entry_path(area where, std::string_view id) const
{
    return entry_file(where, id);
}

fs::path spool::state_path(area where, std::string_view id) const
{
    return state_file(where, id);
}

entry_writer spool::create_entry()
{
    const fs::path tmp_dir = root_ / "tmp";
    for (int attempt = 0; attempt < 8; ++attempt) {
        std::string id = make_queue_id();
        const fs::path path = tmp_dir / id;
        fd_guard file{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, file_mode)};
        if (file.fd < 0) {
            if (errno == EEXIST)
                continue;
            throw_errno(errno, "cannot create " + path.string());
        }
        ::flock(file.fd, LOCK_EX);
        // recover() may have taken the file between open() and flock(): it is then unlinked
        // and useless, so start over with a new id.
        struct stat st {};
        if (::fstat(file.fd, &st) != 0 || st.st_nlink == 0)
            continue;
        return entry_writer(tmp_dir, dir(area::queue), std::move(id), file.release(),
                            syncer_for(area::queue));
    }
    throw_errno(EEXIST, "cannot create a new entry in " + tmp_dir.string());
}

recovery_report spool::recover()
{
    recovery_report report;
    std::error_code ec;
    for (const auto& item : fs::directory_iterator(root_ / "tmp", ec)) {
        fd_guard file{::open(item.path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)};
        if (file.fd < 0)
            continue;
        if (::flock(file.fd, LOCK_EX | LOCK_NB) != 0)
            continue; // a live writer
        if (::unlink(item.path().c_str()) == 0)
            ++report.removed_temporaries;
    }
    // A move renames the entry first and its state second; a crash between them leaves the
    // state behind. Deletion unlinks the entry first, leaving only a stale state file.
    for (area where : all_areas) {
        for (const auto& item : fs::directory_iterator(dir(where), ec)) {
            const std::string name = item.path().filename().string();
            if (name.size() <= state_suffix.size() || !name.ends_with(state_suffix))
                continue;
            const std::string id = name.substr(0, name.size() - state_suffix.size());
            if (!is_valid_queue_id(id) || fs::exists(entry_path(where, id), ec))
                continue;
            bool reunited = false;
            for (area other : all_areas) {
                if (other != where && fs::exists(entry_path(other, id), ec) &&
                    ::rename(item.path().c_str(), state_path(other, id).c_str()) == 0) {
                    reunited = true;
                    break;
                }
            }
            if (reunited)
                ++report.reunited_states;
            else if (::unlink(item.path().c_str()) == 0)
                ++report.removed_orphan_states;
        }
    }
    return report;
}

std::vector<std::string> spool::list(area where) const
{
    std::vector<std::string> ids;
    const fs::path d = dir(where);
    std::error_code ec;
    fs::directory_iterator it(d, ec);
    if (ec)
        throw std::system_error(ec, "cannot list " + d.string());
    for (const auto& item : it) {
        std::string name = item.path().filename().string();
        if (is_valid_queue_id(name))
            ids.push_back(std::move(name));
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::optional<envelope> spool::load(area where, std::string_view id) const
{
    const std::string path = entry_file(where, id);
    fd_guard entry{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
    if (entry.fd < 0) {
        if (errno == ENOENT)
            return std::nullopt;
        if (is_unreadable_error(errno))
            throw corrupt_entry(path + ": cannot open: " + std::strerror(errno));
        throw_errno(errno, "cannot open " + path);
    }
    const std::uint64_t size = file_size_of(entry.fd, path);
    const std::uint64_t offset = read_envelope_offset(entry.fd, size, path);

    envelope env;
    const std::string state = state_file(where, id);
    fd_guard state_file{::open(state.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
    if (state_file.fd >= 0) {
        const std::uint64_t state_size = file_size_of(state_file.fd, state);
        if (state_size > max_envelope_size)
            throw corrupt_entry(state + ": state file is too large");
        env = thaw(pread_exactly(state_file.fd, 0, static_cast<std::size_t>(state_size), state));
    } else if (errno == ENOENT) {
        env = thaw(pread_exactly(entry.fd, offset,
                                 static_cast<std::size_t>(size - footer_size - offset), path));
    } else {
        throw corrupt_entry(state + ": cannot open: " + std::strerror(errno));
    }
    if (env.id != id)
        throw corrupt_entry(path + ": envelope names another id (" + env.id + ")");
    if (env.content_size != offset)
        throw corrupt_entry(path + ": envelope and file disagree on the content size");
    return env;
}

content_reader spool::open_content(area where, std::string_view id) const
{
    const std::string path = entry_file(where, id);
    fd_guard entry{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
    if (entry.fd < 0) {
        if (is_unreadable_error(errno))
            throw corrupt_entry(path + ": cannot open: " + std::strerror(errno));
        throw_errno(errno, "cannot open " + path);
    }
    const std::uint64_t size = file_size_of(entry.fd, path);
    const std::uint64_t content_size = read_envelope_offset(entry.fd, size, path);
    return content_reader(entry.release(), content_size);
}

void spool::save_state(area where, const envelope& env)
{
    const fs::path target = state_path(where, env.id);
    const fs::path tmp =
        root_ / "tmp" / (env.id + std::string(state_suffix) + "-" + std::to_string(::getpid()));
    write_durable_file(tmp, freeze(env));
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
        const int error = errno;
        ::unlink(tmp.c_str());
        throw_errno(error, "cannot rename " + tmp.string() + " to " + target.string());
    }
    syncer_for(where)->sync_after_change();
}

bool spool::remove(area where, std::string_view id)
{
    // Entry first: a crash in between leaves a stale state file that recover() deletes,
    // never an entry whose recorded progress is lost. The directory is not fsynced: a removal
    // undone by a power cut means the message is sent again, which at-least-once allows.
    if (::unlink(entry_path(where, id).c_str()) != 0) {
        if (errno == ENOENT)
            return false;
        throw_errno(errno, "cannot remove " + entry_path(where, id).string());
    }
    ::unlink(state_path(where, id).c_str());
    return true;
}

bool spool::move(std::string_view id, area from, area to)
{
    const fs::path source = entry_path(from, id);
    const fs::path target = entry_path(to, id);
    if (const int error = rename_no_replace(source, target); error != 0) {
        if (error == ENOENT)
            return false;
        throw_errno(error, "cannot move " + source.string() + " to " + target.string());
    }
    // Entry first, state second (see recover()).
    if (::rename(state_path(from, id).c_str(), state_path(to, id).c_str()) != 0 && errno != ENOENT)
        throw_errno(errno, "cannot move " + state_path(from, id).string());
    syncer_for(to)->sync_after_change();
    syncer_for(from)->sync_after_change();
    return true;
}

bool spool::quarantine(area where, std::string_view id) noexcept
{
    try {
        if (where == area::corrupt)
            return true;
        const fs::path source = entry_path(where, id);
        const fs::path target = entry_path(area::corrupt, id);
        if (::rename(source.c_str(), target.c_str()) != 0)
            return false;
        ::rename(state_path(where, id).c_str(), state_path(area::corrupt, id).c_str());
        syncer_for(area::corrupt)->sync_after_change();
        return true;
    } catch (...) {
        return false;
    }
}

std::optional<file_lock> spool::try_lock_entry(area where, std::string_view id) const
{
    fd_guard entry{::open(entry_file(where, id).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
    if (entry.fd < 0 || ::flock(entry.fd, LOCK_EX | LOCK_NB) != 0)
        return std::nullopt;
    return file_lock(entry.release());
}

std::optional<file_lock> spool::lock_flush(std::chrono::milliseconds timeout) const
{
    const fs::path path = root_ / "flush.lock";
    fd_guard file{::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, file_mode)};
    if (file.fd < 0)
        throw_errno(errno, "cannot open " + path.string());
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (::flock(file.fd, LOCK_EX | LOCK_NB) == 0)
            return file_lock(file.release());
        if (errno != EWOULDBLOCK && errno != EINTR)
            throw_errno(errno, "cannot lock " + path.string());
        if (std::chrono::steady_clock::now() >= deadline)
            return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

std::optional<file_lock> spool::try_lock_watcher() const
{
    const fs::path path = root_ / "watch.lock";
    fd_guard file{::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, file_mode)};
    if (file.fd < 0)
        throw_errno(errno, "cannot open " + path.string());
    if (::flock(file.fd, LOCK_EX | LOCK_NB) == 0)
        return file_lock(file.release());
    if (errno != EWOULDBLOCK)
        throw_errno(errno, "cannot lock " + path.string());
    return std::nullopt;
}

bool spool::is_watcher_running() const
{
    const fs::path path = root_ / "watch.lock";
    fd_guard file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)};
    if (file.fd < 0)
        return false; // never started here, or not ours to read: nobody to talk to
    // A shared lock succeeds only when no watcher holds the exclusive one.
    if (::flock(file.fd, LOCK_SH | LOCK_NB) == 0)
        return false;
    return errno == EWOULDBLOCK;
}

namespace {

sockaddr_un unix_address(const fs::path& path)
{
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string& text = path.native();
    if (text.size() >= sizeof address.sun_path)
        throw_errno(ENAMETOOLONG, "cannot use " + text + " as a socket address");
    std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
    return address;
}

} // namespace

void spool::remove_watcher_socket() const noexcept
{
    const fs::path path = root_ / "watch.sock";
    struct stat st {};
    // Only a socket is removed: anything else planted under that name stays for the operator.
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        ::unlink(path.c_str());
}

int spool::listen_watcher_socket() const
{
    const fs::path path = root_ / "watch.sock";
    const sockaddr_un address = unix_address(path);
    remove_watcher_socket(); // a dead watcher's; the caller holds watch.lock
    fd_guard socket{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (socket.fd < 0)
        throw_errno(errno, "cannot create a socket for " + path.string());
    if (::bind(socket.fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
        throw_errno(errno, "cannot bind " + path.string());
    // Kicking may make an on-link machine dial: only the spool's owner, group and root may.
    if (::chmod(path.c_str(), 0660) != 0 || ::listen(socket.fd, 8) != 0)
        throw_errno(errno, "cannot listen on " + path.string());
    return socket.release();
}

int spool::connect_watcher_socket() const
{
    const sockaddr_un address = unix_address(root_ / "watch.sock");
    fd_guard socket{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (socket.fd < 0)
        return -1;
    if (::connect(socket.fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        const int error = errno;
        ::close(socket.release());
        errno = error; // the caller tells "no watcher" (ENOENT, ECONNREFUSED) from the rest
        return -1;
    }
    return socket.release();
}

int spool::watch_area(int inotify_fd, area where) const
{
    const fs::path path = dir(where);
    // IN_DONT_FOLLOW: an area replaced by a symlink is not followed elsewhere.
    const int wd = ::inotify_add_watch(inotify_fd, path.c_str(),
                                       IN_MOVED_TO | IN_CREATE | IN_ONLYDIR | IN_DONT_FOLLOW);
    if (wd < 0)
        throw_errno(errno, "cannot watch " + path.string());
    return wd;
}

std::uint64_t spool::free_bytes() const
{
    struct statvfs st {};
    if (::statvfs(root_.c_str(), &st) != 0)
        throw_errno(errno, "cannot statvfs " + root_.string());
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

} // namespace leafmail::spool
