#include "leafmail/list/listing.hpp"

#include "leafmail/spool/queue_id.hpp"
#include "leafmail/text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace leafmail::list {

namespace {

using spool::area;

constexpr std::size_t columns = 80;
constexpr std::string_view reply_indent = "             ";
// Below this many entries one thread is quicker than starting more.
constexpr std::size_t entries_per_thread = 4096;
constexpr unsigned max_threads = 8;

// " (for <root>)" after a recipient that an alias or admin-address put in place of the one
// the client gave; empty otherwise.
std::string for_original(const spool::recipient& r)
{
    return r.original_address.empty() ? std::string() : " (for <" + r.original_address + ">)";
}

// Peer text on one line: line breaks and tabs as blanks, controls escaped (text.hpp).
std::string one_line(std::string text)
{
    for (char& c : text)
        if (c == '\r' || c == '\n' || c == '\t')
            c = ' ';
    return text::escape_controls(text);
}

// Columns taken by escaped text: one per character (UTF-8 continuation octets take none).
std::size_t columns_of(std::string_view text)
{
    return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xc0u) != 0x80;
    }));
}

// The first `width` columns of escaped text, never cutting a UTF-8 character.
std::string_view first_columns(std::string_view text, std::size_t width)
{
    std::size_t seen = 0;
    for (std::size_t i = 0; i < text.size(); ++i)
        if ((static_cast<unsigned char>(text[i]) & 0xc0u) != 0x80 && seen++ == width)
            return text.substr(0, i);
    return text;
}

} // namespace

std::string fit(std::string text, std::size_t width)
{
    text = one_line(std::move(text));
    if (columns_of(text) > width)
        text = std::string(first_columns(text, width - 3)) + "...";
    return text;
}

std::string wrapped(std::string text, std::string_view indent, std::size_t width,
                    std::string_view whole_elsewhere)
{
    constexpr std::size_t max_lines = 12;
    text = one_line(std::move(text));
    std::string out;
    std::string line;
    std::size_t lines = 0;
    auto flush_line = [&] {
        if (lines++ < max_lines)
            out += std::string(indent) + line + "\n";
        line.clear();
    };
    std::string_view rest(text);
    while (!rest.empty()) {
        const auto start = rest.find_first_not_of(' ');
        if (start == std::string_view::npos)
            break;
        rest.remove_prefix(start);
        std::string_view word = rest.substr(0, rest.find(' '));
        rest.remove_prefix(word.size());
        while (!word.empty()) {
            const std::size_t needed = columns_of(word) + (line.empty() ? 0 : 1);
            if (columns_of(line) + needed <= width) {
                line += (line.empty() ? "" : " ") + std::string(word);
                break;
            }
            if (!line.empty()) {
                flush_line();
                continue;
            }
            const std::string_view piece = first_columns(word, width);
            line = std::string(piece);
            word.remove_prefix(piece.size());
            flush_line();
        }
    }
    if (!line.empty())
        flush_line();
    if (lines > max_lines)
        out += std::string(indent) + "... (" + std::to_string(lines - max_lines) +
               " more lines: " + std::string(whole_elsewhere) + ")\n";
    return out;
}

