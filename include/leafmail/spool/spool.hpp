#pragma once
// The spool directory: durable commit of new entries, listing, thawing, state updates and
// moves between areas. Knows nothing of sockets or SMTP. Several processes may use one spool
// at once; a reader never sees half an entry because entries appear only by rename.
// Layout and guarantees: spool-format/README.md.
#include "leafmail/spool/envelope.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::spool {

/// Where an entry lives. The directory names are the to_string() values.
enum class area { queue, hold, failed, corrupt };
[[nodiscard]] std::string_view to_string(area where);
[[nodiscard]] std::optional<area> area_from_string(std::string_view name);
inline constexpr area all_areas[] = {area::queue, area::hold, area::failed, area::corrupt};

/// An entry that exists but cannot be read as one (truncated, garbage, future version).
class corrupt_entry : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class directory_syncer; // group commit of directory fsyncs, shared by the writers of a spool

/// Streams one new entry into tmp/ and commits it. Destroying an uncommitted writer removes
/// its temporary file, so a failed or refused message leaves nothing behind.
class entry_writer {
public:
    entry_writer(entry_writer&&) noexcept;
    entry_writer& operator=(entry_writer&&) noexcept;
    ~entry_writer();

    [[nodiscard]] const std::string& id() const { return id_; }
    [[nodiscard]] std::uint64_t content_size() const { return content_size_; }
    [[nodiscard]] bool content_has_8bit() const { return has_8bit_; }

    /// Appends content (buffered). Throws std::system_error (ENOSPC, EFBIG, EIO...).
    void write(std::string_view bytes);
    /// Appends the envelope, fsyncs the file, renames it into queue/ and waits for the
    /// directory fsync (shared with concurrent commits). Blocking: keep it off event loops.
    /// Fills in env.id, env.content_size, env.body_8bit and (when 0) env.queued_at.
    /// Throws std::system_error; on failure nothing is left in queue/ or tmp/.
    void commit(envelope env);
    /// Drops the temporary file. Safe to call more than once.
    void abort() noexcept;

private:
    friend class spool;
    entry_writer(std::filesystem::path tmp_dir, std::filesystem::path queue_dir, std::string id,
                 int fd, std::shared_ptr<directory_syncer> syncer);
    void flush_buffer();

    std::filesystem::path tmp_path_;
    std::filesystem::path final_path_;
    std::string id_;
    int fd_ = -1;
    std::shared_ptr<directory_syncer> syncer_;
    std::string buffer_;
    std::uint64_t content_size_ = 0;
    bool has_8bit_ = false;
};

/// Sequential reader of an entry's content (never its envelope).
class content_reader {
public:
    content_reader(content_reader&&) noexcept;
    content_reader& operator=(content_reader&&) noexcept;
    ~content_reader();
    [[nodiscard]] std::uint64_t size() const { return size_; }
    /// Reads up to max bytes; returns an empty string at the end of the content.
    [[nodiscard]] std::string read(std::size_t max);
    /// Back to the first octet (a message sent again in another transaction).
    void rewind() { offset_ = 0; }

private:
    friend class spool;
    content_reader(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
    int fd_ = -1;
    std::uint64_t size_ = 0;
    std::uint64_t offset_ = 0;
};

/// An flock() held on a file; released when destroyed.
class file_lock {
public:
    file_lock(file_lock&&) noexcept;
    file_lock& operator=(file_lock&&) noexcept;
    ~file_lock();

private:
    friend class spool;
    explicit file_lock(int fd) : fd_(fd) {}
    int fd_ = -1;
};

struct recovery_report {
    std::size_t removed_temporaries = 0; // interrupted writes found in tmp/
    std::size_t removed_orphan_states = 0;
    std::size_t reunited_states = 0; // state files moved after their entry
};

class spool {
public:
    /// Opens the spool at root, creating the directory tree when create is true.
    /// Throws std::system_error naming the path.
    explicit spool(std::filesystem::path root, bool create = true);
    ~spool();
    spool(const spool&) = delete;
    spool& operator=(const spool&) = delete;

