#include "leafmail/spool/journal.hpp"

#include "leafmail/log.hpp"
#include "leafmail/spool/queue_id.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace leafmail::spool {

namespace {

std::uint64_t get_le(std::string_view in, std::size_t at, int octets)
{
    std::uint64_t value = 0;
    for (int i = octets - 1; i >= 0; --i)
        value = (value << 8) | static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)]);
    return value;
}

} // namespace

namespace journal_format {

namespace {

constexpr std::array<std::uint32_t, 256> make_crc32c_table()
{
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1U) != 0 ? 0x82F63B78U ^ (c >> 1) : c >> 1; // reflected Castagnoli
        table[i] = c;
    }
    return table;
}
constexpr auto crc32c_table = make_crc32c_table();

void put_le(std::string& out, std::uint64_t value, int octets)
{
    for (int i = 0; i < octets; ++i)
        out += static_cast<char>((value >> (8 * i)) & 0xFFU);
}

// The CRC covers the sequence number, the length and the payload: a record moved, cut or
// left over from an older use of the segment never checks out as another one.
std::uint32_t record_crc(std::string_view sequence_and_length, std::string_view payload)
{
    return crc32c(payload, crc32c(sequence_and_length));
}

} // namespace

std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc)
{
    crc = ~crc;
    for (const char c : bytes)
        crc = crc32c_table[(crc ^ static_cast<unsigned char>(c)) & 0xFFU] ^ (crc >> 8);
    return ~crc;
}

std::size_t record_size(std::size_t entry_size)
{
    return header_size + id_size + entry_size;
}

std::string encode_record(std::uint64_t sequence, std::string_view id, std::string_view entry)
{
    if (id.size() != id_size)
        throw std::invalid_argument("journal record: not a queue id");
    std::string record;
    record.reserve(record_size(entry.size()));
    record.append(record_magic);
    put_le(record, sequence, 8);
    put_le(record, id_size + entry.size(), 4);
    const std::string_view counted(record.data() + record_magic.size(), 12);
    const std::uint32_t crc = crc32c(entry, crc32c(id, crc32c(counted)));
    put_le(record, crc, 4);
    record.append(id);
    record.append(entry);
    return record;
}

std::vector<record_view> read_segment(std::string_view image)
{
    std::vector<record_view> records;
    std::uint64_t offset = 0;
    while (image.size() - offset >= header_size) {
        const std::string_view header = image.substr(offset, header_size);
        if (header.substr(0, record_magic.size()) != record_magic)
            break;
        const std::uint64_t sequence = get_le(header, 8, 8);
        const std::uint64_t length = get_le(header, 16, 4);
        const auto crc = static_cast<std::uint32_t>(get_le(header, 20, 4));
        if (length < id_size || length > image.size() - offset - header_size)
            break; // torn: the record runs past what was written
        if (!records.empty() && sequence != records.back().sequence + 1)
            break; // an older use of the segment
        const std::string_view payload = image.substr(offset + header_size, length);
        if (record_crc(header.substr(8, 12), payload) != crc)
            break; // torn or corrupt
        record_view record;
        record.sequence = sequence;
        record.offset = offset;
        record.id = payload.substr(0, id_size);
        record.entry = payload.substr(id_size);
        records.push_back(record);
        offset += header_size + length;
    }
    return records;
}

std::string encode_checkpoint(std::uint64_t sequence)
{
    char text[64];
    const int n = std::snprintf(text, sizeof text, "%s%020llu", checkpoint_magic.data(),
                                static_cast<unsigned long long>(sequence));
    std::string slot(text, static_cast<std::size_t>(n));
    char crc[16];
    std::snprintf(crc, sizeof crc, " %08x\n", crc32c(slot));
    slot += crc;
    slot.resize(checkpoint_slot_size, '\0');
    return slot;
}

std::optional<std::uint64_t> decode_checkpoint(std::string_view slot)
{
    constexpr std::size_t digits = 20;
    const std::size_t text_size = checkpoint_magic.size() + digits;
    if (slot.size() < text_size + 10 || slot.substr(0, checkpoint_magic.size()) != checkpoint_magic)
        return std::nullopt;
    char crc[16];
    std::snprintf(crc, sizeof crc, " %08x\n", crc32c(slot.substr(0, text_size)));
    if (slot.substr(text_size, 10) != crc)
        return std::nullopt;
    std::uint64_t sequence = 0;
    const char* first = slot.data() + checkpoint_magic.size();
    const auto [end, error] = std::from_chars(first, first + digits, sequence);
    if (error != std::errc{} || end != first + digits)
        return std::nullopt;
    return sequence;
}

} // namespace journal_format