namespace {

std::string plural(std::uint64_t n, std::string_view one, std::string_view many)
{
    return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

// "pending (unconfirmed)" when the last attempt sent the final dot and no reply came: the
// recipient may already have the message, and is tried again (at-least-once).
std::string state_label(const spool::recipient& r)
{
    std::string label(spool::to_string(r.state));
    if (r.unconfirmed)
        label += " (unconfirmed)";
    return label;
}

std::uint64_t size_of(const listed_entry& e)
{
    return e.envelope ? e.envelope->content_size : e.file_size;
}

std::int64_t queued_at_of(const listed_entry& e)
{
    return e.envelope && e.envelope->queued_at > 0 ? e.envelope->queued_at
                                                   : spool::queue_id_time(e.id);
}

std::uint32_t attempts_of(const spool::envelope& env)
{
    std::uint32_t most = 0;
    for (const auto& r : env.recipients)
        most = std::max(most, r.attempts);
    return most;
}

std::string human_time(std::int64_t unix_seconds)
{
    const auto t = static_cast<std::time_t>(unix_seconds);
    std::tm utc{};
    ::gmtime_r(&t, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &utc);
    return text;
}

std::uint64_t file_size(const spool::spool& spool, area where, std::string_view id)
{
    const auto info = spool.info(where, id);
    return info ? info->size : 0;
}

// Reads one entry; false when it vanished.
bool load_entry(spool::spool& spool, listed_entry& entry, bool quarantine)
{
    try {
        entry.envelope = spool.load(entry.where, entry.id);
        return entry.envelope.has_value();
    } catch (const spool::corrupt_entry& e) {
        entry.problem = e.what();
    } catch (const std::system_error& e) {
        entry.problem = e.what(); // not known to be corrupt (EMFILE...): shown, not moved
        entry.file_size = file_size(spool, entry.where, entry.id);
        return true;
    }
    // An unreadable entry goes to corrupt/ as every leafmail tool does with one; but one
    // that only *we* may not read (an operator without the spool's group) stays put.
    const auto info = spool.info(entry.where, entry.id);
    const bool is_ours_to_judge = info && info->is_readable;
    if (quarantine && is_ours_to_judge && entry.where != area::corrupt) {
        if (!spool.quarantine(entry.where, entry.id))
            return false; // vanished meanwhile
        entry.where = area::corrupt;
        entry.was_quarantined = true;
    }
    entry.file_size = file_size(spool, entry.where, entry.id);
    return true;
}

// JSON strings: escaping (and replacing invalid UTF-8) is the library's job; text that needs
// none of it (ids, times, most addresses) is copied as it is, which keeps 100,000 entries
// cheap.
void append_json_string(std::string& out, std::string_view text)
{
    const bool is_plain = std::all_of(text.begin(), text.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
    });
    if (is_plain) {
        out += '"';
        out.append(text);
        out += '"';
        return;
    }
    out += nlohmann::json(std::string(text))
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void append_field(std::string& out, std::string_view key, std::string_view text)
{
    out += '"';
    out.append(key);
    out += "\":";
    append_json_string(out, text);
}

template <class Number> void append_number(std::string& out, std::string_view key, Number value)
{
    out += '"';
    out.append(key);
    out += "\":";
    out += std::to_string(value);
}

void append_literal(std::string& out, std::string_view key, std::string_view literal)
{
    out += '"';
    out.append(key);
    out += "\":";
    out.append(literal);
}

// One entry as a JSON object, fields in the documented order (leafmail-list(8)).
void append_entry_json(std::string& out, const listed_entry& e, std::int64_t now,
                       const std::string* headers)
{
    const std::int64_t queued = queued_at_of(e);
    out += '{';
    append_field(out, "id", e.id);
    out += ',';
    append_field(out, "area", area_label(e.where));
    out += ',';
    append_field(out, "queued_at", iso8601_utc(queued));
    out += ',';
    append_number(out, "age_seconds", std::max<std::int64_t>(0, now - queued));
    out += ',';
    append_number(out, "size", size_of(e));
    out += ',';
    if (e.envelope) {
        const auto& env = *e.envelope;
        append_field(out, "sender", env.reverse_path);
        out += ',';
        if (!e.route.empty()) {
            append_field(out, "route", e.route);
            out += ',';
        }
        append_number(out, "attempts", attempts_of(env));
        out += ',';
        // Only a queued entry with a schedule has a next attempt; null means "the next flush".
        if (e.where == area::queue && env.next_attempt_at > 0 && env.has_pending())
            append_field(out, "next_attempt", iso8601_utc(env.next_attempt_at));
        else
            append_literal(out, "next_attempt", "null");
        out += ',';
        append_field(out, "origin", env.origin);
        out += ',';
        append_field(out, "client_address", env.client_address);
        out += ',';
        append_field(out, "helo_name", env.helo_name);
        out += ',';
        append_literal(out, "is_bounce", env.is_bounce ? "true" : "false");
        out += ',';
        append_literal(out, "body_8bit", env.body_8bit ? "true" : "false");
        out += ",\"recipients\":[";
        for (std::size_t i = 0; i < env.recipients.size(); ++i) {
            const auto& r = env.recipients[i];
            out += i == 0 ? "{" : ",{";
            append_field(out, "address", r.address);
            out += ',';
            append_field(out, "original", r.original_address);
            out += ',';
            append_field(out, "state", spool::to_string(r.state));
            out += ',';
            append_literal(out, "unconfirmed", r.unconfirmed ? "true" : "false");
            out += ',';
            append_number(out, "attempts", r.attempts);
            out += ',';
            if (r.last_attempt_at > 0)
                append_field(out, "last_attempt_at", iso8601_utc(r.last_attempt_at));
            else
                append_literal(out, "last_attempt_at", "null");
            out += ',';
            append_field(out, "last_reply", r.last_reply);
            out += '}';
        }
        out += "],\"error\":null";
    } else {
        out += "\"sender\":null,\"attempts\":null,\"next_attempt\":null,\"origin\":null,\"client_"
               "address\":null,"
               "\"helo_name\":null,\"is_bounce\":null,\"body_8bit\":null,\"recipients\":[],";
        append_field(out, "error", e.problem);
    }
    if (headers) {
        out += ',';
        append_field(out, "headers", *headers);
    }
    out += '}';
}

// Formats entries in slices on a few threads (a large spool), then writes them in order.
template <class Format> void write_in_slices(std::ostream& out, std::size_t count, Format format)
{
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const auto slices = static_cast<unsigned>(
        std::min<std::size_t>({cores, max_threads, count / entries_per_thread + 1}));
    std::vector<std::string> text(slices);
    const std::size_t slice = (count + slices - 1) / std::max(1u, slices);
    auto run = [&](unsigned t) {
        const std::size_t begin = std::min(count, t * slice);
        const std::size_t end = std::min(count, begin + slice);
        text[t].reserve((end - begin) * 400);
        for (std::size_t i = begin; i < end; ++i)
            format(text[t], i);
    };
    if (slices <= 1) {
        run(0);
    } else {
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < slices; ++t)
            threads.emplace_back(run, t);
        for (auto& thread : threads)
            thread.join();
    }
    for (const auto& piece : text)
        out.write(piece.data(), static_cast<std::streamsize>(piece.size()));
}

} // namespace

