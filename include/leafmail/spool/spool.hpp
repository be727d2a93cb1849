#pragma once
// The spool directory: durable commit of new entries, listing, thawing, state updates and
// moves between areas. Knows nothing of sockets or SMTP. Several processes may use one spool
// at once; a reader never sees half an entry because entries appear only by rename.
// The only code that touches spool files: every operation is relative to directory
// descriptors opened once, never follows a symlink and never blocks on a FIFO, so whoever
// owns the spool cannot steer its users (root included) outside it.
// Layout and guarantees: spool-format/README.md.
#include "leafmail/spool/envelope.hpp"
#include "leafmail/spool/journal.hpp"
#include "leafmail/spool/status.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
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

class directory_syncer;   // group commit of directory fsyncs, shared by the writers of a spool
struct handover_target;   // where the injector offers its entries (handover.hpp)
struct spool_directories; // the descriptors of the spool's directories, opened once

/// The spool is missing (and was not to be created): names the path and what creates it.
class missing_spool : public std::system_error {
public:
    explicit missing_spool(const std::filesystem::path& root);
};

/// The spool (or part of it) belongs to someone else than the account meant to own it.
class foreign_spool : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// What the operator tools may know of an entry's file without opening it.
struct entry_info {
    std::uint64_t size = 0;
    bool is_readable = false; // a regular file that this process may read
};

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

    /// Appends content (buffered; with a journal or a handover, an entry small enough for it
    /// is kept in memory whole, up to journal_options::max_entry_size). Throws
    /// std::system_error (ENOSPC, EFBIG, EIO...).
    void write(std::string_view bytes);
    /// Appends the envelope and makes the entry durable, then renames it into queue/.
    /// With the spool's journal (small entries): writes the file, appends the entry to the
    /// journal and waits for the group-committed fdatasync covering it, then renames.
    /// Without: fsyncs the file, renames it and waits for the directory fsync (shared with
    /// concurrent commits). With a handover (the injector, small entries): first offers the
    /// entry to the running leafmaild, which commits it through its journal; when it cannot,
    /// commits it here the one-file way. Either way the entry is on stable storage when this
    /// returns, and
    /// visible in queue/. Blocking: keep it off event loops.
    /// Fills in env.id, env.content_size, env.body_8bit and (when 0) env.queued_at.
    /// Throws std::system_error; on failure nothing is left in queue/ or tmp/.
    void commit(envelope env);
    /// Drops the temporary file. Safe to call more than once.
    void abort() noexcept;

private:
    friend class spool;
    entry_writer(std::shared_ptr<const spool_directories> dirs, std::string id, int fd,
                 std::shared_ptr<directory_syncer> syncer, std::shared_ptr<journal> journal,
                 std::shared_ptr<const handover_target> handover);
    void flush_buffer();
    void commit_journaled();
    bool commit_handed_over(); // false: the receiver did not take it, the file is back

    std::shared_ptr<const spool_directories> dirs_;
    std::string tmp_label_; // "<root>/tmp/<id>", for messages only
    std::string id_;
    int fd_ = -1;
    std::shared_ptr<directory_syncer> syncer_;
    std::shared_ptr<journal> journal_;                // null: this entry goes the one-file way
    std::shared_ptr<const handover_target> handover_; // null: not offered to leafmaild
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

/// Room on disk for recording what becomes of one entry, taken before its content goes out:
/// a file in tmp/ already written to the size of the largest state the outcome can make
/// (envelope::largest_state_size). save_state() writes the state into that file, so recording
/// an outcome needs no new disk blocks and a full disk cannot make the relay forget that a
/// recipient was delivered (and send it again). Spent by one save_state(); removed, unused,
/// when destroyed.
class state_reservation {
public:
    state_reservation() = default;
    state_reservation(state_reservation&&) noexcept;
    state_reservation& operator=(state_reservation&&) noexcept;
    ~state_reservation();

    [[nodiscard]] bool is_held() const { return fd_ >= 0; }
    [[nodiscard]] std::uint64_t size() const { return size_; }

private:
    friend class spool;
    state_reservation(std::shared_ptr<const spool_directories> dirs, std::string name, int fd,
                      std::uint64_t size)
        : dirs_(std::move(dirs)), name_(std::move(name)), fd_(fd), size_(size)
    {
    }
    void release() noexcept;

    std::shared_ptr<const spool_directories> dirs_;
    std::string name_; // in tmp/
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

struct recovery_report {
    std::size_t replayed_records = 0;    // journaled entries put (back) into queue/
    std::size_t removed_temporaries = 0; // interrupted writes found in tmp/
    std::size_t removed_orphan_states = 0;
    std::size_t reunited_states = 0; // state files moved after their entry
};

/// Creates (or completes) the spool tree for its owner, as root: directories 2770 with the
/// setgid bit and the owner's group, set with fchmod/fchown on what was opened, never by the
/// umask and never through a symlink; flush.lock 0640. An existing directory is taken over
/// only from root (install rules make them so); one owned by anyone else than root or the
/// owner is refused with foreign_spool. Nothing is ever chowned recursively.
void set_up_spool(const std::filesystem::path& root, unsigned owner_uid, unsigned owner_gid);

/// True for a directory that holds none of the spool's areas (made, never set up or used).
[[nodiscard]] bool has_no_areas(const std::filesystem::path& root);

class spool {
public:
    /// Opens the spool at root, creating the missing directories (and the root's parents)
    /// when create is true, with explicit modes. Throws missing_spool when it does not exist
    /// and create is false, std::system_error naming the path otherwise.
    explicit spool(std::filesystem::path root, bool create = true);
    ~spool();
    spool(const spool&) = delete;
    spool& operator=(const spool&) = delete;