namespace {

namespace jf = journal_format;

constexpr const char* checkpoint_name = "checkpoint";
constexpr mode_t file_mode = 0640;
constexpr int no_follow = O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
// How long a commit waits for the checkpointer to free the next segment before it gives up
// with a 451 (the checkpointer is stuck on a broken or full disk).
constexpr auto segment_wait = std::chrono::seconds(10);

[[noreturn]] void throw_errno(int error, const std::string& what)
{
    throw std::system_error(error, std::generic_category(), what);
}

int pwrite_all(int fd, std::string_view bytes, std::uint64_t offset)
{
    while (!bytes.empty()) {
        const ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
        offset += static_cast<std::uint64_t>(n);
    }
    return 0;
}

std::string pread_all(int fd, std::uint64_t offset, std::size_t size)
{
    std::string out(size, '\0');
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n =
            ::pread(fd, out.data() + done, size - done, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += static_cast<std::size_t>(n);
    }
    out.resize(done);
    return out;
}

std::uint64_t file_size(int fd, const std::string& label)
{
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        throw_errno(errno, "cannot stat " + label);
    if (!S_ISREG(st.st_mode))
        throw_errno(EINVAL, "cannot use " + label + " (not a regular file)");
    return static_cast<std::uint64_t>(st.st_size);
}

// Opens (creating) one journal file and makes sure it has at least `size` octets written
// (zeros), so that later overwrites change no metadata and fdatasync flushes data alone.
// Blocks that fallocate() merely reserves would still need a metadata commit when first
// written ("unwritten extents"): they are written here, once.
// Without `create`, a missing file is -1 and an existing one is used as it is.
int open_preallocated(int dir_fd, const std::string& name, std::uint64_t size,
                      const std::string& label, bool create, bool& grew,
                      std::vector<std::string>& made)
{
    int fd = -1;
    if (create) {
        fd = ::openat(dir_fd, name.c_str(), O_RDWR | O_CREAT | O_EXCL | no_follow, file_mode);
        if (fd >= 0)
            made.push_back(name);
    }
    if (fd < 0 && (!create || errno == EEXIST))
        fd = ::openat(dir_fd, name.c_str(), O_RDWR | no_follow);
    if (fd < 0) {
        if (!create && errno == ENOENT)
            return -1;
        throw_errno(errno, "cannot open " + label);
    }
    try {
        std::uint64_t have = file_size(fd, label);
        if (create && have < size) {
            ::fchmod(fd, file_mode);
            const std::string zeros(64 * 1024, '\0');
            while (have < size) {
                const auto n =
                    static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), size - have));
                if (const int error = pwrite_all(fd, std::string_view(zeros).substr(0, n), have);
                    error != 0)
                    throw_errno(error, "cannot preallocate " + label);
                have += n;
            }
            if (::fsync(fd) != 0)
                throw_errno(errno, "cannot fsync " + label);
            grew = true;
        }
    } catch (...) {
        ::close(fd);
        throw;
    }
    return fd;
}

} // namespace

journal::journal(int dir_fd, int lock_fd, std::vector<int> segment_fds, std::string label,
                 journal_options options)
    : dir_fd_(dir_fd), lock_fd_(lock_fd), segment_fds_(std::move(segment_fds)),
      label_(std::move(label)), options_(options), segment_last_(segment_fds_.size(), 0)
{
}

