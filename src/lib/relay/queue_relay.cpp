#include "leafmail/relay/queue_relay.hpp"

#include "leafmail/intake/intake.hpp"

#include "leafmail/aliases.hpp"
#include "leafmail/log.hpp"
#include "leafmail/privileges.hpp"
#include "leafmail/relay/delivery.hpp"
#include "leafmail/relay/from_rewriter.hpp"
#include "leafmail/relay/seven_bit_content.hpp"
#include "leafmail/smtp/reply_parser.hpp"
#include "leafmail/spool/queue_id.hpp"

#include "leafmail/text.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <system_error>
#include <thread>

namespace leafmail::relay {

namespace {

// The original's header section copied into a notification is cut at this size.
constexpr std::size_t max_bounced_headers = 64 * 1024;
// While lingering for new mail, queue/ is listed this often.
constexpr std::chrono::milliseconds linger_poll_interval{25};

std::string_view to_string(smtp::delivery_status s)
{
    switch (s) {
    case smtp::delivery_status::delivered:
        return "delivered";
    case smtp::delivery_status::deferred:
        return "deferred";
    case smtp::delivery_status::failed:
        return "failed";
    case smtp::delivery_status::unconfirmed:
        return "unconfirmed";
    }
    return "deferred";
}

// An entry's content as the connection reads it: net/ knows no spool. What goes out is
// filtered (seven_bit_content.hpp): no line over 998 octets, and 8-bit MIME parts made
// quoted-printable for a smarthost without 8BITMIME.
class spooled_content : public net::content_source {
public:
    spooled_content(spool::content_reader reader, std::string id,
                    std::function<std::optional<from_rewriter>()> make_rewriter)
        : reader_(std::move(reader)), id_(std::move(id)), make_rewriter_(std::move(make_rewriter))
    {
    }
    [[nodiscard]] std::uint64_t size() const override { return reader_.size(); }

    void start(bool needs_seven_bit) override
    {
        reader_.rewind();
        filter_.emplace(content_filter_options{!needs_seven_bit});
        rewriter_ = make_rewriter_ ? make_rewriter_() : std::nullopt;
        pending_.clear();
        ended_ = false;
    }

    [[nodiscard]] std::string read(std::size_t max) override
    {
        if (!filter_)
            start(false);
        while (pending_.empty() && !ended_) {
            std::string block = reader_.read(max);
            const bool is_end = block.empty();
            if (rewriter_) { // the From: header first, then what the wire needs
                std::string rewritten;
                if (is_end)
                    rewriter_->finish(rewritten);
                else
                    rewriter_->put(block, rewritten);
                block = std::move(rewritten);
            }
            filter_->put(block, pending_);
            if (is_end) {
                filter_->finish(pending_);
                ended_ = true;
                report();
                break;
            }
        }
        return std::exchange(pending_, std::string());
    }

private:
    void report() const
    {
        if (rewriter_ && rewriter_->rewrote())
            log::info(log::fields({{"event", "from-rewritten"}, {"id", id_}}));
        if (filter_->sent_8bit_unconverted())
            log::warning(log::fields(
                {{"event", "eight-bit-unconverted"},
                 {"id", id_},
                 {"reason", "8-bit content that cannot be encoded (no MIME-Version, a header, a "
                            "message/* part) sent to a smarthost without 8BITMIME "
                            "(RFC 6152 section 3)"}}));
        if (filter_->lines_broken() > 0 || filter_->parts_converted() > 0)
            log::info(log::fields(
                {{"event", "content-changed"},
                 {"id", id_},
                 {"lines-broken", std::to_string(filter_->lines_broken())},
                 {"parts-quoted-printable", std::to_string(filter_->parts_converted())}}));
    }