std::string_view area_label(area where)
{
    switch (where) {
    case area::queue:
        return "queued";
    case area::hold:
        return "held";
    case area::failed:
        return "failed";
    case area::corrupt:
        return "corrupt";
    }
    return "queued";
}

std::optional<area> area_from_label(std::string_view text)
{
    for (area a : spool::all_areas)
        if (text == area_label(a) || text == spool::to_string(a))
            return a;
    return std::nullopt;
}

std::string iso8601_utc(std::int64_t unix_seconds)
{
    const auto t = static_cast<std::time_t>(unix_seconds);
    std::tm utc{};
    ::gmtime_r(&t, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return text;
}

std::string format_age(std::int64_t seconds)
{
    if (seconds < 0)
        seconds = 0;
    const std::int64_t d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60,
                       s = seconds % 60;
    if (d > 0)
        return std::to_string(d) + "d " + std::to_string(h) + "h";
    if (h > 0)
        return std::to_string(h) + "h " + std::to_string(m) + "m";
    if (m > 0)
        return std::to_string(m) + "m " + std::to_string(s) + "s";
    return std::to_string(s) + "s";
}

std::string format_next_attempt(std::int64_t next_attempt_at, std::int64_t now)
{
    if (next_attempt_at <= 0)
        return {};
    const std::int64_t wait = next_attempt_at - now;
    if (wait <= 0)
        return "next attempt due";
    if (wait < 60)
        return "next attempt in " + std::to_string(wait) + " s";
    if (wait < 2 * 3600)
        return "next attempt in " + std::to_string((wait + 59) / 60) + " min";
    return "next attempt in " + format_age(wait);
}

std::vector<listed_entry> scan_spool(spool::spool& spool, const scan_options& options)
{
    std::vector<listed_entry> found;
    for (area where : spool::all_areas) {
        if (std::find(options.areas.begin(), options.areas.end(), where) == options.areas.end())
            continue;
        for (auto& id : spool.list(where)) {
            listed_entry e;
            e.where = where;
            e.id = std::move(id);
            found.push_back(std::move(e));
        }
    }
    // Ids sort by arrival time as plain strings (queue_id.hpp), whatever the area.
    const auto by_id = [](const listed_entry& a, const listed_entry& b) { return a.id < b.id; };
    if (!std::is_sorted(found.begin(), found.end(), by_id)) // each area comes sorted already
        std::stable_sort(found.begin(), found.end(), by_id);

    // Thawing is the cost on a large spool: share it between a few threads, each taking a
    // contiguous slice, so the order is kept without further sorting.
    std::vector<char> keep(found.size(), 0);
    auto work = [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i)
            keep[i] = load_entry(spool, found[i], options.quarantine_corrupt) ? 1 : 0;
    };
    unsigned threads = options.threads;
    if (threads == 0) {
        const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
        threads = static_cast<unsigned>(
            std::min<std::size_t>({cores, max_threads, found.size() / entries_per_thread + 1}));
    }
    if (threads <= 1) {
        work(0, found.size());
    } else {
        std::vector<std::thread> pool;
        const std::size_t slice = (found.size() + threads - 1) / threads;
        for (unsigned t = 0; t < threads; ++t) {
            const std::size_t begin = std::min(found.size(), t * slice);
            const std::size_t end = std::min(found.size(), begin + slice);
            pool.emplace_back(work, begin, end);
        }
        for (auto& thread : pool)
            thread.join();
    }

    std::vector<listed_entry> result;
    result.reserve(found.size());
    for (std::size_t i = 0; i < found.size(); ++i)
        if (keep[i])
            result.push_back(std::move(found[i]));
    return result;
}