std::unique_ptr<journal> journal::open(int dir_fd, const std::string& label,
                                       const journal_options& requested, bool create)
{
    journal_options options = requested;
    options.segment_count = std::max<std::size_t>(options.segment_count, 2);
    // A record always fits in one segment.
    options.max_entry_size =
        std::min(options.max_entry_size, options.segment_size - jf::record_size(0));

    const int own_dir = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    if (own_dir < 0)
        throw_errno(errno, "cannot open " + label);
    std::vector<int> fds;
    std::vector<std::string> made;
    int lock_fd = -1;
    auto close_all = [&] {
        for (int fd : fds)
            ::close(fd);
        if (lock_fd >= 0)
            ::close(lock_fd);
        ::close(own_dir);
    };
    try {
        if (create) {
            // The journal never takes the last of the disk: it is made only where twice its
            // size is free, and what a failed attempt made is removed again.
            struct statvfs st {};
            const std::uint64_t needed = options.segment_count * options.segment_size +
                                         jf::checkpoint_slot_size * jf::checkpoint_slots;
            if (::fstatvfs(own_dir, &st) == 0 &&
                static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize < 2 * needed &&
                ::faccessat(own_dir, "segment-0", F_OK, AT_SYMLINK_NOFOLLOW) != 0)
                throw_errno(ENOSPC, "cannot preallocate " + label + " (" +
                                        std::to_string(needed / 1024) +
                                        " KiB, less than twice "
                                        "that free)");
        }
        bool grew = false;
        lock_fd = open_preallocated(own_dir, checkpoint_name,
                                    jf::checkpoint_slot_size * jf::checkpoint_slots,
                                    label + "/" + checkpoint_name, create, grew, made);
        if (lock_fd < 0) {
            close_all();
            return nullptr; // never made: nothing to replay
        }
        if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno != EWOULDBLOCK)
                throw_errno(errno, "cannot lock " + label + "/" + checkpoint_name);
            close_all();
            return nullptr; // another process journals into this spool
        }
        for (std::size_t i = 0; i < options.segment_count; ++i) {
            const std::string name = "segment-" + std::to_string(i);
            const int fd = open_preallocated(own_dir, name, options.segment_size,
                                             label + "/" + name, create, grew, made);
            if (fd >= 0)
                fds.push_back(fd);
        }
        if (grew && ::fsync(own_dir) != 0) // the new names, once
            throw_errno(errno, "cannot fsync " + label);
    } catch (...) {
        for (const auto& name : made)
            ::unlinkat(own_dir, name.c_str(), 0);
        close_all();
        throw;
    }
    std::unique_ptr<journal> j(new journal(own_dir, lock_fd, std::move(fds), label, options));
    // The newest valid slot is the checkpoint; the other one is written next, so a torn
    // checkpoint write never destroys the last good one.
    for (unsigned slot = 0; slot < jf::checkpoint_slots; ++slot) {
        const auto value = jf::decode_checkpoint(
            pread_all(lock_fd, slot * jf::checkpoint_slot_size, jf::checkpoint_slot_size));
        if (value && *value >= j->checkpointed_) {
            j->checkpointed_ = *value;
            j->checkpoint_slot_ = (slot + 1) % jf::checkpoint_slots;
        }
    }
    j->next_sequence_ = j->checkpointed_ + 1;
    return j;
}

journal::~journal()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    checkpointer_.notify_all();
    if (thread_.joinable())
        thread_.join();
    for (int fd : segment_fds_)
        ::close(fd);
    ::close(lock_fd_);
    ::close(dir_fd_);
}

std::string journal::segment_label(std::size_t segment) const
{
    return label_ + "/segment-" + std::to_string(segment);
}

bool journal::is_usable() const
{
    std::lock_guard lock(mutex_);
    return usable_;
}

std::uint64_t journal::last_sequence() const
{
    std::lock_guard lock(mutex_);
    return next_sequence_ - 1;
}