    spool::content_reader reader_;
    std::string id_;
    std::optional<content_filter> filter_;
    std::function<std::optional<from_rewriter>()> make_rewriter_;
    std::optional<from_rewriter> rewriter_;
    std::string pending_;
    bool ended_ = false;
};

// RFC 3464 section 2.3.4: a delayed recipient's Status is a 4.x.x code, taken from the last
// reply when it carries one (a stored reply line is read back with the reply parser).
std::string delayed_status(const std::string& last_reply)
{
    smtp::reply_parser parser;
    parser.feed(last_reply + "\r\n");
    const auto reply = parser.next();
    const std::string status = reply ? status_of(*reply) : std::string();
    return status.starts_with("4.") ? status : "4.0.0";
}

// The envelope with the given failures still pending: what goes on disk while their
// notification is not committed (a crash or a full disk then retries them rather than lose
// the notification).
spool::envelope failures_left_pending(const spool::envelope& env,
                                      const std::vector<failed_recipient>& failures)
{
    spool::envelope on_disk = env;
    for (auto& r : on_disk.recipients)
        if (r.state == spool::recipient_state::failed &&
            std::any_of(failures.begin(), failures.end(),
                        [&r](const failed_recipient& f) { return f.address == r.address; }))
            r.state = spool::recipient_state::pending;
    return on_disk;
}

} // namespace

bool is_local_sender(const queue_relay_options& options, const spool::envelope& env,
                     std::string_view address)
{
    if (address.empty())
        return false;
    if (is_local_address(address, options.local_hostname))
        return true;
    // What leafmail-sendmail made from the submitter's login (its default sender and From:).
    constexpr std::string_view uid_prefix = "uid=";
    if (env.origin != intake::to_string(intake::origin::local) ||
        !env.client_address.starts_with(uid_prefix) || options.local_domain.empty())
        return false;
    unsigned uid = 0;
    const std::string_view digits = std::string_view(env.client_address).substr(uid_prefix.size());
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), uid);
    if (error != std::errc{} || end != digits.data() + digits.size())
        return false;
    const auto at = address.rfind('@');
    return address.substr(0, at) == names_of_uid(uid).login &&
           text::iequals(address.substr(at + 1), options.local_domain);
}

queue_relay::queue_relay(spool::spool& spool, queue_relay_options options)
    : spool_(spool), options_(std::move(options))
{
    for (auto& id : spool_.list(spool::area::queue)) {
        known_.insert(id);
        ids_.push_back(std::move(id));
    }
}

bool queue_relay::has_work()
{
    std::lock_guard lock(mutex_);
    if (is_stopping())
        return false;
    if (!ready_)
        ready_ = prepare();
    return ready_.has_value();
}

std::optional<net::relay_job> queue_relay::next()
{
    std::unique_lock lock(mutex_);
    if (is_stopping())
        return std::nullopt; // the message in flight finishes, no new one starts
    if (!ready_)
        ready_ = prepare();
    // A burst still arriving (one fsync per message on a slow disk) goes on this connection
    // rather than on a new one: look again for a moment before QUIT. Bounded in time.
    const auto linger_until = std::chrono::steady_clock::now() + options_.linger;
    while (!ready_ && options_.linger.count() > 0 && !is_stopping() &&
           std::chrono::steady_clock::now() < linger_until) {
        lock.unlock();
        std::this_thread::sleep_for(linger_poll_interval);
        lock.lock();
        if (!ready_)
            ready_ = prepare();
    }
    if (!ready_ || is_stopping())
        return std::nullopt;
    const std::uint64_t tag = next_tag_++;
    job j = std::move(*ready_);
    ready_.reset();
    // Providers refuse or rewrite mail whose sender is not the account: a local sender
    // (root@laptop, cron's "www-data") gets the route's address, and with rewrite-from its
    // From: header too, on the way out (the spooled content stays as it was received).
    std::function<std::optional<from_rewriter>()> make_rewriter;
    if (options_.rewrite_from && !options_.rewrite_sender.empty())
        make_rewriter = [options = options_, env = j.env] {
            return std::optional<from_rewriter>(std::in_place, options.rewrite_sender,
                                                [options, env](std::string_view address) {
                                                    return is_local_sender(options, env, address);
                                                });
        };
    net::relay_job out{
        outgoing_for(j.env, tag, j.sent_indexes),
        std::make_unique<spooled_content>(std::move(*j.content), j.id, std::move(make_rewriter))};
    // The null sender of a notification is not local and stays <> (RFC 5321 section 4.5.5).
    const std::string& sender = out.message.reverse_path;
    if (!options_.rewrite_sender.empty() && !sender.empty() &&
        is_local_sender(options_, j.env, sender))
        out.message.reverse_path = options_.rewrite_sender;
    j.content.reset();
    active_.emplace(tag, std::move(j));
    return out;
}