    /// Cleans what crashed writers and movers left (a writer still running holds a lock on
    /// its temporary file and is left alone). Call at the start of a daemon or flush.
    /// First replays the journal past its checkpoint when no running process holds it.
    recovery_report recover();

    /// Opens the spool's journal (<spool>/journal/, made and preallocated when missing),
    /// replays it and from then on commits small entries through it. Returns false, with
    /// the reason in why_not, when another process holds the journal or it cannot be made
    /// (a full disk, say): entries then go the one-file way. Throws std::system_error when
    /// the replay fails.
    bool open_journal(const journal_options& options, std::string& why_not);

    /// leafmaild, its journal open: a listening socket for entries handed over by the
    /// injector (handover.hpp), at <spool>/handover. Throws std::system_error.
    [[nodiscard]] int listen_for_handovers();
    /// leafmaild: commits an entry handed over as its octets through the journal, as
    /// entry_writer::commit() does. Throws corrupt_entry when they are not one whole entry of
    /// that id (anything the group can send is hostile), std::system_error otherwise (EEXIST:
    /// the id is taken; ENOTSUP: no journal).
    void commit_handed_over(const std::string& id, std::string entry);
    [[nodiscard]] bool has_journal() const { return journal_ != nullptr; }
    /// leafmail-sendmail: from now on, new entries small enough for the journal are offered to
    /// the running leafmaild first (entry_writer::commit()).
    void offer_new_entries_to_receiver();

    /// Starts a new entry with a fresh id. Throws std::system_error.
    [[nodiscard]] entry_writer create_entry();

    /// Valid entry ids in an area, oldest first. Anything else in queue/, hold/ or failed/
    /// (a FIFO, a directory, a symlink, a device, a name that is no id) is logged and moved
    /// to corrupt/ when this process may, and never listed: it cannot stop a flush.
    [[nodiscard]] std::vector<std::string> list(area where) const;
    /// The area holding the entry, or nullopt (an entry moving between areas is looked for
    /// twice).
    [[nodiscard]] std::optional<area> locate(std::string_view id) const;
    /// Size and readability of an entry's file, or nullopt when it is absent.
    [[nodiscard]] std::optional<entry_info> info(area where, std::string_view id) const;
    /// The entry's current envelope (its state file when one exists), or nullopt when the
    /// entry vanished meanwhile. Throws corrupt_entry or std::system_error.
    [[nodiscard]] std::optional<envelope> load(area where, std::string_view id) const;
    /// Throws corrupt_entry or std::system_error (ENOENT when the entry vanished).
    [[nodiscard]] content_reader open_content(area where, std::string_view id) const;

    /// Durably records a new envelope for an existing entry without touching its content.
    /// The state file gets the entry's owner and group and mode 0640, whoever writes it.
    void save_state(area where, const envelope& env);
    /// Reserves the room for recording env's outcome (state_reservation) before its content
    /// goes out. Throws std::system_error (ENOSPC: the outcome could not be recorded, so the
    /// content must not go).
    [[nodiscard]] state_reservation reserve_state(area where, const envelope& env);
    /// save_state() into the reserved room: no new disk blocks. Spends the reservation; a
    /// state larger than the room (it cannot be, see largest_state_size) takes new blocks.
    void save_state(area where, const envelope& env, state_reservation& room);
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
    /// Locks flush.lock through a read-only descriptor that follows no symlink (creating it,
    /// exclusively, only when it is missing). Throws std::system_error.
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

    /// The spool-wide status (status.hpp): `<spool>/flush.status`, written by a flush while it
    /// holds the flush lock, and `<spool>/watch.status`, written by the watcher holding
    /// watch.lock; one writer each. Written whole into tmp/, fsynced and renamed over the
    /// old file, so a reader sees the old status or the new one. Throws std::system_error.
    void save_flush_status(const flush_record& record) const;
    void save_watch_status(const watch_record& record) const;
    /// Never throws for what the file holds: a symlink, a non-regular or oversized file,
    /// unreadable or malformed content comes back as a problem naming the path. Neither a
    /// value nor a problem: no status yet.
    [[nodiscard]] status_read<flush_record> load_flush_status() const;
    [[nodiscard]] status_read<watch_record> load_watch_status() const;

    /// Bytes available to unprivileged writers on the spool's filesystem.
    [[nodiscard]] std::uint64_t free_bytes() const;

private:
    int dir_fd(area where) const;
    std::string label(area where, std::string_view name) const; // for messages only
    std::shared_ptr<directory_syncer> syncer_for(area where) const;
    void set_aside(area where, const std::string& name, const char* kind) const;
    void write_status_file(const char* name, const std::string& text) const;
    /// The file's text, or nullopt when absent; problem says why it could not be used.
    [[nodiscard]] std::optional<std::string> read_status_file(const char* name,
                                                              std::string& problem) const;
    int create_state_temporary(area where, const std::string& id, std::string& name) const;
    void install_state(area where, const std::string& id, int fd, const std::string& name);

    std::filesystem::path root_;
    std::shared_ptr<spool_directories> dirs_;
    std::size_t replay(journal& from);

    std::vector<std::shared_ptr<directory_syncer>> syncers_; // one per area
    std::shared_ptr<journal> journal_;                       // held by leafmaild only
    std::shared_ptr<const handover_target> handover_;        // the injector's, when offered
};

} // namespace leafmail::spool