std::optional<listed_entry> find_entry(spool::spool& spool, std::string_view id,
                                       bool quarantine_corrupt)
{
    if (!spool::is_valid_queue_id(id))
        return std::nullopt;
    // Twice round: an entry moving between areas while we look is found the second time.
    for (int round = 0; round < 2; ++round) {
        for (area where : spool::all_areas) {
            listed_entry e;
            e.where = where;
            e.id = std::string(id);
            if (load_entry(spool, e, quarantine_corrupt))
                return e;
        }
    }
    return std::nullopt;
}

std::string read_message_header(const spool::spool& spool, area where, std::string_view id,
                                std::size_t max_size)
{
    auto reader = spool.open_content(where, id);
    std::string text;
    std::size_t searched = 0;
    while (text.size() < max_size) {
        const std::string chunk = reader.read(16 * 1024);
        if (chunk.empty())
            break;
        text += chunk;
        const auto end = text.find("\r\n\r\n", searched > 3 ? searched - 3 : 0);
        if (end != std::string::npos) {
            text.resize(end + 2);
            return text;
        }
        searched = text.size();
    }
    if (text.size() > max_size)
        text.resize(max_size);
    return text;
}

std::string summary_line(const std::vector<listed_entry>& entries)
{
    if (entries.empty())
        return "spool is empty";
    std::uint64_t bytes = 0;
    std::size_t per_area[4] = {};
    for (const auto& e : entries) {
        bytes += size_of(e);
        ++per_area[static_cast<std::size_t>(e.where)];
    }
    std::string line =
        plural(entries.size(), "message", "messages") + ", " + plural(bytes, "byte", "bytes");
    std::string parts;
    for (area a : spool::all_areas) {
        const std::size_t n = per_area[static_cast<std::size_t>(a)];
        if (n == 0)
            continue;
        parts += (parts.empty() ? "" : ", ") + std::to_string(n) + " " + std::string(area_label(a));
    }
    return line + " (" + parts + ")";
}

