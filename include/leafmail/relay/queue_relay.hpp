#pragma once
// The spool side of a flush: hands out queued entries in arrival order to relay connections
// and records each result durably (per-recipient states, failed/, bounces, removal) before
// the connection may send later content, in room reserved before that content went out (a full
// disk must never make it send a delivered recipient another copy). Fails what is older than
// max-queue-age, warns once about what is older than warn-after, schedules each deferred entry's
// next attempt. Skips entries another tool has locked; never sees hold/. Knows no sockets: any
// relay_job_source driver (the real connection, a test) works the same.
#include "leafmail/net/relay_connection.hpp"
#include "leafmail/relay/dsn.hpp"
#include "leafmail/spool/spool.hpp"
#include "leafmail/watch/retry_schedule.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace leafmail::relay {

/// What the queue side needs of the configuration (relay_settings.hpp makes it).
struct queue_relay_options {
    std::string reporting_host; // our name in notifications
    std::string relay_name;     // the smarthost as configured, for logs
    std::string remote_host;    // the smarthost's name in notifications
    std::chrono::seconds max_queue_age{5 * 24 * 3600};
    std::function<std::int64_t()> now;  // Unix seconds
    std::chrono::seconds warn_after{0}; // one "delayed" notice after this; 0 = none
    watch::retry_policy retry;          // a deferred entry's next attempt: retry-min doubling
    watch::random_source random;        // jitter of that schedule; none = no jitter
    bool due_only = false;              // skip entries whose next attempt has not come
    /// When set and true, no new message is handed out (the message in flight finishes).
    const std::atomic<bool>* stop = nullptr;
    /// How long next() waits for a new entry in queue/ once none is left, so that mail
    /// arriving while a connection is open goes on it (the watcher's bursts); 0: no wait.
    std::chrono::milliseconds linger{0};
    /// The entries this relay takes (those of its route); empty: every entry. The others are
    /// left alone, unlocked, and not counted as pending.
    std::function<bool(const spool::envelope&)> takes;
    /// rewrite-sender: the envelope sender for mail from a local sender (no domain,
    /// local_hostname or localhost, or the login@local_domain leafmail-sendmail made for a
    /// local submission); empty: senders are relayed as they are. rewrite_from: a local From:
    /// header gets it too (from_rewriter.hpp).
    std::string rewrite_sender;
    bool rewrite_from = false;
    std::string local_hostname;
    std::string local_domain;
};

/// Whether `address`, found in the entry `env`, is a local sender's: no domain, @hostname or
/// @localhost, or the login@domain leafmail-sendmail made from the submitter's login (the
/// envelope records the uid, "uid=N").
[[nodiscard]] bool is_local_sender(const queue_relay_options& options, const spool::envelope& env,
                                   std::string_view address);

/// Thread-safe: several connections may share one.
class queue_relay : public net::relay_job_source {
public:
    /// Takes the ids in queue/ now; entries that arrive later are picked up once these ran out.
    queue_relay(spool::spool& spool, queue_relay_options options);

    /// True when an entry is ready to go (prepares it, so a flush with nothing to send never
    /// connects).
    [[nodiscard]] bool has_work();
    [[nodiscard]] std::optional<net::relay_job> next() override;
    void finished(const smtp::message_result& result) override;

    /// Fails and bounces the entries older than max-queue-age without sending anything, so
    /// they expire even while the smarthost is unreachable.
    void expire_old_entries();

    /// One RFC 3464 "delayed" notice for each entry pending longer than warn-after, never a
    /// second (recorded in the envelope).
    void warn_delayed_entries();

    /// The smarthost could not be used before any message went (connection or TLS refused,
    /// a 421 greeting, AUTH refused): records the attempt on every entry this relay still
    /// meant to send (last_attempt_at, last_reply = reason, and attempts + 1 when
    /// count_attempt) without changing its schedule (the watcher's probes follow the route's
    /// backoff), and hands out nothing more. Returns how many entries it recorded.
    std::size_t record_unreached(const std::string& reason, bool count_attempt = true);

    /// The last reply that left a recipient pending (deferred or unconfirmed), one line;
    /// empty when none did.
    [[nodiscard]] std::string last_deferral() const;

    /// Earliest scheduled attempt among the entries left pending (Unix seconds), 0 if none.
    [[nodiscard]] std::int64_t next_attempt_at() const;
    [[nodiscard]] std::size_t delay_notices() const;

    /// Entries seen by this flush that are still waiting in queue/.
    [[nodiscard]] std::size_t count_still_pending() const;
    /// Of those, the ones a transaction left unconfirmed (final dot sent, no reply).
    [[nodiscard]] std::size_t count_unconfirmed() const;

    [[nodiscard]] std::size_t sent() const;    // entries whose every recipient was delivered
    [[nodiscard]] std::size_t failed() const;  // entries moved to failed/
    [[nodiscard]] std::size_t bounces() const; // notifications created
    /// True when the room for recording an outcome could not be reserved (a full disk):
    /// from then on no content went out.
    [[nodiscard]] bool is_out_of_room() const;

private:
    struct job {
        std::string id;
        spool::envelope env;
        spool::file_lock lock; // held from load to settle: no other tool changes the entry
        std::vector<std::size_t> sent_indexes;
        std::optional<spool::content_reader> content;
        std::vector<failed_recipient> newly_failed = {}; // by this run's transactions so far
        spool::state_reservation room = {}; // for recording the next outcome (reserve_room)
        bool has_room = false;              // false: one pending recipient, which needs none
    };

    std::optional<spool::envelope> load(const std::string& id);
    std::optional<job> prepare();
    void expire_job(job& j, std::int64_t now);
    void settle(job& j, const std::vector<failed_recipient>& newly_failed, std::int64_t now,
                const std::string& remote_host);
    void bounce(const std::string& id, const spool::envelope& original,
                const std::vector<failed_recipient>& recipients, std::int64_t now,
                const std::string& remote_host, bool delayed);
    [[nodiscard]] bool reserve_room(job& j);
    void stop_out_of_room(const std::string& id, const std::string& error);
    [[nodiscard]] bool is_stopping() const
    {
        return out_of_room_ || (options_.stop && options_.stop->load());
    }
    void note_next_attempt(std::int64_t at);
    void schedule_next_attempt(spool::envelope& env, std::int64_t now);

    spool::spool& spool_;
    queue_relay_options options_;
    mutable std::mutex mutex_;
    std::deque<std::string> ids_;
    std::unordered_set<std::string> known_;
    std::unordered_set<std::string> not_taken_; // another route's entries
    std::unordered_set<std::string> unconfirmed_ids_;
    std::optional<job> ready_;
    std::map<std::uint64_t, job> active_;
    std::uint64_t next_tag_ = 1;
    std::size_t sent_ = 0;
    std::size_t failed_ = 0;
    std::size_t bounces_ = 0;
    std::size_t delay_notices_ = 0;
    std::int64_t next_attempt_at_ = 0;
    std::string last_deferral_;
    bool out_of_room_ = false; // an outcome could not be reserved: nothing more goes out
};

} // namespace leafmail::relay