void queue_relay::finished(const smtp::message_result& result)
{
    std::lock_guard lock(mutex_);
    auto it = active_.find(result.tag);
    if (it == active_.end())
        return;
    job& j = it->second;
    const std::int64_t now = options_.now();
    for (const auto& r : result.recipients) {
        if (r.status == smtp::delivery_status::unconfirmed)
            unconfirmed_ids_.insert(j.id);
        if (r.status == smtp::delivery_status::deferred ||
            r.status == smtp::delivery_status::unconfirmed)
            last_deferral_ = r.why.to_string();
        log::info(log::fields({{"event", to_string(r.status)},
                               {"id", j.id},
                               {"to", "<" + r.address + ">"},
                               {"relay", options_.relay_name},
                               {"reply", r.why.to_string()}}));
    }
    const auto now_failed = apply_result(j.env, j.sent_indexes, result, now);
    j.newly_failed.insert(j.newly_failed.end(), now_failed.begin(), now_failed.end());
    if (!result.last) {
        // More of its recipients follow in another transaction. The deliveries are recorded
        // now, so that a crash never sends them again; this run's failures stay pending on
        // disk until the last transaction, when one notification covers them all (committed
        // before the state that says "failed", as in settle()).
        spool_.save_state(spool::area::queue, failures_left_pending(j.env, j.newly_failed), j.room);
        // The next transaction's outcome needs room too, before its content goes out; without
        // it the connection ends here (what was delivered is recorded).
        if (!reserve_room(j))
            throw std::system_error(ENOSPC, std::generic_category(),
                                    "cannot reserve the room to record the outcome of " + j.id +
                                        ": its remaining recipients wait");
        return;
    }
    if (j.env.has_pending())
        schedule_next_attempt(j.env, now);
    job done = std::move(j);
    active_.erase(it);
    try {
        settle(done, done.newly_failed, now, options_.remote_host);
    } catch (const std::system_error& e) {
        // Without reserved room (one pending recipient, not delivered) nothing is lost by an
        // outcome not recorded: it is tried again. Nothing more goes out in this run.
        if (done.has_room)
            throw;
        stop_out_of_room(done.id, e.what());
    }
}

void queue_relay::expire_old_entries()
{
    std::lock_guard lock(mutex_);
    const std::int64_t now = options_.now();
    // Ids sort by arrival time, so the walk stops at the first young one.
    for (const auto& id : ids_) {
        const std::int64_t at = spool::queue_id_time(id);
        if (at == 0 || now - at <= options_.max_queue_age.count())
            break;
        auto entry_lock = spool_.try_lock_entry(spool::area::queue, id);
        if (!entry_lock)
            continue;
        auto env = load(id);
        if (!env || !is_expired(*env, now, options_.max_queue_age))
            continue;
        job j{id, std::move(*env), std::move(*entry_lock), {}, std::nullopt};
        expire_job(j, now);
    }
}

std::size_t queue_relay::count_unconfirmed() const
{
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& id : spool_.list(spool::area::queue))
        if (unconfirmed_ids_.count(id))
            ++n;
    return n;
}

void queue_relay::warn_delayed_entries()
{
    const std::int64_t warn_after = options_.warn_after.count();
    if (warn_after <= 0)
        return;
    std::lock_guard lock(mutex_);
    const std::int64_t now = options_.now();
    // Ids sort by arrival time, so the walk stops at the first young one.
    for (const auto& id : ids_) {
        const std::int64_t at = spool::queue_id_time(id);
        if (at == 0 || now - at < warn_after)
            break;
        auto entry_lock = spool_.try_lock_entry(spool::area::queue, id);
        if (!entry_lock)
            continue;
        auto env = load(id);
        if (!env || !env->has_pending() || env->delay_notice_at != 0 || !should_notify(*env) ||
            now - env->queued_at < warn_after)
            continue;
        std::vector<failed_recipient> waiting;
        for (const auto& r : env->recipients)
            if (r.state == spool::recipient_state::pending)
                waiting.push_back({r.address, delayed_status(r.last_reply), r.last_reply,
                                   !r.last_reply.empty(), r.original_address});
        // Recorded before the notice is committed: a crash in between loses this one warning
        // rather than ever sending a second.
        env->delay_notice_at = now;
        spool_.save_state(spool::area::queue, *env);
        bounce(id, *env, waiting, now, options_.remote_host, true);
        ++delay_notices_;
    }
}

std::size_t queue_relay::record_unreached(const std::string& reason, bool count_attempt)
{
    std::lock_guard lock(mutex_);
    const std::int64_t now = options_.now();
    std::size_t recorded = 0;
    // prepare() picks exactly what next() would have handed out (this route's, due, not
    // expired, not locked by a tool), so only entries the flush meant to send count an
    // attempt; each entry's lock is held while its state is written.
    for (;;) {
        std::optional<job> j = ready_ ? std::move(ready_) : prepare();
        ready_.reset();
        if (!j)
            break;
        for (auto& r : j->env.recipients) {
            if (r.state != spool::recipient_state::pending)
                continue;
            if (count_attempt)
                ++r.attempts;
            r.last_attempt_at = now;
            r.last_reply = reason;
        }
        try {
            if (j->has_room)
                spool_.save_state(spool::area::queue, j->env, j->room);
            else
                spool_.save_state(spool::area::queue, j->env);
        } catch (const std::system_error& e) {
            // Only the record of a failed attempt is lost (nothing was sent): say so, stop.
            log::warning(log::fields(
                {{"event", "attempt-not-recorded"}, {"id", j->id}, {"error", e.what()}}));
            break;
        }
        ++recorded;
    }
    return recorded;
}