namespace {

void append_block(std::string& block, const listed_entry& e, std::int64_t now)
{
    const std::int64_t queued = queued_at_of(e);
    block += e.id + "  " + std::string(area_label(e.where)) + "  " +
             plural(size_of(e), "byte", "bytes") + "\n";
    std::string when = "  queued " + human_time(queued) + " (" + format_age(now - queued) + " ago)";
    if (!e.envelope) {
        block += when + "\n";
        block += fit("  unreadable: " + e.problem, columns) + "\n";
        return;
    }
    const auto& env = *e.envelope;
    std::string next;
    if (e.where == area::queue && env.has_pending())
        next = format_next_attempt(env.next_attempt_at, now);
    block += when + ", " + plural(attempts_of(env), "attempt", "attempts") + "\n";
    if (!next.empty())
        block += "  " + next + "\n"; // its own line: the one above may be near 80 columns
    // The default route is not named: a file without [route NAME] sections lists as before.
    block += fit("  from <" + env.reverse_path + ">" +
                     (env.is_bounce ? " (delivery status notification)" : "") +
                     (e.route.empty() || e.route == "default" ? "" : " via route " + e.route),
                 columns) +
             "\n";
    for (const auto& r : env.recipients) {
        std::string state = state_label(r);
        state.resize(std::max<std::size_t>(state.size(), 10), ' ');
        block += fit("  " + state + " <" + r.address + ">" + for_original(r), columns) + "\n";
        if (r.state != spool::recipient_state::delivered && !r.last_reply.empty())
            block += wrapped(r.last_reply, reply_indent, columns - reply_indent.size());
    }
}

} // namespace

void write_listing(std::ostream& out, const std::vector<listed_entry>& entries, std::int64_t now)
{
    write_in_slices(out, entries.size(),
                    [&](std::string& text, std::size_t i) { append_block(text, entries[i], now); });
    out << summary_line(entries) << "\n";
}

void write_details(std::ostream& out, const listed_entry& e, std::string_view header,
                   std::int64_t now)
{
    // Everything from the envelope and the header was written by a peer: escaped (text.hpp).
    const auto shown = [](std::string_view text) { return text::escape_controls(text); };
    const std::int64_t queued = queued_at_of(e);
    out << e.id << " (" << area_label(e.where) << ")\n";
    out << "  queued at    " << human_time(queued) << " (" << format_age(now - queued) << " ago)\n";
    out << "  size         " << plural(size_of(e), "byte", "bytes") << "\n";
    if (!e.envelope) {
        out << "  unreadable   " << shown(e.problem) << "\n";
        return;
    }
    const auto& env = *e.envelope;
    out << "  origin       " << shown(env.origin);
    if (!env.client_address.empty())
        out << ", " << shown(env.client_address);
    if (!env.helo_name.empty())
        out << ", helo " << shown(env.helo_name);
    out << "\n";
    out << "  sender       <" << shown(env.reverse_path) << ">\n";
    if (env.body_8bit || env.is_bounce)
        out << "  flags       " << (env.body_8bit ? " 8bit" : "")
            << (env.is_bounce ? " bounce" : "") << "\n";
    for (const auto& r : env.recipients) {
        out << "  recipient    <" << shown(r.address) << ">" << shown(for_original(r)) << "\n";
        out << "    state      " << state_label(r) << ", "
            << plural(r.attempts, "attempt", "attempts");
        if (r.last_attempt_at > 0)
            out << ", last " << human_time(r.last_attempt_at);
        out << "\n";
        if (!r.last_reply.empty())
            out << "    reply      " << shown(r.last_reply) << "\n";
    }
    if (header.empty())
        return;
    out << "  header:\n";
    for (std::size_t start = 0; start < header.size();) {
        auto end = header.find('\n', start);
        if (end == std::string_view::npos)
            end = header.size();
        std::string_view line = header.substr(start, end - start);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        // A folded line keeps its leading blanks (a tab shows as one); the rest is escaped.
        const std::size_t blanks = std::min(line.find_first_not_of(" \t"), line.size());
        out << "    " << line.substr(0, blanks) << shown(line.substr(blanks)) << "\n";
        start = end + 1;
    }
}

void write_json(std::ostream& out, const std::vector<listed_entry>& entries, std::int64_t now,
                const std::vector<std::string>& headers)
{
    if (entries.empty()) {
        out << "[]\n";
        return;
    }
    out << "[\n";
    write_in_slices(out, entries.size(), [&](std::string& text, std::size_t i) {
        append_entry_json(text, entries[i], now, i < headers.size() ? &headers[i] : nullptr);
        text += i + 1 < entries.size() ? ",\n" : "\n";
    });
    out << "]\n";
}

} // namespace leafmail::list
