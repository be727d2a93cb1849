#pragma once
// The spool's write-ahead journal: preallocated segment files overwritten in place, into which
// leafmaild appends every small new entry; one fdatasync (data only, no metadata to commit)
// makes a whole batch of waiting entries durable at once (group commit). Owns only the files
// of <spool>/journal/; the entry files of queue/ are made by spool.cpp from the same bytes.
// Format and guarantees: spool-format/README.md, "The journal".
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace leafmail::spool {

/// The pure framing of journal records and checkpoints (no files): what a reader of a segment
/// image needs, and what the golden file under spool-format/journal/ is checked against.
namespace journal_format {

inline constexpr std::string_view record_magic = "LMJRNL1\n";
/// magic (8), sequence number (8, little-endian), payload length (4, LE), CRC-32C (4, LE)
inline constexpr std::size_t header_size = 24;
inline constexpr std::size_t id_size = 30; // a queue id, spool-format/README.md
inline constexpr std::string_view checkpoint_magic = "LMCKPT1 ";
inline constexpr std::size_t checkpoint_slot_size = 512; // one sector: written whole or not
inline constexpr std::size_t checkpoint_slots = 2;

/// CRC-32C (Castagnoli), the checksum of iSCSI and ext4's metadata.
[[nodiscard]] std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0);

/// One record: header, then the payload (queue id, then the entry file's octets).
[[nodiscard]] std::string encode_record(std::uint64_t sequence, std::string_view id,
                                        std::string_view entry);
[[nodiscard]] std::size_t record_size(std::size_t entry_size);

struct record_view {
    std::uint64_t sequence = 0;
    std::uint64_t offset = 0; // of the record's header in the segment
    std::string_view id;
    std::string_view entry; // the entry file's octets: content, envelope, footer
};

/// The records of one segment image, from offset 0 on while each is whole, its CRC matches
/// and its sequence number is one more than the previous one's. Whatever follows (zeros, a
/// torn or corrupt record, an older generation's records) ends the walk: it never throws.
[[nodiscard]] std::vector<record_view> read_segment(std::string_view image);

/// A checkpoint slot: "LMCKPT1 " + sequence (20 digits) + " " + CRC-32C (8 hex) + "\n",
/// zero-padded to checkpoint_slot_size.
[[nodiscard]] std::string encode_checkpoint(std::uint64_t sequence);
/// The sequence a slot holds, or nullopt for a blank, torn or corrupt slot.
[[nodiscard]] std::optional<std::uint64_t> decode_checkpoint(std::string_view slot);

} // namespace journal_format

struct journal_options {
    std::size_t segment_count = 4;
    std::size_t segment_size = 4 * 1024 * 1024;
    /// Entries larger than this bypass the journal (one file, fsynced, as without it), so a
    /// session never buffers more than this in memory.
    std::size_t max_entry_size = 256 * 1024;
    /// How often durable, materialised records are checkpointed at most.
    unsigned checkpoint_interval_ms = 200;
};

/// A record found past the checkpoint at start (where it is, not its bytes).
struct journal_record_location {
    std::uint64_t sequence = 0;
    std::size_t segment = 0;
    std::uint64_t offset = 0;
};

/// The journal of one spool, held by one process (flock on journal/checkpoint).
/// Thread-safe: many sessions' workers call commit() at once and share the fdatasync.
class journal {
public:
    /// Opens the journal's files in the directory `dir_fd` (labelled `label` in messages)
    /// and takes its lock; with `create`, missing files are made and preallocated (for
    /// appending), without it the files found are used as they are (to replay them).
    /// Returns nullptr when another process holds the lock, or (without `create`) when there
    /// is no journal. Throws std::system_error (ENOSPC when the segments cannot be
    /// preallocated: the caller then works without a journal).
    static std::unique_ptr<journal> open(int dir_fd, const std::string& label,
                                         const journal_options& options, bool create);
    ~journal();
    journal(const journal&) = delete;
    journal& operator=(const journal&) = delete;

    [[nodiscard]] const journal_options& options() const { return options_; }
    /// False once an fdatasync of the journal failed: from then on nothing is appended.
    [[nodiscard]] bool is_usable() const;

    /// Records past the checkpoint, oldest first, for the spool to materialise at start;
    /// read_record() gives each one's id and entry octets. Call before the first commit().
    [[nodiscard]] std::vector<journal_record_location> records_after_checkpoint();
    /// The record at a location, re-read and checked; nullopt if it no longer checks out.
    [[nodiscard]] std::optional<std::pair<std::string, std::string>>
    read_record(const journal_record_location& where);
    /// Makes every entry on the filesystem durable (syncfs) and records `sequence` (and all
    /// before it) as materialised. Throws std::system_error.
    void checkpoint_through(std::uint64_t sequence);
    /// The last sequence number any record found at start carries (0: none).
    [[nodiscard]] std::uint64_t last_sequence() const;

    /// Starts the background checkpointer; commit() may be called from then on.
    void start();
    /// Appends one entry and returns once an fdatasync that covers it has returned; its
    /// sequence number. Throws std::system_error (EIO and the like: nothing of it will be
    /// replayed once the checkpoint passes it; EAGAIN when no segment could be freed).
    std::uint64_t commit(std::string_view id, std::string_view entry);
    /// The entry of `sequence` is in its area (or was given up): the checkpoint may pass it.
    void materialised(std::uint64_t sequence);

private:
    struct chunk {
        std::size_t segment = 0;
        std::uint64_t offset = 0;
        std::string bytes;
    };
    journal(int dir_fd, int lock_fd, std::vector<int> segment_fds, std::string label,
            journal_options options);
    void run_checkpointer();
    bool checkpoint_once(); // false when nothing new
    void write_checkpoint(std::uint64_t sequence);
    [[nodiscard]] std::string segment_label(std::size_t segment) const;
    int write_batch(const std::vector<chunk>& batch); // 0 or errno
    void fail_pending_locked(std::uint64_t through);

    int dir_fd_ = -1;
    int lock_fd_ = -1; // journal/checkpoint: the lock, and where checkpoints are written
    std::vector<int> segment_fds_;
    std::string label_;
    journal_options options_;

    mutable std::mutex mutex_;
    std::condition_variable changed_;         // durability, checkpoints, failures
    std::condition_variable checkpointer_;    // wakes the checkpointer early
    std::vector<chunk> pending_;              // framed records not yet written
    std::size_t segment_ = 0;                 // being appended to
    std::uint64_t offset_ = 0;                // next free octet in it
    std::vector<std::uint64_t> segment_last_; // last sequence written into each segment
    std::uint64_t next_sequence_ = 1;
    std::uint64_t durable_ = 0;         // every sequence <= this is on stable storage
    std::uint64_t failed_through_ = 0;  // sequences <= this past durable_ failed
    std::uint64_t checkpointed_ = 0;    // every sequence <= this is durable in an area
    std::set<std::uint64_t> in_flight_; // appended, not yet materialised nor given up
    bool writing_ = false;
    bool usable_ = true;
    bool checkpoint_wanted_ = false;
    bool stopping_ = false;
    unsigned checkpoint_slot_ = 0;
    std::thread thread_;
};

} // namespace leafmail::spool