std::string queue_relay::last_deferral() const
{
    std::lock_guard lock(mutex_);
    return last_deferral_;
}

std::int64_t queue_relay::next_attempt_at() const
{
    std::lock_guard lock(mutex_);
    return next_attempt_at_;
}

std::size_t queue_relay::delay_notices() const
{
    std::lock_guard lock(mutex_);
    return delay_notices_;
}

void queue_relay::note_next_attempt(std::int64_t at)
{
    if (at > 0 && (next_attempt_at_ == 0 || at < next_attempt_at_))
        next_attempt_at_ = at;
}

// After a deferral: retry-min doubling with each attempt that reached the smarthost, up to
// retry-max, with jitter (watch/retry_schedule.hpp).
void queue_relay::schedule_next_attempt(spool::envelope& env, std::int64_t now)
{
    std::uint32_t attempts = 0;
    for (const auto& r : env.recipients)
        if (r.state == spool::recipient_state::pending)
            attempts = std::max(attempts, r.attempts);
    const auto delay =
        watch::retry_delay(options_.retry, attempts, options_.random ? options_.random() : 0.0);
    env.next_attempt_at = now + std::chrono::ceil<std::chrono::seconds>(delay).count();
    note_next_attempt(env.next_attempt_at);
}

std::size_t queue_relay::count_still_pending() const
{
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& id : spool_.list(spool::area::queue))
        if (known_.count(id) && !not_taken_.count(id))
            ++n;
    return n;
}

std::size_t queue_relay::sent() const
{
    std::lock_guard lock(mutex_);
    return sent_;
}

std::size_t queue_relay::failed() const
{
    std::lock_guard lock(mutex_);
    return failed_;
}

std::size_t queue_relay::bounces() const
{
    std::lock_guard lock(mutex_);
    return bounces_;
}

std::optional<spool::envelope> queue_relay::load(const std::string& id)
{
    try {
        return spool_.load(spool::area::queue, id);
    } catch (const spool::corrupt_entry& e) {
        log::error(log::fields({{"event", "corrupt"}, {"id", id}, {"error", e.what()}}));
        spool_.quarantine(spool::area::queue, id);
        return std::nullopt;
    }
}

std::optional<queue_relay::job> queue_relay::prepare()
{
    for (;;) {
        if (ids_.empty()) {
            // Entries that arrived during the flush, and our own notifications, go too; each
            // id is tried once per flush, so this ends.
            for (auto& id : spool_.list(spool::area::queue))
                if (known_.insert(id).second)
                    ids_.push_back(std::move(id));
            if (ids_.empty())
                return std::nullopt;
        }
        std::string id = std::move(ids_.front());
        ids_.pop_front();
        auto entry_lock = spool_.try_lock_entry(spool::area::queue, id);
        if (!entry_lock) {
            log::debug(
                log::fields({{"event", "skipped"}, {"id", id}, {"reason", "locked or gone"}}));
            continue;
        }
        auto env = load(id);
        if (!env)
            continue;
        if (options_.takes && !options_.takes(*env)) {
            not_taken_.insert(id); // another route's: its lock goes with entry_lock here
            continue;
        }
        job j{id, std::move(*env), std::move(*entry_lock), {}, std::nullopt};
        const std::int64_t now = options_.now();
        if (!j.env.has_pending()) {
            settle(j, {}, now, {}); // finished earlier, interrupted before its move/removal
            continue;
        }
        if (is_expired(j.env, now, options_.max_queue_age)) {
            expire_job(j, now);
            continue;
        }
        if (options_.due_only && j.env.next_attempt_at > now) {
            note_next_attempt(j.env.next_attempt_at);
            continue; // its time has not come; the lock goes with j
        }
        try {
            j.content = spool_.open_content(spool::area::queue, id);
        } catch (const spool::corrupt_entry& e) {
            log::error(log::fields({{"event", "corrupt"}, {"id", id}, {"error", e.what()}}));
            spool_.quarantine(spool::area::queue, id);
            continue;
        }
        if (!reserve_room(j))
            return std::nullopt;
        return j;
    }
}