std::vector<journal_record_location> journal::records_after_checkpoint()
{
    std::vector<journal_record_location> found;
    std::lock_guard lock(mutex_);
    for (std::size_t segment = 0; segment < segment_fds_.size(); ++segment) {
        const int fd = segment_fds_[segment];
        const std::uint64_t size = file_size(fd, segment_label(segment));
        // Record by record, as read_segment() walks an image, so that memory stays bounded by
        // one record, not a segment (the daemon's peak memory starts here).
        std::uint64_t offset = 0;
        std::optional<std::uint64_t> previous;
        while (size - offset >= jf::header_size) {
            const std::string header = pread_all(fd, offset, jf::header_size);
            const std::uint64_t length =
                header.size() == jf::header_size ? get_le(header, 16, 4) : 0;
            if (length < jf::id_size || length > size - offset - jf::header_size)
                break;
            // read_segment's records are views into this image: it outlives them.
            const std::string image =
                header + pread_all(fd, offset + jf::header_size, static_cast<std::size_t>(length));
            const auto records = jf::read_segment(image);
            if (records.size() != 1 || (previous && records[0].sequence != *previous + 1))
                break;
            const std::uint64_t sequence = records[0].sequence;
            segment_last_[segment] = std::max(segment_last_[segment], sequence);
            next_sequence_ = std::max(next_sequence_, sequence + 1);
            if (sequence > checkpointed_)
                found.push_back({sequence, segment, offset});
            previous = sequence;
            offset += jf::header_size + length;
        }
    }
    std::sort(found.begin(), found.end(),
              [](const auto& a, const auto& b) { return a.sequence < b.sequence; });
    return found;
}

std::optional<std::pair<std::string, std::string>>
journal::read_record(const journal_record_location& where)
{
    const int fd = segment_fds_.at(where.segment);
    const std::string header = pread_all(fd, where.offset, jf::header_size);
    if (header.size() < jf::header_size)
        return std::nullopt;
    const std::uint64_t length = get_le(header, 16, 4);
    if (length > options_.segment_size)
        return std::nullopt;
    const std::string image =
        header + pread_all(fd, where.offset + jf::header_size, static_cast<std::size_t>(length));
    const auto records = jf::read_segment(image);
    if (records.size() != 1 || records.front().sequence != where.sequence)
        return std::nullopt;
    return std::pair{std::string(records.front().id), std::string(records.front().entry)};
}

void journal::checkpoint_through(std::uint64_t sequence)
{
    // Every entry renamed into an area so far reaches the disk, with its name, before the
    // checkpoint says its record is no longer needed.
    if (::syncfs(dir_fd_) != 0)
        throw_errno(errno, "cannot syncfs " + label_);
    write_checkpoint(sequence);
    std::lock_guard lock(mutex_);
    checkpointed_ = std::max(checkpointed_, sequence);
    next_sequence_ = std::max(next_sequence_, sequence + 1);
    changed_.notify_all();
}

void journal::write_checkpoint(std::uint64_t sequence)
{
    const std::string slot = jf::encode_checkpoint(sequence);
    const std::string where = label_ + "/" + checkpoint_name;
    if (const int error = pwrite_all(lock_fd_, slot, checkpoint_slot_ * jf::checkpoint_slot_size);
        error != 0)
        throw_errno(error, "cannot write " + where);
    if (::fdatasync(lock_fd_) != 0)
        throw_errno(errno, "cannot fsync " + where);
    checkpoint_slot_ = (checkpoint_slot_ + 1) % jf::checkpoint_slots;
}

void journal::start()
{
    thread_ = std::thread([this] { run_checkpointer(); });
}

void journal::run_checkpointer()
{
    std::unique_lock lock(mutex_);
    for (;;) {
        checkpointer_.wait_for(lock, std::chrono::milliseconds(options_.checkpoint_interval_ms),
                               [this] { return stopping_ || checkpoint_wanted_; });
        checkpoint_wanted_ = false;
        const bool stop = stopping_;
        lock.unlock();
        try {
            checkpoint_once();
        } catch (const std::system_error& e) {
            // The records stay in the journal and are checkpointed on a later round; commits
            // wait (then fail with 451) only when no segment can be freed meanwhile.
            log::error(log::fields({{"event", "journal-checkpoint-failed"}, {"error", e.what()}}));
        }
        lock.lock();
        if (stop)
            return;
    }
}

bool journal::checkpoint_once()
{
    std::uint64_t target = 0;
    {
        std::lock_guard lock(mutex_);
        target = in_flight_.empty() ? next_sequence_ - 1 : *in_flight_.begin() - 1;
        if (target <= checkpointed_)
            return false;
    }
    checkpoint_through(target);
    return true;
}

