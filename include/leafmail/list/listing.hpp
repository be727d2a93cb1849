#pragma once
// What leafmail-list shows: a scan of the spool's areas in arrival order, read from the
// envelopes only (content is opened only to show one entry's header), and its renderings as
// 80-column text and as JSON (field names documented in leafmail-list(8); stable).
// Never changes an entry, except that an unreadable one is moved to corrupt/ as every tool does.
#include "leafmail/spool/spool.hpp"

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::list {

struct listed_entry {
    spool::area where = spool::area::queue;
    std::string id;
    std::optional<spool::envelope> envelope; // nullopt when it cannot be read (corrupt)
    std::string problem;                     // why it cannot be read
    std::uint64_t file_size = 0;             // of the entry file, for unreadable entries
    bool was_quarantined = false;            // this scan moved it to corrupt/
    std::string route; // the route its sender picks ("default", a [route NAME]); empty: unknown
};

struct scan_options {
    std::vector<spool::area> areas{spool::all_areas, spool::all_areas + 4};
    bool quarantine_corrupt = true; // move unreadable entries found outside corrupt/ there
    unsigned threads = 0;           // 0: decided by the size of the spool
};

/// Every entry of the chosen areas, oldest first. Entries that vanish meanwhile are left out.
/// Throws std::system_error when an area cannot be listed at all.
[[nodiscard]] std::vector<listed_entry> scan_spool(spool::spool& spool,
                                                   const scan_options& options = {});

/// One entry by id, looked for in every area; nullopt when there is none.
[[nodiscard]] std::optional<listed_entry> find_entry(spool::spool& spool, std::string_view id,
                                                     bool quarantine_corrupt = true);

/// The message's header (up to the empty line, at most max_size octets), from the content.
[[nodiscard]] std::string read_message_header(const spool::spool& spool, spool::area where,
                                              std::string_view id,
                                              std::size_t max_size = 256 * 1024);

/// "queued", "held", "failed", "corrupt": the words shown for each area.
[[nodiscard]] std::string_view area_label(spool::area where);
/// Accepts both the label and the directory name ("held" or "hold").
[[nodiscard]] std::optional<spool::area> area_from_label(std::string_view text);

/// "2026-11-22T13:07:31Z"
[[nodiscard]] std::string iso8601_utc(std::int64_t unix_seconds);
/// "3d 4h", "2h 5m", "42s"
[[nodiscard]] std::string format_age(std::int64_t seconds);

/// "next attempt in 12 min", "next attempt in 40 s", "next attempt in 3h 5m", or "next
/// attempt due" once the time has come; empty for an entry without a schedule (0).
[[nodiscard]] std::string format_next_attempt(std::int64_t next_attempt_at, std::int64_t now);

/// Peer text (an address, a problem) on one line of `width` columns: line breaks as blanks,
/// controls escaped (text::escape_controls), cut with "..." (the detail view shows it whole).
[[nodiscard]] std::string fit(std::string text, std::size_t width);
/// A reply wrapped at blanks into lines of `width` columns after `indent`, escaped as fit()
/// does, so that a long reason (Postfix's "Recipient address rejected: ...") is read whole,
/// not cut. A word longer than a line is split. Bounded to a dozen lines; the last says where
/// the whole text is.
[[nodiscard]] std::string
wrapped(std::string text, std::string_view indent, std::size_t width,
        std::string_view whole_elsewhere = "leafmail-list ID shows the whole reply");

/// Text blocks, one per entry, then the summary line. now: Unix seconds, for ages.
void write_listing(std::ostream& out, const std::vector<listed_entry>& entries, std::int64_t now);
/// "N messages, N bytes" (or "spool is empty"), with a count per area when there are several.
[[nodiscard]] std::string summary_line(const std::vector<listed_entry>& entries);
/// The full envelope of one entry and its message header, for `leafmail-list ID...`.
void write_details(std::ostream& out, const listed_entry& entry, std::string_view header,
                   std::int64_t now);

/// One JSON array of objects (see leafmail-list(8)). headers: one per entry, or empty for none.
void write_json(std::ostream& out, const std::vector<listed_entry>& entries, std::int64_t now,
                const std::vector<std::string>& headers = {});

} // namespace leafmail::list