// Recording an outcome must need no new disk blocks, or a full disk would make every run send
// the recipients already delivered another copy: the room is reserved before the content goes
// out, and without it nothing more goes out. One pending recipient needs none: delivered, the
// entry is removed; otherwise nobody has it, and an attempt not recorded only costs a retry.
bool queue_relay::reserve_room(job& j)
{
    j.has_room = false;
    if (j.env.count(spool::recipient_state::pending) <= 1)
        return true;
    try {
        j.room = spool_.reserve_state(spool::area::queue, j.env);
        j.has_room = true;
        return true;
    } catch (const std::system_error& e) {
        stop_out_of_room(j.id, e.what());
        return false;
    }
}

void queue_relay::stop_out_of_room(const std::string& id, const std::string& error)
{
    out_of_room_ = true;
    log::error(log::fields({{"event", "spool-full"},
                            {"id", id},
                            {"error", error},
                            {"hint", "nothing more is sent until the spool's filesystem has room "
                                     "to record what becomes of each message"}}));
}

bool queue_relay::is_out_of_room() const
{
    std::lock_guard lock(mutex_);
    return out_of_room_;
}

void queue_relay::expire_job(job& j, std::int64_t now)
{
    log::info(
        log::fields({{"event", "expired"},
                     {"id", j.id},
                     {"max-queue-age", std::to_string(options_.max_queue_age.count()) + "s"}}));
    const auto newly_failed = expire(j.env, now);
    settle(j, newly_failed, now, {});
}

// Makes the entry's new state durable and moves it where it belongs. Order matters for
// crashes: the notification is committed before the state that says "failed", so a crash in
// between repeats the notification rather than losing it.
void queue_relay::settle(job& j, const std::vector<failed_recipient>& newly_failed,
                         std::int64_t now, const std::string& remote_host)
{
    if (!newly_failed.empty() && should_notify(j.env)) {
        try {
            bounce(j.id, j.env, newly_failed, now, remote_host, false);
        } catch (const std::exception&) {
            // No notification (a full disk): what was delivered is recorded all the same, in
            // the reserved room, so it is never sent again; the failures are retried.
            spool_.save_state(spool::area::queue, failures_left_pending(j.env, newly_failed),
                              j.room);
            throw;
        }
    }
    if (j.env.has_pending()) {
        spool_.save_state(spool::area::queue, j.env, j.room);
    } else if (j.env.count(spool::recipient_state::failed) > 0) {
        spool_.save_state(spool::area::queue, j.env, j.room);
        spool_.move(j.id, spool::area::queue, spool::area::failed);
        ++failed_;
    } else {
        // Every recipient delivered. Nothing to record: the entry goes.
        spool_.remove(spool::area::queue, j.id);
        ++sent_;
    }
}

void queue_relay::bounce(const std::string& id, const spool::envelope& original,
                         const std::vector<failed_recipient>& recipients, std::int64_t now,
                         const std::string& remote_host, bool delayed)
{
    std::string start;
    try {
        auto reader = spool_.open_content(spool::area::queue, id);
        while (start.size() < max_bounced_headers) {
            std::string block = reader.read(max_bounced_headers - start.size());
            if (block.empty())
                break;
            start += block;
        }
    } catch (const std::exception& e) {
        log::warning(log::fields({{"event", "bounce-headers"}, {"id", id}, {"error", e.what()}}));
    }
    intake::source from;
    from.from = intake::origin::dsn;
    // RFC 5321 section 4.5.5: notifications use the null reverse-path.
    intake::new_entry writer = intake::begin_entry(spool_, {options_.reporting_host, 0}, from, "",
                                                   intake::as_given({original.reverse_path}),
                                                   static_cast<std::time_t>(now));
    dsn_request request;
    request.reporting_host = options_.reporting_host;
    request.remote_host = remote_host;
    request.queue_id = id;
    request.message_id = writer.id() + ".dsn";
    request.sender = original.reverse_path;
    request.arrival_date = original.queued_at;
    request.now = now;
    request.recipients = recipients;
    request.delayed = delayed;
    if (delayed)
        request.will_retry_until = original.queued_at + options_.max_queue_age.count();
    request.original_headers = header_section(start, max_bounced_headers);
    writer.write(make_dsn(request));
    writer.envelope().is_bounce = 1;
    const std::string bounce_id = writer.id();
    writer.commit();
    if (!delayed)
        ++bounces_; // delay notices are counted by warn_delayed_entries()
    log::info(log::fields({{"event", delayed ? "delay-notice" : "bounce"},
                           {"id", bounce_id},
                           {"for", id},
                           {"to", "<" + original.reverse_path + ">"},
                           {"recipients", std::to_string(recipients.size())}}));
}

} // namespace leafmail::relay
