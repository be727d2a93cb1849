#pragma once
// The one way into the spool: leafmaild, leafmail-sendmail and the flush's bounces create
// every entry here. It seeds the envelope, writes the Received: trace line (RFC 5321 4.4),
// keeps the free-space floor, replaces local recipients by their aliases (aliases.hpp) and
// holds the one errno -> outcome table behind 451/452 and the sysexits of the injector. Knows
// no sockets and reads no configuration file.
#include "leafmail/aliases.hpp"
#include "leafmail/spool/spool.hpp"

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace leafmail::intake {

/// Where an entry came from; written into the envelope as to_string() (spool-format/README.md).
enum class origin { smtp, local, dsn };
[[nodiscard]] std::string_view to_string(origin from);

/// Who hands the message over.
struct source {
    origin from = origin::smtp;
    std::string client_address; // smtp: the peer's address ("local" for a pipe)
    std::string helo;           // smtp: the name the client gave
    bool is_esmtp = false;      // smtp: EHLO rather than HELO (RFC 3848 protocol name)
    unsigned uid = 0;           // local: the submitter's real uid
    std::string login;          // local: the submitter's login
};

/// The submitter of a local submission (sendmail, -bs included): real uid and its login.
[[nodiscard]] source local_source(unsigned uid, std::string login);

/// What a failure to store means for whoever handed the message over.
enum class outcome {
    insufficient_storage, // 452 4.3.1 (RFC 3463), EX_TEMPFAIL: the disk or a quota is full
    local_error,          // 451 4.3.0, and the sysexits status below
};
struct failure_class {
    outcome what = outcome::local_error;
    int exit_status = 0; // <sysexits.h>
};
/// The one table from a storage error to the SMTP outcome and the injector's exit status.
[[nodiscard]] failure_class classify(const std::system_error& error);

/// A recipient as it enters the envelope: where it goes, and the address the sender gave when
/// an alias or admin-address replaced it (empty: not rewritten).
struct accepted_recipient {
    std::string address;
    std::string original;
    friend bool operator==(const accepted_recipient&, const accepted_recipient&) = default;
};

/// The recipients of a new entry: each local one replaced by its aliases or admin-address
/// (resolve_recipient()), each address once. When one cannot be resolved, `refused` names it,
/// `refusal` says why and `recipients` is empty: nothing is accepted for it.
struct recipient_expansion {
    std::vector<accepted_recipient> recipients;
    std::string refused;
    std::string refusal;
};
[[nodiscard]] recipient_expansion expand_recipients(const local_recipients& rules,
                                                    const std::vector<std::string>& given);

/// Recipients taken as they are (a notification goes to the original's sender).
[[nodiscard]] std::vector<accepted_recipient> as_given(const std::vector<std::string>& addresses);

struct intake_limits {
    std::string hostname;             // ours, in the Received: line
    std::uint64_t min_free_space = 0; // refuse new entries below this (ENOSPC)
};

/// An entry being written: the spool's writer plus its seeded envelope.
class new_entry {
public:
    [[nodiscard]] const std::string& id() const { return writer_.id(); }
    [[nodiscard]] std::uint64_t content_size() const { return writer_.content_size(); }
    [[nodiscard]] spool::envelope& envelope() { return envelope_; }
    /// Appends content. Throws std::system_error.
    void write(std::string_view bytes) { writer_.write(bytes); }
    /// Durable commit (blocking: keep it off event loops). Throws std::system_error.
    void commit() { writer_.commit(envelope_); }
    void abort() noexcept { writer_.abort(); }

private:
    friend new_entry begin_entry(spool::spool&, const intake_limits&, const source&, std::string,
                                 const std::vector<accepted_recipient>&, std::time_t);
    new_entry(spool::entry_writer writer, spool::envelope env)
        : writer_(std::move(writer)), envelope_(std::move(env))
    {
    }
    spool::entry_writer writer_;
    spool::envelope envelope_;
};

/// Starts an entry: checks the free-space floor (std::system_error ENOSPC below it), creates
/// the entry, writes the Received: line (not for a DSN, which is our own message) and seeds
/// the envelope (origin, client, reverse-path, pending recipients with their originals,
/// queued_at = now).
[[nodiscard]] new_entry begin_entry(spool::spool& spool, const intake_limits& limits,
                                    const source& from, std::string reverse_path,
                                    const std::vector<accepted_recipient>& recipients,
                                    std::time_t now);

} // namespace leafmail::intake