    [[nodiscard]] const std::filesystem::path& root() const { return root_; }

    /// Cleans what crashed writers and movers left (a writer still running holds a lock on
    /// its temporary file and is left alone). Call at the start of a daemon or flush.
    recovery_report recover();

    /// Starts a new entry with a fresh id. Throws std::system_error.
    [[nodiscard]] entry_writer create_entry();

    /// Valid entry ids in an area, oldest first. Other file names are ignored.
    [[nodiscard]] std::vector<std::string> list(area where) const;
    /// The entry's current envelope (its state file when one exists), or nullopt when the
    /// entry vanished meanwhile. Throws corrupt_entry or std::system_error.
    [[nodiscard]] std::optional<envelope> load(area where, std::string_view id) const;
    /// Throws corrupt_entry or std::system_error (ENOENT when the entry vanished).
    [[nodiscard]] content_reader open_content(area where, std::string_view id) const;

    /// Durably records a new envelope for an existing entry without touching its content.
    void save_state(area where, const envelope& env);
    /// Removes an entry for good (delivered, or deleted by the operator). False if absent.
    bool remove(area where, std::string_view id);
    /// Moves an entry with its state between areas. False if it is not in `from`.
    bool move(std::string_view id, area from, area to);
    /// Moves an unreadable entry to corrupt/; never throws. Returns false if it vanished.
    bool quarantine(area where, std::string_view id) noexcept;

    /// Exclusive lock on one entry (held by the relay while it sends the entry, and by the
    /// operator tools while they change it). nullopt when busy or absent.
    [[nodiscard]] std::optional<file_lock> try_lock_entry(area where, std::string_view id) const;
    /// The spool-wide flush lock: one flush at a time. Waits up to timeout; nullopt if busy.
    [[nodiscard]] std::optional<file_lock> lock_flush(std::chrono::milliseconds timeout) const;

    /// The watcher's single-instance lock (`<spool>/watch.lock`, held by a running
    /// `leafmail-flush --watch`): nullopt when another watcher holds it. Throws system_error.
    [[nodiscard]] std::optional<file_lock> try_lock_watcher() const;
    /// True when a watcher holds that lock. Never creates anything.
    [[nodiscard]] bool is_watcher_running() const;
    /// Binds the unix socket a watcher listens on for kicks (`<spool>/watch.sock`, mode
    /// 0660), replacing a stale socket left by a dead watcher; call only while holding
    /// try_lock_watcher(). Returns a listening SOCK_STREAM descriptor. Throws system_error.
    [[nodiscard]] int listen_watcher_socket() const;
    /// Connects to a running watcher's socket: the descriptor, or -1 with errno set (ENOENT,
    /// ECONNREFUSED: no watcher listens).
    [[nodiscard]] int connect_watcher_socket() const;
    /// Removes the watcher's socket when the watcher ends (never anything but a socket).
    void remove_watcher_socket() const noexcept;
    /// Adds an inotify(7) watch for entries arriving in an area (renamed or created there);
    /// returns the watch descriptor. Throws std::system_error.
    int watch_area(int inotify_fd, area where) const;

    /// Bytes available to unprivileged writers on the spool's filesystem.
    [[nodiscard]] std::uint64_t free_bytes() const;

    [[nodiscard]] std::filesystem::path entry_path(area where, std::string_view id) const;
    [[nodiscard]] std::filesystem::path state_path(area where, std::string_view id) const;

private:
    std::filesystem::path dir(area where) const;
    std::string entry_file(area where, std::string_view id) const;
    std::string state_file(area where, std::string_view id) const;
    std::shared_ptr<directory_syncer> syncer_for(area where) const;

    std::filesystem::path root_;
    std::vector<std::shared_ptr<directory_syncer>> syncers_; // one per area
    std::vector<std::string> area_prefixes_;                 // "<root>/<area>/", per area
};

} // namespace leafmail::spool
