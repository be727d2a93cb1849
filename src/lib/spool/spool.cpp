#include "leafmail/spool/spool.hpp"
#include "leafmail/spool/handover.hpp"
#include "unix_socket.hpp"

#include "leafmail/log.hpp"
#include "leafmail/spool/queue_id.hpp"

#include <algorithm>
#include <atomic>
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

#include <dirent.h>
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
constexpr const char* tmp_name = "tmp";
constexpr const char* flush_lock_name = "flush.lock";
// Group-writable and setgid, so what the setgid injector and the owner write keeps the
// spool's group (see the install model in README.md). Set by fchmod, never left to the umask.
constexpr mode_t directory_mode = 02770;
constexpr mode_t file_mode = 0640;
// Every open inside the spool: a symlink is never followed (ELOOP) and a FIFO never blocks.
constexpr int no_follow = O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;

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

void write_all(int fd, std::string_view bytes, const std::string& path)
{
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw_errno(errno, "cannot write " + path);
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
    return error == EACCES || error == EPERM || error == EISDIR || error == ELOOP || error == EIO ||
           error == ENXIO || error == ENODEV;
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

// Content comes only from a descriptor that is a regular file: a directory, FIFO or device
// named like an entry is a corrupt entry, not an I/O error that would stop a flush.
std::uint64_t regular_file_size(int fd, const std::string& path)
{
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        throw_errno(errno, "cannot stat " + path);
    if (!S_ISREG(st.st_mode))
        throw corrupt_entry(path + ": not a regular file");
    return static_cast<std::uint64_t>(st.st_size);
}

// Opens a spool file for reading; -1 with errno set on failure.
int open_readable(int dir, const std::string& name)
{
    return ::openat(dir, name.c_str(), O_RDONLY | no_follow);
}

// Renames without replacing: two entries can never end up sharing a name.
int rename_no_replace(int from_dir, const std::string& from, int to_dir, const std::string& to)
{
    if (::renameat2(from_dir, from.c_str(), to_dir, to.c_str(), RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return errno;
    // A filesystem without RENAME_NOREPLACE: ids are unique by construction, so a plain
    // rename is still safe.
    return ::renameat(from_dir, from.c_str(), to_dir, to.c_str()) == 0 ? 0 : errno;
}

bool exists_in(int dir, const std::string& name)
{
    struct stat st {};
    return ::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

const char* kind_of(mode_t mode)
{
    if (S_ISDIR(mode))
        return "directory";
    if (S_ISLNK(mode))
        return "symlink";
    if (S_ISFIFO(mode))
        return "fifo";
    if (S_ISSOCK(mode))
        return "socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "device";
    return "file";
}

const char* kind_of_dirent(unsigned char type)
{
    switch (type) {
    case DT_DIR:
        return "directory";
    case DT_LNK:
        return "symlink";
    case DT_FIFO:
        return "fifo";
    case DT_SOCK:
        return "socket";
    case DT_CHR:
    case DT_BLK:
        return "device";
    default:
        return "file";
    }
}

// Opens (creating it when asked and missing) one directory of the tree below `parent`.
// A directory we create gets its mode by fchmod on the descriptor, never from the umask.
int open_directory(int parent, const char* name, bool create, const std::string& label)
{
    bool created = false;
    if (create) {
        if (::mkdirat(parent, name, 0700) == 0)
            created = true;
        else if (errno != EEXIST)
            throw_errno(errno, "cannot create spool directory " + label);
    }
    const int fd = ::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP)
            throw_errno(ENOTDIR, "cannot use spool directory " + label + " (a symlink)");
        throw_errno(errno, "cannot use spool directory " + label);
    }
    if (created && ::fchmod(fd, directory_mode) != 0) {
        const int error = errno;
        ::close(fd);
        throw_errno(error, "cannot set the mode of " + label);
    }
    return fd;
}

// A new file tmp/<name>, made here (O_EXCL), locked against recover() in other processes and
// 0640 whatever the umask. Throws std::system_error (EEXIST: the name is taken).
int create_locked_temporary(int tmp_dir, const std::string& name, const std::string& label)
{
    fd_guard file{
        ::openat(tmp_dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | no_follow, file_mode)};
    if (file.fd < 0)
        throw_errno(errno, "cannot create " + label);
    ::flock(file.fd, LOCK_EX);
    ::fchmod(file.fd, file_mode);
    return file.release();
}

// Names from a hostile directory go into log lines and messages: printable ASCII only.
std::string printable(std::string_view name)
{
    std::string out;
    for (char c : name.substr(0, 200)) {
        const auto u = static_cast<unsigned char>(c);
        out += u >= 0x20 && u < 0x7f ? c : '?';
    }
    return out;
}

} // namespace

// The spool's directories, opened once when the spool is: whatever is renamed or swapped
// later under the root, every operation stays inside these directories.
struct spool_directories {
    int root = -1;
    int tmp = -1;
    int areas[std::size(all_areas)] = {-1, -1, -1, -1};
    std::string root_label; // the root's path, for messages only

    spool_directories() = default;
    spool_directories(const spool_directories&) = delete;
    spool_directories& operator=(const spool_directories&) = delete;
    ~spool_directories()
    {
        for (int fd : areas)
            if (fd >= 0)
                ::close(fd);
        if (tmp >= 0)
            ::close(tmp);
        if (root >= 0)
            ::close(root);
    }
    [[nodiscard]] int area_fd(area where) const { return areas[static_cast<std::size_t>(where)]; }
};

missing_spool::missing_spool(const fs::path& root)
    : std::system_error(ENOENT, std::generic_category(),
                        "no spool at " + root.string() +
                            " (leafmaild creates it when it starts as its owner; as root, run "
                            "leafmaild --setup-spool)")
{
}

// Group commit of a directory's fsync: a caller that renamed a file into the directory waits
// for an fsync that *started* after its rename; one fsync covers every rename before it, so
// concurrent committers share them instead of queueing one fsync each.
class directory_syncer {
public:
    directory_syncer(int dir_fd, std::string label) : label_(std::move(label))
    {
        fd_ = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
        if (fd_ < 0)
            throw_errno(errno, "cannot open directory " + label_);
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
                throw_errno(error, "cannot fsync directory " + label_);
            completed_ = std::max(completed_, covers);
        }
    }

private:
    std::string label_;
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

// Where the injector offers its entries: the running leafmaild, which must run as the spool's
// owner, answering within the timeout.
struct handover_target {
    std::string socket_path;
    unsigned receiver_uid = 0;
    std::size_t max_entry_size = 0;
    std::chrono::milliseconds timeout{0};
};

// ---------------------------------------------------------------------------- entry_writer

entry_writer::entry_writer(std::shared_ptr<const spool_directories> dirs, std::string id, int fd,
                           std::shared_ptr<directory_syncer> syncer,
                           std::shared_ptr<journal> journal,
                           std::shared_ptr<const handover_target> handover)
    : dirs_(std::move(dirs)), tmp_label_(dirs_->root_label + "/tmp/" + id), id_(std::move(id)),
      fd_(fd), syncer_(std::move(syncer)), journal_(std::move(journal)),
      handover_(std::move(handover))
{
    buffer_.reserve(write_buffer_size);
}

entry_writer::entry_writer(entry_writer&& other) noexcept
    : dirs_(std::move(other.dirs_)), tmp_label_(std::move(other.tmp_label_)),
      id_(std::move(other.id_)), fd_(std::exchange(other.fd_, -1)),
      syncer_(std::move(other.syncer_)), journal_(std::move(other.journal_)),
      handover_(std::move(other.handover_)), buffer_(std::move(other.buffer_)),
      content_size_(other.content_size_), has_8bit_(other.has_8bit_)
{
}

entry_writer& entry_writer::operator=(entry_writer&& other) noexcept
{
    if (this != &other) {
        abort();
        dirs_ = std::move(other.dirs_);
        tmp_label_ = std::move(other.tmp_label_);
        id_ = std::move(other.id_);
        fd_ = std::exchange(other.fd_, -1);
        syncer_ = std::move(other.syncer_);
        journal_ = std::move(other.journal_);
        handover_ = std::move(other.handover_);
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
    if (journal_ || handover_) {
        // Kept whole in memory while it may still go through a journal; past that size it
        // is streamed into its file like any large entry, so memory stays bounded.
        const std::size_t limit =
            journal_ ? journal_->options().max_entry_size : handover_->max_entry_size;
        if (buffer_.size() + bytes.size() <= limit) {
            buffer_.append(bytes);
            return;
        }
        journal_.reset();
        handover_.reset();
    }
    if (buffer_.size() + bytes.size() > write_buffer_size) {
        flush_buffer();
        if (bytes.size() >= write_buffer_size) {
            write_all(fd_, bytes, tmp_label_);
            return;
        }
    }
    buffer_.append(bytes);
}

void entry_writer::flush_buffer()
{
    write_all(fd_, buffer_, tmp_label_);
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
    const int queue_fd = dirs_->area_fd(area::queue);
    try {
        buffer_.append(freeze(env));
        buffer_.append(make_footer(content_size_));
    } catch (...) {
        abort();
        throw;
    }
    if (journal_ && buffer_.size() <= journal_->options().max_entry_size && journal_->is_usable()) {
        commit_journaled();
        return;
    }
    if (handover_ && buffer_.size() <= handover_->max_entry_size && commit_handed_over())
        return;
    try {
        flush_buffer();
        // Order matters: the content must be on disk before its name appears in queue/, and
        // the name must be on disk before the client hears 250.
        if (::fdatasync(fd_) != 0)
            throw_errno(errno, "cannot fsync " + tmp_label_);
        if (const int error = rename_no_replace(dirs_->tmp, id_, queue_fd, id_); error != 0)
            throw_errno(error, "cannot rename " + tmp_label_ + " into queue/");
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
        ::unlinkat(queue_fd, id_.c_str(), 0);
        throw;
    }
}

// The journaled commit (spool-format/README.md, "The journal"): the entry's file is written
// (not flushed) first, so a full disk refuses the message before anything is durable; the
// journal's group-committed fdatasync then makes it durable; only after that does its name
// appear in queue/. The file's own data and name reach the disk with the next checkpoint
// (syncfs), and until then a crash is repaired by replaying the journal.
void entry_writer::commit_journaled()
{
    std::uint64_t sequence = 0;
    try {
        write_all(fd_, buffer_, tmp_label_);
        sequence = journal_->commit(id_, buffer_);
    } catch (...) {
        abort();
        throw;
    }
    buffer_.clear();
    const int error = rename_no_replace(dirs_->tmp, id_, dirs_->area_fd(area::queue), id_);
    // Given up or in its place: either way the checkpoint may pass the record now.
    journal_->materialised(sequence);
    if (error != 0) {
        // Durable in the journal yet refused: a replay after a crash before the next
        // checkpoint would bring it back, a duplicate of what the client sends again.
        abort();
        throw_errno(error, "cannot rename " + tmp_label_ + " into queue/");
    }
    ::close(std::exchange(fd_, -1));
}

// The injector's side of the handover (handover.hpp). The receiver makes tmp/<id> itself, so
// ours goes first; if the entry is not taken, the file is made again under the same id and
// the caller commits it the one-file way. The receiver may have made it durable without our
// hearing so (it crashed before answering): then the entry exists twice at most, or our
// rename finds its name taken and the message is refused although it was kept, as when a
// 250 is lost.
bool entry_writer::commit_handed_over()
{
    ::unlinkat(dirs_->tmp, id_.c_str(), 0);
    ::close(std::exchange(fd_, -1));
    if (handover::send_entry(handover_->socket_path, handover_->receiver_uid, id_, buffer_,
                             handover_->timeout)) {
        buffer_.clear();
        return true;
    }
    fd_ = create_locked_temporary(dirs_->tmp, id_, tmp_label_);
    return false;
}

void entry_writer::abort() noexcept
{
    if (fd_ >= 0) {
        ::unlinkat(dirs_->tmp, id_.c_str(), 0);
        ::close(std::exchange(fd_, -1));
    }
}

// ----------------------------------------------------------------------- state_reservation

state_reservation::state_reservation(state_reservation&& other) noexcept
    : dirs_(std::move(other.dirs_)), name_(std::move(other.name_)),
      fd_(std::exchange(other.fd_, -1)), size_(other.size_)
{
}

state_reservation& state_reservation::operator=(state_reservation&& other) noexcept
{
    if (this != &other) {
        release();
        dirs_ = std::move(other.dirs_);
        name_ = std::move(other.name_);
        fd_ = std::exchange(other.fd_, -1);
        size_ = other.size_;
    }
    return *this;
}

state_reservation::~state_reservation()
{
    release();
}

void state_reservation::release() noexcept
{
    if (fd_ >= 0) {
        ::unlinkat(dirs_->tmp, name_.c_str(), 0);
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

// ----------------------------------------------------------------------------- set-up

void set_up_spool(const fs::path& root, unsigned owner_uid, unsigned owner_gid)
{
    const auto uid = static_cast<uid_t>(owner_uid);
    const auto gid = static_cast<gid_t>(owner_gid);
    // Parents are the administrator's (root's): created with ordinary modes.
    std::error_code ec;
    if (root.has_parent_path())
        fs::create_directories(root.parent_path(), ec);
    // Takes one directory or file we hold a descriptor on (never a path that could be
    // swapped): refused when someone else than root or the owner holds it.
    auto take = [&](int fd, const std::string& label, mode_t mode) {
        struct stat st {};
        if (::fstat(fd, &st) != 0)
            throw_errno(errno, "cannot stat " + label);
        if (st.st_uid != uid && st.st_uid != 0)
            throw foreign_spool(label + " belongs to uid " + std::to_string(st.st_uid) +
                                ", not to the spool's owner (uid " + std::to_string(uid) +
                                "); refusing to take it over");
        if (!S_ISDIR(st.st_mode) && st.st_nlink != 1)
            throw foreign_spool(label + " has other links; refusing to take it over");
        if ((st.st_uid != uid || st.st_gid != gid) && ::fchown(fd, uid, gid) != 0)
            throw_errno(errno, "cannot chown " + label);
        // fchown clears the setgid bit: the mode comes after it.
        if (::fchmod(fd, mode) != 0)
            throw_errno(errno, "cannot set the mode of " + label);
    };
    if (::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST)
        throw_errno(errno, "cannot create spool directory " + root.string());
    fd_guard root_fd{::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    if (root_fd.fd < 0)
        throw_errno(errno, "cannot open spool directory " + root.string());
    take(root_fd.fd, root.string(), directory_mode);
    std::vector<std::string> names{tmp_name};
    for (area a : all_areas)
        names.emplace_back(to_string(a));
    for (const auto& name : names) {
        const std::string label = root.string() + "/" + name;
        fd_guard dir{open_directory(root_fd.fd, name.c_str(), true, label)};
        take(dir.fd, label, directory_mode);
    }
    const std::string lock_label = root.string() + "/" + flush_lock_name;
    fd_guard lock{::openat(root_fd.fd, flush_lock_name, O_RDONLY | O_CREAT | no_follow, 0600)};
    if (lock.fd < 0)
        throw_errno(errno, "cannot create " + lock_label);
    struct stat st {};
    if (::fstat(lock.fd, &st) != 0 || !S_ISREG(st.st_mode))
        throw foreign_spool(lock_label + " is not a regular file");
    take(lock.fd, lock_label, file_mode);
}

// ----------------------------------------------------------------------------------- spool

bool has_no_areas(const fs::path& root)
{
    fd_guard dir{::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (dir.fd < 0)
        return false;
    if (exists_in(dir.fd, tmp_name))
        return false;
    for (area a : all_areas)
        if (exists_in(dir.fd, std::string(to_string(a))))
            return false;
    return true;
}

spool::spool(fs::path root, bool create)
    : root_(std::move(root)), dirs_(std::make_shared<spool_directories>())
{
    dirs_->root_label = root_.string();
    bool created_root = false;
    if (create) {
        std::error_code ec;
        if (root_.has_parent_path())
            fs::create_directories(root_.parent_path(), ec); // errors show at mkdir below
        if (::mkdir(root_.c_str(), 0700) == 0)
            created_root = true;
        else if (errno != EEXIST)
            throw_errno(errno, "cannot create spool directory " + root_.string());
    }
    // The root itself may be a symlink the administrator made; nothing below it may be.
    dirs_->root = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirs_->root < 0) {
        if (errno == ENOENT)
            throw missing_spool(root_);
        throw_errno(errno, "cannot use spool directory " + root_.string());
    }
    if (created_root && ::fchmod(dirs_->root, directory_mode) != 0)
        throw_errno(errno, "cannot set the mode of " + root_.string());
    // A directory without the areas (made by hand, never set up) is no spool either.
    struct stat tmp_status {};
    if (!create && ::fstatat(dirs_->root, tmp_name, &tmp_status, AT_SYMLINK_NOFOLLOW) != 0 &&
        errno == ENOENT)
        throw missing_spool(root_);
    dirs_->tmp = open_directory(dirs_->root, tmp_name, create, root_.string() + "/tmp");
    for (area a : all_areas)
        dirs_->areas[static_cast<std::size_t>(a)] =
            open_directory(dirs_->root, std::string(to_string(a)).c_str(), create,
                           root_.string() + "/" + std::string(to_string(a)));
    if (create) {
        // Made here, exclusively (O_EXCL never follows a symlink), so the flush need not.
        const int lock =
            ::openat(dirs_->root, flush_lock_name, O_RDONLY | O_CREAT | O_EXCL | no_follow, 0600);
        if (lock >= 0) {
            ::fchmod(lock, file_mode);
            ::close(lock);
        }
    }
    for (area a : all_areas)
        syncers_.push_back(std::make_shared<directory_syncer>(
            dir_fd(a), root_.string() + "/" + std::string(to_string(a))));
}

spool::~spool() = default;

int spool::dir_fd(area where) const
{
    return dirs_->area_fd(where);
}

std::string spool::label(area where, std::string_view name) const
{
    std::string out = root_.string();
    out += '/';
    out.append(to_string(where));
    out += '/';
    out.append(name);
    return out;
}

std::shared_ptr<directory_syncer> spool::syncer_for(area where) const
{
    return syncers_.at(static_cast<std::size_t>(where));
}

namespace {

void check_id(std::string_view id)
{
    if (!is_valid_queue_id(id))
        throw std::invalid_argument("not a queue id: " + std::string(id));
}

std::string state_name(std::string_view id)
{
    std::string name(id);
    name.append(state_suffix);
    return name;
}

} // namespace

entry_writer spool::create_entry()
{
    for (int attempt = 0; attempt < 8; ++attempt) {
        std::string id = make_queue_id();
        fd_guard file{
            ::openat(dirs_->tmp, id.c_str(), O_WRONLY | O_CREAT | O_EXCL | no_follow, file_mode)};
        if (file.fd < 0) {
            if (errno == EEXIST)
                continue;
            throw_errno(errno, "cannot create " + root_.string() + "/tmp/" + id);
        }
        ::flock(file.fd, LOCK_EX);
        // recover() may have taken the file between open() and flock(): it is then unlinked
        // and useless, so start over with a new id.
        struct stat st {};
        if (::fstat(file.fd, &st) != 0 || st.st_nlink == 0)
            continue;
        if ((st.st_mode & 07777) != file_mode)
            ::fchmod(file.fd, file_mode); // whatever the caller's umask
        std::shared_ptr<journal> through;
        if (journal_ && journal_->is_usable())
            through = journal_;
        return entry_writer(dirs_, std::move(id), file.release(), syncer_for(area::queue),
                            std::move(through), journal_ ? nullptr : handover_);
    }
    throw_errno(EEXIST, "cannot create a new entry in " + root_.string() + "/tmp");
}

namespace {

constexpr const char* journal_name = "journal";

// The envelope offset an entry's octets name in their footer, when they are a whole entry.
std::optional<std::uint64_t> whole_entry_offset(std::string_view entry)
{
    if (entry.size() < footer_size)
        return std::nullopt;
    const std::string_view footer = entry.substr(entry.size() - footer_size);
    if (footer.substr(0, footer_magic.size()) != footer_magic || footer.back() != '\n')
        return std::nullopt;
    std::uint64_t offset = 0;
    const char* digits = footer.data() + footer_magic.size();
    const char* digits_end = footer.data() + footer_size - 1;
    const auto [end, error] = std::from_chars(digits, digits_end, offset);
    if (error != std::errc{} || end != digits_end || offset > entry.size() - footer_size)
        return std::nullopt;
    return offset;
}

} // namespace

// Puts every journaled entry past the checkpoint (back) into queue/ unless it is already
// whole in an area, then checkpoints. An entry already relayed and removed since comes
// back: at least once, as after any crash.
std::size_t spool::replay(journal& from)
{
    std::size_t replayed = 0;
    const auto records = from.records_after_checkpoint();
    for (const auto& where : records) {
        const auto record = from.read_record(where);
        if (!record)
            continue;
        const auto& [id, entry] = *record;
        if (!is_valid_queue_id(id) || !whole_entry_offset(entry)) {
            log::warning(log::fields({{"event", "journal-record-skipped"},
                                      {"sequence", std::to_string(where.sequence)},
                                      {"id", printable(id)},
                                      {"why", "not a queue id or not a whole entry"}}));
            continue;
        }
        bool present = false;
        bool torn_in_queue = false;
        for (area a : all_areas) {
            fd_guard file{open_readable(dir_fd(a), id)};
            if (file.fd < 0)
                continue;
            struct stat st {};
            const bool whole = ::fstat(file.fd, &st) == 0 && S_ISREG(st.st_mode) &&
                               static_cast<std::uint64_t>(st.st_size) == entry.size();
            if (a == area::queue && !whole)
                torn_in_queue = true; // its name reached the disk before its data: repair
            else
                present = true;
        }
        if (present)
            continue;
        const std::string tmp_label = root_.string() + "/tmp/" + id;
        ::unlinkat(dirs_->tmp, id.c_str(), 0); // what the crashed writer left
        fd_guard file{create_locked_temporary(dirs_->tmp, id, tmp_label)};
        try {
            write_all(file.fd, entry, tmp_label);
        } catch (...) {
            ::unlinkat(dirs_->tmp, id.c_str(), 0);
            throw;
        }
        const int error =
            torn_in_queue
                ? (::renameat(dirs_->tmp, id.c_str(), dir_fd(area::queue), id.c_str()) == 0 ? 0
                                                                                            : errno)
                : rename_no_replace(dirs_->tmp, id, dir_fd(area::queue), id);
        if (error != 0) {
            ::unlinkat(dirs_->tmp, id.c_str(), 0);
            throw_errno(error, "cannot rename " + tmp_label + " into queue/");
        }
        ++replayed;
    }
    // The checkpoint passes every record found, replayed or not: a later start does not
    // look at them again, and the segments are free for reuse.
    if (!records.empty())
        from.checkpoint_through(from.last_sequence());
    return replayed;
}

int spool::listen_for_handovers()
{
    return handover::listen_at(root_.string() + "/" + std::string(handover::socket_name));
}

void spool::commit_handed_over(const std::string& id, std::string entry)
{
    if (!journal_ || !journal_->is_usable())
        throw_errno(ENOTSUP, "no usable journal in " + root_.string());
    if (!is_valid_queue_id(id))
        throw corrupt_entry("handed-over entry: '" + printable(id) + "' is not a queue id");
    if (entry.size() > journal_->options().max_entry_size)
        throw corrupt_entry("handed-over entry " + id + ": larger than the journal takes");
    const auto offset = whole_entry_offset(entry);
    if (!offset)
        throw corrupt_entry("handed-over entry " + id + ": not a whole entry (no footer)");
    const envelope env = thaw(std::string_view(entry).substr(
        *offset, entry.size() - footer_size - static_cast<std::size_t>(*offset)));
    if (env.id != id || env.content_size != *offset)
        throw corrupt_entry("handed-over entry " + id + ": its envelope names another entry");
    entry_writer writer(dirs_, id,
                        create_locked_temporary(dirs_->tmp, id, root_.string() + "/tmp/" + id),
                        syncer_for(area::queue), journal_, nullptr);
    writer.content_size_ = *offset;
    writer.buffer_ = std::move(entry);
    writer.commit_journaled();
}

void spool::offer_new_entries_to_receiver()
{
    struct stat st {};
    if (::fstat(dirs_->root, &st) != 0)
        return;
    auto target = std::make_shared<handover_target>();
    target->socket_path = root_.string() + "/" + std::string(handover::socket_name);
    target->receiver_uid = st.st_uid;
    target->max_entry_size = journal_options{}.max_entry_size;
    // Long enough for a group commit on a slow disk; a receiver that takes longer is given
    // up on, and the injector commits the entry itself.
    target->timeout = std::chrono::seconds(30);
    handover_ = std::move(target);
}

bool spool::open_journal(const journal_options& options, std::string& why_not)
{
    if (journal_)
        return true;
    const std::string label = root_.string() + "/" + journal_name;
    fd_guard dir{open_directory(dirs_->root, journal_name, true, label)};
    std::shared_ptr<journal> opened;
    try {
        opened = journal::open(dir.fd, label, options, true);
    } catch (const std::system_error& e) {
        why_not = e.what();
        return false;
    }
    if (!opened) {
        why_not = "another process holds " + label;
        return false;
    }
    replay(*opened);
    opened->start();
    journal_ = std::move(opened);
    return true;
}

recovery_report spool::recover()
{
    recovery_report report;
    // The journal first: a record replayed now is a whole entry in queue/, and the file its
    // crashed writer left in tmp/ is then mere debris for the clean-up below.
    if (!journal_) {
        const int dir = ::openat(dirs_->root, journal_name, O_RDONLY | O_DIRECTORY | no_follow);
        if (dir >= 0) {
            fd_guard guard{dir};
            if (auto held = journal::open(dir, root_.string() + "/" + journal_name, {}, false))
                report.replayed_records = replay(*held);
        }
    }
    // tmp/ is read through the descriptor opened at start: if the owner made tmp a symlink
    // since, the spool did not open, and unlinkat never leaves this directory.
    {
        const int fd = ::openat(dirs_->tmp, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR* listing = fd >= 0 ? ::fdopendir(fd) : nullptr;
        if (fd >= 0 && !listing)
            ::close(fd);
        std::vector<std::string> names;
        while (listing) {
            errno = 0;
            const dirent* item = ::readdir(listing);
            if (!item)
                break;
            const std::string name = item->d_name;
            if (name != "." && name != "..")
                names.push_back(name);
        }
        if (listing)
            ::closedir(listing);
        for (const auto& name : names) {
            fd_guard file{open_readable(dirs_->tmp, name)};
            if (file.fd < 0) {
                // A symlink, FIFO or socket left in tmp/: unlinking the name is safe (it
                // removes the link itself, never what it points to).
                struct stat st {};
                if (::fstatat(dirs_->tmp, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    !S_ISDIR(st.st_mode) && ::unlinkat(dirs_->tmp, name.c_str(), 0) == 0)
                    ++report.removed_temporaries;
                continue;
            }
            struct stat st {};
            if (::fstat(file.fd, &st) != 0 || S_ISDIR(st.st_mode))
                continue;
            if (S_ISREG(st.st_mode) && ::flock(file.fd, LOCK_EX | LOCK_NB) != 0)
                continue; // a live writer
            if (::unlinkat(dirs_->tmp, name.c_str(), 0) == 0)
                ++report.removed_temporaries;
        }
    }
    // A move renames the entry first and its state second; a crash between them leaves the
    // state behind. Deletion unlinks the entry first, leaving only a stale state file.
    for (area where : all_areas) {
        const int fd = ::openat(dir_fd(where), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR* listing = fd >= 0 ? ::fdopendir(fd) : nullptr;
        if (fd >= 0 && !listing)
            ::close(fd);
        std::vector<std::string> states;
        while (listing) {
            const dirent* item = ::readdir(listing);
            if (!item)
                break;
            const std::string_view name = item->d_name;
            if (name.size() > state_suffix.size() && name.ends_with(state_suffix))
                states.emplace_back(name);
        }
        if (listing)
            ::closedir(listing);
        for (const auto& name : states) {
            const std::string id = name.substr(0, name.size() - state_suffix.size());
            if (!is_valid_queue_id(id) || exists_in(dir_fd(where), id))
                continue;
            bool reunited = false;
            for (area other : all_areas) {
                if (other != where && exists_in(dir_fd(other), id) &&
                    ::renameat(dir_fd(where), name.c_str(), dir_fd(other), name.c_str()) == 0) {
                    reunited = true;
                    break;
                }
            }
            if (reunited)
                ++report.reunited_states;
            else if (::unlinkat(dir_fd(where), name.c_str(), 0) == 0)
                ++report.removed_orphan_states;
        }
    }
    return report;
}

void spool::set_aside(area where, const std::string& name, const char* kind) const
{
    std::string target = name;
    int error = rename_no_replace(dir_fd(where), name, dir_fd(area::corrupt), target);
    if (error == EEXIST || error == ENOTEMPTY) {
        target = name + "-" + std::to_string(::getpid()) + "-" + std::to_string(std::time(nullptr));
        error = rename_no_replace(dir_fd(where), name, dir_fd(area::corrupt), target);
    }
    log::warning(log::fields({{"event", "set-aside"},
                              {"area", to_string(where)},
                              {"name", printable(name)},
                              {"kind", kind},
                              {"moved-to", error == 0 ? "corrupt" : "nowhere"},
                              {"error", error == 0 ? "" : std::strerror(error)}}));
}

std::vector<std::string> spool::list(area where) const
{
    std::vector<std::string> ids;
    const int fd = ::openat(dir_fd(where), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* listing = fd >= 0 ? ::fdopendir(fd) : nullptr;
    if (!listing) {
        const int error = errno;
        if (fd >= 0)
            ::close(fd);
        throw_errno(error, "cannot list " + label(where, ""));
    }
    // Names to move aside are collected first: renaming while reading a directory may show
    // a name twice or not at all.
    std::vector<std::pair<std::string, const char*>> strays;
    for (;;) {
        errno = 0;
        const dirent* item = ::readdir(listing);
        if (!item)
            break;
        const std::string_view name = item->d_name;
        if (name == "." || name == "..")
            continue;
        unsigned char type = item->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st {};
            if (::fstatat(dir_fd(where), item->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue; // vanished
            type = static_cast<unsigned char>(IFTODT(st.st_mode));
        }
        const bool is_id = is_valid_queue_id(name);
        if (where == area::corrupt) { // the place for strays: shown, never moved
            if (is_id)
                ids.emplace_back(name);
            continue;
        }
        if (is_id && type == DT_REG) {
            ids.emplace_back(name);
            continue;
        }
        const bool is_state = name.size() > state_suffix.size() && name.ends_with(state_suffix) &&
                              is_valid_queue_id(name.substr(0, name.size() - state_suffix.size()));
        if (is_state && type == DT_REG)
            continue;
        strays.emplace_back(std::string(name),
                            is_id || is_state ? kind_of_dirent(type) : "name that is no queue id");
    }
    ::closedir(listing);
    for (const auto& [name, kind] : strays)
        set_aside(where, name, kind);
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::optional<area> spool::locate(std::string_view id) const
{
    check_id(id);
    const std::string name(id);
    for (int round = 0; round < 2; ++round) // an entry moving between areas: found the 2nd time
        for (area where : all_areas)
            if (exists_in(dir_fd(where), name))
                return where;
    return std::nullopt;
}

std::optional<entry_info> spool::info(area where, std::string_view id) const
{
    check_id(id);
    const std::string name(id);
    struct stat st {};
    if (::fstatat(dir_fd(where), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return std::nullopt;
    entry_info out;
    out.size = static_cast<std::uint64_t>(st.st_size);
    out.is_readable = S_ISREG(st.st_mode) && ::faccessat(dir_fd(where), name.c_str(), R_OK,
                                                         AT_EACCESS | AT_SYMLINK_NOFOLLOW) == 0;
    return out;
}

std::optional<envelope> spool::load(area where, std::string_view id) const
{
    check_id(id);
    const std::string path = label(where, id);
    fd_guard entry{open_readable(dir_fd(where), std::string(id))};
    if (entry.fd < 0) {
        if (errno == ENOENT)
            return std::nullopt;
        if (is_unreadable_error(errno))
            throw corrupt_entry(path + ": cannot open: " + std::strerror(errno));
        throw_errno(errno, "cannot open " + path);
    }
    const std::uint64_t size = regular_file_size(entry.fd, path);
    const std::uint64_t offset = read_envelope_offset(entry.fd, size, path);

    envelope env;
    const std::string state = label(where, state_name(id));
    fd_guard state_file{open_readable(dir_fd(where), state_name(id))};
    if (state_file.fd >= 0) {
        const std::uint64_t state_size = regular_file_size(state_file.fd, state);
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
    check_id(id);
    const std::string path = label(where, id);
    fd_guard entry{open_readable(dir_fd(where), std::string(id))};
    if (entry.fd < 0) {
        if (is_unreadable_error(errno))
            throw corrupt_entry(path + ": cannot open: " + std::strerror(errno));
        throw_errno(errno, "cannot open " + path);
    }
    const std::uint64_t size = regular_file_size(entry.fd, path);
    const std::uint64_t content_size = read_envelope_offset(entry.fd, size, path);
    return content_reader(entry.release(), content_size);
}

// A new temporary state file in tmp/ for the entry id, locked while it is written (recover()
// leaves locked files alone). It keeps the entry's owner, group and mode whoever writes it,
// so the spool's owner can always read back what an operator changed.
int spool::create_state_temporary(area where, const std::string& id, std::string& name) const
{
    static std::atomic<unsigned> counter{0};
    name = state_name(id) + "-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter.fetch_add(1));
    const std::string tmp_label = root_.string() + "/tmp/" + name;
    fd_guard file{
        ::openat(dirs_->tmp, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | no_follow, file_mode)};
    if (file.fd < 0)
        throw_errno(errno, "cannot create " + tmp_label);
    try {
        ::flock(file.fd, LOCK_EX);
        struct stat entry {};
        if (::geteuid() == 0 &&
            ::fstatat(dir_fd(where), id.c_str(), &entry, AT_SYMLINK_NOFOLLOW) == 0 &&
            ::fchown(file.fd, entry.st_uid, entry.st_gid) != 0)
            throw_errno(errno, "cannot chown " + tmp_label);
        if (::fchmod(file.fd, file_mode) != 0)
            throw_errno(errno, "cannot set the mode of " + tmp_label);
    } catch (...) {
        ::unlinkat(dirs_->tmp, name.c_str(), 0);
        throw;
    }
    return file.release();
}

// Makes the written temporary state file tmp/<name> the entry's state: fdatasync, rename
// over <area>/<id>.env, directory fsync. A crash leaves the old or the new state, never a
// torn one. None of these steps needs a new data block. Takes ownership of fd.
void spool::install_state(area where, const std::string& id, int fd, const std::string& name)
{
    fd_guard file{fd};
    const std::string tmp_label = root_.string() + "/tmp/" + name;
    if (::fdatasync(file.fd) != 0) {
        const int error = errno;
        ::unlinkat(dirs_->tmp, name.c_str(), 0);
        throw_errno(error, "cannot fsync " + tmp_label);
    }
    if (::renameat(dirs_->tmp, name.c_str(), dir_fd(where), state_name(id).c_str()) != 0) {
        const int error = errno;
        ::unlinkat(dirs_->tmp, name.c_str(), 0);
        throw_errno(error, "cannot rename " + tmp_label + " to " + label(where, state_name(id)));
    }
    syncer_for(where)->sync_after_change();
}

void spool::save_state(area where, const envelope& env)
{
    check_id(env.id);
    std::string name;
    const int fd = create_state_temporary(where, env.id, name);
    try {
        write_all(fd, freeze(env), root_.string() + "/tmp/" + name);
    } catch (...) {
        ::unlinkat(dirs_->tmp, name.c_str(), 0);
        ::close(fd);
        throw;
    }
    install_state(where, env.id, fd, name);
}

state_reservation spool::reserve_state(area where, const envelope& env)
{
    check_id(env.id);
    const std::size_t size = largest_state_size(env);
    std::string name;
    fd_guard file{create_state_temporary(where, env.id, name)};
    // Written, not fallocate()d: a write takes its blocks now (delayed allocation reserves
    // them), while filling an unwritten extent later may still need metadata blocks.
    const std::string padding(std::min<std::size_t>(size, write_buffer_size), ' ');
    try {
        for (std::size_t done = 0; done < size;) {
            const std::size_t n = std::min(padding.size(), size - done);
            write_all(file.fd, std::string_view(padding).substr(0, n),
                      root_.string() + "/tmp/" + name);
            done += n;
        }
    } catch (const std::system_error& e) {
        ::unlinkat(dirs_->tmp, name.c_str(), 0);
        throw std::system_error(e.code(), "cannot reserve " + std::to_string(size) + " octets in " +
                                              root_.string() + "/tmp to record the outcome of " +
                                              env.id);
    }
    return state_reservation(dirs_, std::move(name), file.release(), size);
}

void spool::save_state(area where, const envelope& env, state_reservation& room)
{
    check_id(env.id);
    const std::string text = freeze(env);
    if (!room.is_held() || text.size() > room.size()) {
        save_state(where, env);
        return;
    }
    const std::string name = room.name_;
    const int fd = std::exchange(room.fd_, -1);
    const std::string tmp_label = root_.string() + "/tmp/" + name;
    // Overwrites blocks the reservation already holds, then gives the rest back: no step
    // here allocates.
    try {
        for (std::size_t done = 0; done < text.size();) {
            const ssize_t n =
                ::pwrite(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw_errno(errno, "cannot write " + tmp_label);
            done += static_cast<std::size_t>(n);
        }
        if (::ftruncate(fd, static_cast<off_t>(text.size())) != 0)
            throw_errno(errno, "cannot truncate " + tmp_label);
    } catch (...) {
        ::unlinkat(dirs_->tmp, name.c_str(), 0);
        ::close(fd);
        throw;
    }
    install_state(where, env.id, fd, name);
}

bool spool::remove(area where, std::string_view id)
{
    check_id(id);
    // Entry first: a crash in between leaves a stale state file that recover() deletes,
    // never an entry whose recorded progress is lost. The directory is not fsynced: a removal
    // undone by a power cut means the message is sent again, which at-least-once allows.
    const std::string name(id);
    if (::unlinkat(dir_fd(where), name.c_str(), 0) != 0) {
        if (errno == ENOENT)
            return false;
        throw_errno(errno, "cannot remove " + label(where, id));
    }
    ::unlinkat(dir_fd(where), state_name(id).c_str(), 0);
    return true;
}

bool spool::move(std::string_view id, area from, area to)
{
    check_id(id);
    const std::string name(id);
    if (const int error = rename_no_replace(dir_fd(from), name, dir_fd(to), name); error != 0) {
        if (error == ENOENT)
            return false;
        throw_errno(error, "cannot move " + label(from, id) + " to " + label(to, id));
    }
    // Entry first, state second (see recover()).
    const std::string state = state_name(id);
    if (::renameat(dir_fd(from), state.c_str(), dir_fd(to), state.c_str()) != 0 && errno != ENOENT)
        throw_errno(errno, "cannot move " + label(from, state));
    syncer_for(to)->sync_after_change();
    syncer_for(from)->sync_after_change();
    return true;
}

bool spool::quarantine(area where, std::string_view id) noexcept
{
    try {
        if (where == area::corrupt)
            return true;
        check_id(id);
        const std::string name(id);
        if (rename_no_replace(dir_fd(where), name, dir_fd(area::corrupt), name) != 0)
            return false;
        const std::string state = state_name(id);
        ::renameat(dir_fd(where), state.c_str(), dir_fd(area::corrupt), state.c_str());
        syncer_for(area::corrupt)->sync_after_change();
        return true;
    } catch (...) {
        return false;
    }
}

std::optional<file_lock> spool::try_lock_entry(area where, std::string_view id) const
{
    check_id(id);
    fd_guard entry{open_readable(dir_fd(where), std::string(id))};
    if (entry.fd < 0 || ::flock(entry.fd, LOCK_EX | LOCK_NB) != 0)
        return std::nullopt;
    return file_lock(entry.release());
}

std::optional<file_lock> spool::lock_flush(std::chrono::milliseconds timeout) const
{
    const std::string path = root_.string() + "/" + flush_lock_name;
    // A lock needs no write access: opened read-only, without following a symlink and
    // without O_CREAT, a root run can neither create nor truncate a file elsewhere, and one
    // run as root cannot leave a lock its owner may not open again.
    fd_guard file{::openat(dirs_->root, flush_lock_name, O_RDONLY | no_follow)};
    if (file.fd < 0 && errno == ENOENT) {
        // A spool made before flush.lock was part of its set-up: make it, exclusively
        // (O_EXCL never follows a symlink).
        const int made =
            ::openat(dirs_->root, flush_lock_name, O_RDONLY | O_CREAT | O_EXCL | no_follow, 0600);
        if (made >= 0) {
            ::fchmod(made, file_mode);
            ::close(made);
        }
        file.fd = ::openat(dirs_->root, flush_lock_name, O_RDONLY | no_follow);
    }
    if (file.fd < 0) {
        if (errno == ELOOP)
            throw_errno(ELOOP, "cannot open " + path + " (a symlink: refusing to follow it)");
        throw_errno(errno, "cannot open " + path);
    }
    struct stat st {};
    if (::fstat(file.fd, &st) != 0)
        throw_errno(errno, "cannot stat " + path);
    if (!S_ISREG(st.st_mode))
        throw_errno(EINVAL,
                    "cannot use " + path + " (a " + kind_of(st.st_mode) + ", not a regular file)");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (::flock(file.fd, LOCK_EX | LOCK_NB) == 0)
            return file_lock(file.release());
        if (errno != EWOULDBLOCK && errno != EINTR)
            throw_errno(errno, "cannot lock " + path);
        if (std::chrono::steady_clock::now() >= deadline)
            return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

std::optional<file_lock> spool::try_lock_watcher() const
{
    const fs::path path = root_ / "watch.lock";
    fd_guard file{::openat(dirs_->root, "watch.lock", O_RDONLY | O_CREAT | no_follow, file_mode)};
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
    fd_guard file{::openat(dirs_->root, "watch.lock", O_RDONLY | no_follow)};
    if (file.fd < 0)
        return false; // never started here, or not ours to read: nobody to talk to
    // A shared lock succeeds only when no watcher holds the exclusive one.
    if (::flock(file.fd, LOCK_SH | LOCK_NB) == 0)
        return false;
    return errno == EWOULDBLOCK;
}

void spool::remove_watcher_socket() const noexcept
{
    struct stat st {};
    // Only a socket is removed: anything else planted under that name stays for the operator.
    if (::fstatat(dirs_->root, "watch.sock", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode))
        ::unlinkat(dirs_->root, "watch.sock", 0);
}

int spool::listen_watcher_socket() const
{
    const fs::path path = root_ / "watch.sock";
    const sockaddr_un address = detail::unix_address(path.string());
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
    const sockaddr_un address = detail::unix_address((root_ / "watch.sock").string());
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
    const fs::path path = root_ / std::string(to_string(where));
    // IN_DONT_FOLLOW: an area replaced by a symlink is not followed elsewhere.
    const int wd = ::inotify_add_watch(inotify_fd, path.c_str(),
                                       IN_MOVED_TO | IN_CREATE | IN_ONLYDIR | IN_DONT_FOLLOW);
    if (wd < 0)
        throw_errno(errno, "cannot watch " + path.string());
    return wd;
}

// ------------------------------------------------------------------------------- status

namespace {

constexpr const char* flush_status_name = "flush.status";
constexpr const char* watch_status_name = "watch.status";

} // namespace

void spool::write_status_file(const char* name, const std::string& text) const
{
    static std::atomic<unsigned> counter{0};
    const std::string tmp_name = std::string(name) + "-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(counter.fetch_add(1));
    const std::string tmp_label = root_.string() + "/tmp/" + tmp_name;
    const std::string path = root_.string() + "/" + name;
    {
        fd_guard file{::openat(dirs_->tmp, tmp_name.c_str(),
                               O_WRONLY | O_CREAT | O_EXCL | no_follow, file_mode)};
        if (file.fd < 0)
            throw_errno(errno, "cannot create " + tmp_label);
        try {
            ::flock(file.fd, LOCK_EX); // recover() leaves files alone while a writer holds them
            if (::fchmod(file.fd, file_mode) != 0)
                throw_errno(errno, "cannot set the mode of " + tmp_label);
            write_all(file.fd, text, tmp_label);
            // The data reaches the disk before the name does: after a crash the status is
            // the old one or the new one, never an empty file. The directory is not synced:
            // a status lost to a power cut is written again by the next flush.
            if (::fdatasync(file.fd) != 0)
                throw_errno(errno, "cannot fsync " + tmp_label);
        } catch (...) {
            ::unlinkat(dirs_->tmp, tmp_name.c_str(), 0);
            throw;
        }
    }
    // renameat replaces whatever has the name, a symlink included, without following it.
    if (::renameat(dirs_->tmp, tmp_name.c_str(), dirs_->root, name) != 0) {
        const int error = errno;
        ::unlinkat(dirs_->tmp, tmp_name.c_str(), 0);
        throw_errno(error, "cannot rename " + tmp_label + " to " + path);
    }
}

std::optional<std::string> spool::read_status_file(const char* name, std::string& problem) const
{
    const std::string path = root_.string() + "/" + name;
    fd_guard file{::openat(dirs_->root, name, O_RDONLY | no_follow)};
    if (file.fd < 0) {
        if (errno == ENOENT)
            return std::nullopt;
        problem = path + ": " +
                  (errno == ELOOP ? std::string("a symlink, not followed")
                                  : "cannot open: " + std::string(std::strerror(errno)));
        return std::nullopt;
    }
    struct stat st {};
    if (::fstat(file.fd, &st) != 0) {
        problem = path + ": cannot stat: " + std::strerror(errno);
        return std::nullopt;
    }
    if (!S_ISREG(st.st_mode)) {
        problem = path + ": a " + kind_of(st.st_mode) + ", not a regular file";
        return std::nullopt;
    }
    if (static_cast<std::uint64_t>(st.st_size) > max_status_size) {
        problem = path + ": too large (" + std::to_string(st.st_size) + " octets, at most " +
                  std::to_string(max_status_size) + ")";
        return std::nullopt;
    }
    try {
        // The size is read again, bounded, in case the file grew since fstat.
        std::string text;
        char block[4096];
        for (;;) {
            const ssize_t n = ::read(file.fd, block, sizeof block);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw_errno(errno, "cannot read " + path);
            if (n == 0)
                break;
            text.append(block, static_cast<std::size_t>(n));
            if (text.size() > max_status_size) {
                problem = path + ": too large (grew while read)";
                return std::nullopt;
            }
        }
        return text;
    } catch (const std::system_error& e) {
        problem = e.what();
        return std::nullopt;
    }
}

void spool::save_flush_status(const flush_record& record) const
{
    write_status_file(flush_status_name, encode_flush_record(record));
}

void spool::save_watch_status(const watch_record& record) const
{
    write_status_file(watch_status_name, encode_watch_record(record));
}

namespace {

template <class record, class decoder>
status_read<record> decode_status(std::optional<std::string> text, std::string problem,
                                  const std::string& path, decoder decode)
{
    if (!text)
        return {std::nullopt, std::move(problem)};
    auto result = decode(*text);
    if (!result.problem.empty())
        result.problem = path + ": " + result.problem;
    return result;
}

} // namespace

status_read<flush_record> spool::load_flush_status() const
{
    std::string problem;
    auto text = read_status_file(flush_status_name, problem);
    return decode_status<flush_record>(std::move(text), std::move(problem),
                                       root_.string() + "/" + flush_status_name,
                                       decode_flush_record);
}

status_read<watch_record> spool::load_watch_status() const
{
    std::string problem;
    auto text = read_status_file(watch_status_name, problem);
    return decode_status<watch_record>(std::move(text), std::move(problem),
                                       root_.string() + "/" + watch_status_name,
                                       decode_watch_record);
}

std::uint64_t spool::free_bytes() const
{
    struct statvfs st {};
    if (::fstatvfs(dirs_->root, &st) != 0)
        throw_errno(errno, "cannot statvfs " + root_.string());
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

} // namespace leafmail::spool