int journal::write_batch(const std::vector<chunk>& batch)
{
    std::vector<std::size_t> touched;
    for (const auto& c : batch) {
        if (const int error = pwrite_all(segment_fds_[c.segment], c.bytes, c.offset); error != 0)
            return error;
        if (std::find(touched.begin(), touched.end(), c.segment) == touched.end())
            touched.push_back(c.segment);
    }
    // The one flush of the group commit: the segments are preallocated and overwritten in
    // place, so this is a data-only flush (no inode, no block allocation, no name).
    for (std::size_t segment : touched)
        if (::fdatasync(segment_fds_[segment]) != 0)
            return errno;
    return 0;
}

void journal::fail_pending_locked(std::uint64_t through)
{
    failed_through_ = std::max(failed_through_, through);
    // Given up: the checkpoint may pass them, so they are never replayed once it has.
    for (auto it = in_flight_.begin(); it != in_flight_.end();)
        it = *it > durable_ && *it <= through ? in_flight_.erase(it) : std::next(it);
    checkpoint_wanted_ = true;
    checkpointer_.notify_all();
    changed_.notify_all();
}

std::uint64_t journal::commit(std::string_view id, std::string_view entry)
{
    const std::size_t size = jf::record_size(entry.size());
    if (entry.size() > options_.max_entry_size)
        throw std::length_error("journal: entry larger than max_entry_size");
    std::unique_lock lock(mutex_);
    if (!usable_)
        throw_errno(EIO, "cannot append to " + label_ + " (an earlier flush failed)");
    while (offset_ + size > options_.segment_size) {
        // The next segment is overwritten only once the checkpoint has passed all its records.
        const std::size_t seen = segment_;
        const std::size_t next = (seen + 1) % segment_fds_.size();
        if (segment_last_[next] <= checkpointed_) {
            segment_ = next;
            offset_ = 0;
            // Ask for the checkpoint that frees the segment after this one, ahead of need.
            checkpoint_wanted_ = true;
            checkpointer_.notify_all();
            break;
        }
        checkpoint_wanted_ = true;
        checkpointer_.notify_all();
        if (!changed_.wait_for(lock, segment_wait, [&] {
                return segment_last_[next] <= checkpointed_ || !usable_ || segment_ != seen;
            }))
            throw_errno(EAGAIN, "cannot append to " + label_ + " (no segment freed in time)");
        if (!usable_)
            throw_errno(EIO, "cannot append to " + label_ + " (an earlier flush failed)");
    }
    const std::uint64_t sequence = next_sequence_++;
    std::string record = jf::encode_record(sequence, id, entry);
    if (pending_.empty() || pending_.back().segment != segment_)
        pending_.push_back({segment_, offset_, {}});
    pending_.back().bytes += record;
    offset_ += size;
    segment_last_[segment_] = sequence;
    in_flight_.insert(sequence);

    // Group commit: whoever finds no flush running writes everything pending and flushes it
    // once; the others wait for a flush that covers their record.
    while (durable_ < sequence) {
        if (sequence <= failed_through_)
            throw_errno(EIO, "cannot fsync " + label_ + " (the journal flush failed)");
        if (writing_) {
            changed_.wait(lock);
            continue;
        }
        if (!usable_) {
            fail_pending_locked(next_sequence_ - 1);
            pending_.clear();
            continue;
        }
        writing_ = true;
        std::vector<chunk> batch = std::move(pending_);
        pending_.clear();
        const std::uint64_t covers = next_sequence_ - 1;
        lock.unlock();
        const int error = write_batch(batch);
        if (error != 0) {
            // Not known to be durable, so the clients hear 451; blank the records (best
            // effort) so that a replay cannot bring back what was refused.
            for (auto& c : batch) {
                std::fill(c.bytes.begin(), c.bytes.end(), '\0');
                pwrite_all(segment_fds_[c.segment], c.bytes, c.offset);
                ::fdatasync(segment_fds_[c.segment]);
            }
            log::error(log::fields({{"event", "journal-disabled"},
                                    {"journal", label_},
                                    {"error", std::strerror(error)}}));
        }
        lock.lock();
        writing_ = false;
        if (error != 0) {
            usable_ = false;
            fail_pending_locked(covers);
        } else {
            durable_ = std::max(durable_, covers);
        }
        changed_.notify_all();
    }
    return sequence;
}

void journal::materialised(std::uint64_t sequence)
{
    std::lock_guard lock(mutex_);
    in_flight_.erase(sequence);
}

} // namespace leafmail::spool
