#include "leafmail/relay/flush.hpp"

#include "leafmail/exit_status.hpp"
#include "leafmail/log.hpp"
#include "leafmail/net/relay_connection.hpp"
#include "leafmail/net/tls_context.hpp"
#include "leafmail/relay/credentials.hpp"
#include "leafmail/relay/delivery.hpp"
#include "leafmail/relay/dsn.hpp"
#include "leafmail/spool/queue_id.hpp"
#include "leafmail/spool/spool.hpp"

#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>

namespace leafmail::relay {

namespace {

// The original's header section copied into a notification is cut at this size.
constexpr std::size_t max_bounced_headers = 64 * 1024;

std::int64_t system_now()
{
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

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

/// The spool side of a flush: hands out entries in arrival order, records results.
/// Thread-safe: several connections may share it.
class queue_relay : public net::relay_job_source {
public:
    queue_relay(spool::spool& spool, const config& settings, std::function<std::int64_t()> now)
        : spool_(spool), settings_(settings), now_(std::move(now))
    {
        for (auto& id : spool_.list(spool::area::queue)) {
            known_.insert(id);
            ids_.push_back(std::move(id));
        }
    }

    /// True when an entry is ready to go (prepares it, so a flush with nothing to send never
    /// connects).
    bool has_work()
    {
        std::lock_guard lock(mutex_);
        if (!ready_)
            ready_ = prepare();
        return ready_.has_value();
    }

    std::optional<net::relay_job> next() override
    {
        std::lock_guard lock(mutex_);
        if (!ready_)
            ready_ = prepare();
        if (!ready_)
            return std::nullopt;
        std::uint64_t tag = next_tag_++;
        job j = std::move(*ready_);
        ready_.reset();
        net::relay_job out{outgoing_for(j.env, tag, j.sent_indexes), std::move(*j.content)};
        j.content.reset();
        active_.emplace(tag, std::move(j));
        return out;
    }

    void finished(const smtp::message_result& result) override
    {
        std::lock_guard lock(mutex_);
        auto it = active_.find(result.tag);
        if (it == active_.end())
            return;
        job& j = it->second;
        std::int64_t now = now_();
        for (const auto& r : result.recipients)
            if (r.status == smtp::delivery_status::unconfirmed)
                unconfirmed_ids_.insert(j.id);
        for (const auto& r : result.recipients)
            log::info(log::fields({{"event", to_string(r.status)},
                                   {"id", j.id},
                                   {"to", "<" + r.address + ">"},
                                   {"relay", settings_.relay.smarthost},
                                   {"reply", r.why.to_string()}}));
        auto now_failed = apply_result(j.env, j.sent_indexes, result, now);
        j.newly_failed.insert(j.newly_failed.end(), now_failed.begin(), now_failed.end());
        if (!result.last) {
            // More of its recipients follow in another transaction. The deliveries are
            // recorded now, so a crash never sends them again; this run's failures stay
            // pending on disk until the last transaction, when one notification covers them
            // all (committed before the state that says "failed", as in settle()).
            spool::envelope on_disk = j.env;
            for (std::size_t index : j.sent_indexes)
                if (on_disk.recipients[index].state == spool::recipient_state::failed)
                    on_disk.recipients[index].state = spool::recipient_state::pending;
            spool_.save_state(spool::area::queue, on_disk);
            return;
        }
        job done = std::move(j);
        active_.erase(it);
        settle(done, done.newly_failed, now, settings_.relay.host());
    }

    /// Fails and bounces the entries older than max-queue-age without sending anything, so
    /// they expire even while the smarthost is unreachable. Ids sort by arrival time, so the
    /// walk stops at the first young one.
    void expire_old_entries()
    {
        std::lock_guard lock(mutex_);
        std::int64_t now = now_();
        for (const auto& id : ids_) {
            std::int64_t at = spool::queue_id_time(id);
            if (at == 0 || now - at <= settings_.relay.max_queue_age.count())
                break;
            auto entry_lock = spool_.try_lock_entry(spool::area::queue, id);
            if (!entry_lock)
                continue;
            auto env = load(id);
            if (!env || !is_expired(*env, now, settings_.relay.max_queue_age))
                continue;
            job j{id, std::move(*env), std::move(*entry_lock), {}, std::nullopt};
            expire_job(j, now);
        }
    }

    /// Entries we saw that are still waiting in queue/.
    std::size_t count_still_pending() const
    {
        std::size_t n = 0;
        for (const auto& id : spool_.list(spool::area::queue))
            if (known_.count(id))
                ++n;
        return n;
    }

    std::size_t sent = 0;
    std::size_t failed = 0;
    std::size_t bounces = 0;
    /// Entries left pending by a transaction whose dot got no reply.
    std::size_t count_unconfirmed() const
    {
        std::size_t n = 0;
        for (const auto& id : spool_.list(spool::area::queue))
            if (unconfirmed_ids_.count(id))
                ++n;
        return n;
    }

private:
    struct job {
        std::string id;
        spool::envelope env;
        spool::file_lock lock; // held from load to settle: no other tool changes the entry
        std::vector<std::size_t> sent_indexes;
        std::optional<spool::content_reader> content;
        std::vector<failed_recipient> newly_failed = {}; // by this run's transactions so far
    };

    std::optional<spool::envelope> load(const std::string& id)
    {
        try {
            return spool_.load(spool::area::queue, id);
        } catch (const spool::corrupt_entry& e) {
            log::error(log::fields({{"event", "corrupt"}, {"id", id}, {"error", e.what()}}));
            spool_.quarantine(spool::area::queue, id);
            return std::nullopt;
        }
    }

    std::optional<job> prepare()
    {
        for (;;) {
            if (ids_.empty()) {
                // Entries that arrived during the flush, and our own notifications, go too;
                // each id is tried once per flush, so this ends.
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
            job j{id, std::move(*env), std::move(*entry_lock), {}, std::nullopt};
            std::int64_t now = now_();
            if (!j.env.has_pending()) {
                settle(j, {}, now, {}); // finished earlier, interrupted before its move/removal
                continue;
            }
            if (is_expired(j.env, now, settings_.relay.max_queue_age)) {
                expire_job(j, now);
                continue;
            }
            try {
                j.content = spool_.open_content(spool::area::queue, id);
            } catch (const spool::corrupt_entry& e) {
                log::error(log::fields({{"event", "corrupt"}, {"id", id}, {"error", e.what()}}));
                spool_.quarantine(spool::area::queue, id);
                continue;
            }
            return j;
        }
    }

    void expire_job(job& j, std::int64_t now)
    {
        log::info(log::fields(
            {{"event", "expired"},
             {"id", j.id},
             {"max-queue-age", std::to_string(settings_.relay.max_queue_age.count()) + "s"}}));
        auto failed = expire(j.env, now);
        settle(j, failed, now, {});
    }

    /// Makes the entry's new state durable and moves it where it belongs. Order matters for
    /// crashes: the notification is committed before the state that says "failed", so a
    /// crash in between repeats the notification rather than losing it.
    void settle(job& j, const std::vector<failed_recipient>& newly_failed, std::int64_t now,
                const std::string& remote_host)
    {
        if (!newly_failed.empty() && should_notify(j.env))
            bounce(j, newly_failed, now, remote_host);
        if (j.env.has_pending()) {
            spool_.save_state(spool::area::queue, j.env);
        } else if (j.env.count(spool::recipient_state::failed) > 0) {
            spool_.save_state(spool::area::queue, j.env);
            spool_.move(j.id, spool::area::queue, spool::area::failed);
            ++failed;
        } else {
            // Every recipient delivered. Nothing to record: the entry goes.
            spool_.remove(spool::area::queue, j.id);
            ++sent;
        }
    }

    void bounce(const job& j, const std::vector<failed_recipient>& recipients, std::int64_t now,
                const std::string& remote_host)
    {
        std::string start;
        try {
            auto reader = spool_.open_content(spool::area::queue, j.id);
            while (start.size() < max_bounced_headers) {
                std::string block = reader.read(max_bounced_headers - start.size());
                if (block.empty())
                    break;
                start += block;
            }
        } catch (const std::exception& e) {
            log::warning(
                log::fields({{"event", "bounce-headers"}, {"id", j.id}, {"error", e.what()}}));
        }
        spool::entry_writer writer = spool_.create_entry();
        dsn_request request;
        request.reporting_host = settings_.hostname;
        request.remote_host = remote_host;
        request.queue_id = j.id;
        request.message_id = writer.id() + ".dsn";
        request.sender = j.env.reverse_path;
        request.arrival_date = j.env.queued_at;
        request.now = now;
        request.recipients = recipients;
        request.original_headers = header_section(start, max_bounced_headers);
        writer.write(make_dsn(request));
        spool::envelope env;
        env.queued_at = now;
        env.origin = "dsn";
        env.reverse_path = ""; // RFC 5321 section 4.5.5: notifications use the null path
        spool::recipient to;
        to.address = j.env.reverse_path;
        env.recipients.push_back(std::move(to));
        env.is_bounce = 1;
        std::string bounce_id = writer.id();
        writer.commit(std::move(env));
        ++bounces;
        log::info(log::fields({{"event", "bounce"},
                               {"id", bounce_id},
                               {"for", j.id},
                               {"to", "<" + j.env.reverse_path + ">"},
                               {"recipients", std::to_string(recipients.size())}}));
    }

    spool::spool& spool_;
    const config& settings_;
    std::function<std::int64_t()> now_;
    std::mutex mutex_;
    std::deque<std::string> ids_;
    std::unordered_set<std::string> known_;
    std::unordered_set<std::string> unconfirmed_ids_;
    std::optional<job> ready_;
    std::map<std::uint64_t, job> active_;
    std::uint64_t next_tag_ = 1;
};

smtp::client_options client_options_for(const config& settings)
{
    smtp::client_options o;
    o.helo = settings.relay.helo.empty() ? settings.hostname : settings.relay.helo;
    o.auth_over_plaintext = settings.relay.auth_over_plaintext;
    o.max_messages = settings.relay.max_messages_per_connection;
    o.max_recipients_per_transaction = settings.relay.max_recipients_per_transaction;
    o.hmac_md5 = net::hmac_md5;
    if (!settings.relay.auth_user.empty())
        o.auth = smtp::client_credentials{settings.relay.auth_user,
                                          read_password_file(settings.relay.auth_password_file)};
    return o;
}

void dry_run(spool::spool& spool, const config& settings, std::int64_t now, flush_summary& summary)
{
    const auto& relay = settings.relay;
    for (const auto& id : spool.list(spool::area::queue)) {
        std::optional<spool::envelope> env;
        try {
            env = spool.load(spool::area::queue, id);
        } catch (const spool::corrupt_entry& e) {
            std::printf("%s corrupt (%s)\n", id.c_str(), e.what());
            continue;
        }
        if (!env || !env->has_pending())
            continue;
        std::string to;
        for (const auto& r : env->recipients)
            if (r.state == spool::recipient_state::pending)
                to += (to.empty() ? "<" : ",<") + r.address + ">";
        std::printf("%s from=<%s> to=%s size=%llu via=%s:%u%s\n", id.c_str(),
                    env->reverse_path.c_str(), to.c_str(),
                    static_cast<unsigned long long>(env->content_size), relay.host().c_str(),
                    static_cast<unsigned>(relay.port()),
                    is_expired(*env, now, relay.max_queue_age) ? " (expired: would bounce)" : "");
        ++summary.deferred;
    }
    std::fflush(stdout);
}

} // namespace

void check_relay_settings(const config& settings)
{
    const auto& relay = settings.relay;
    if (relay.smarthost.empty())
        throw config_error("'smarthost' is not set: leafmail-flush has nowhere to relay to");
    if (!relay.auth_user.empty() && relay.tls == tls_mode::none && !relay.auth_over_plaintext)
        throw config_error("'auth-user' with 'tls = none' would send the password in clear text; "
                           "use tls = starttls or tls, or set auth-over-plaintext = yes");
    if (relay.max_messages_per_connection == 0)
        throw config_error("'max-messages-per-connection' must be at least 1");
}

flush_summary run_flush(const config& settings, const flush_options& options)
{
    auto started = std::chrono::steady_clock::now();
    auto now = options.now ? options.now : std::function<std::int64_t()>(system_now);
    flush_summary summary;
    auto finish = [&] {
        summary.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return summary;
    };

    check_relay_settings(settings);
    spool::spool spool(settings.spool, false);
    if (options.dry_run) {
        dry_run(spool, settings, now(), summary);
        summary.deferred = 0; // nothing was attempted; the listing is the answer
        return finish();
    }
    // Everything that can refuse to start does so before the spool is touched.
    smtp::client_options client = client_options_for(settings);
    net::asio::ssl::context tls = net::make_client_tls_context(settings.relay);
    net::relay_endpoint endpoint = net::endpoint_from(settings.relay, options.verbose);

    // One flush at a time (cron and ip-up firing together): the second waits, then flushes
    // what the first left.
    auto flush_lock = spool.lock_flush(options.lock_timeout);
    if (!flush_lock) {
        summary.lock_busy = true;
        log::warning(
            log::fields({{"event", "busy"}, {"reason", "another flush holds the spool lock"}}));
        return finish();
    }
    spool.recover();

    queue_relay source(spool, settings, now);
    source.expire_old_entries();

    std::mutex summary_mutex;
    auto connection_loop = [&] {
        while (source.has_work()) {
            net::relay_connection_result r =
                net::relay_over_one_connection(tls, endpoint, client, source);
            std::string why = r.failure ? r.failure->to_string() : std::string();
            log::info(log::fields({{"event", r.failure ? "connection-failed" : "connection-closed"},
                                   {"relay", endpoint.host + ":" + std::to_string(endpoint.port)},
                                   {"messages", std::to_string(r.messages_attempted)},
                                   {"reason", why.empty() ? "done" : why}}));
            if (!r.connected) {
                std::lock_guard lock(summary_mutex);
                summary.smarthost_unreachable = true;
                break;
            }
            if (r.authentication_required) {
                // Our configuration's fault: every message waits, nothing bounces (the core
                // deferred them), and the operator gets one line saying what to set.
                log::error(
                    log::fields({{"event", "authentication-required"},
                                 {"relay", endpoint.host + ":" + std::to_string(endpoint.port)},
                                 {"hint", "the smarthost requires AUTH: set auth-user and "
                                          "auth-password-file"}}));
                std::lock_guard lock(summary_mutex);
                summary.authentication_required = true;
                break;
            }
            // A connection that failed before any message went out would fail again the same
            // way (authentication, TLS, a refusing greeting): stop, the rest waits.
            if (r.failure && r.messages_attempted == 0)
                break;
        }
    };
    std::size_t connections = std::max<std::size_t>(1, settings.relay.connections);
    std::exception_ptr failure;
    if (connections == 1) {
        connection_loop();
    } else {
        std::vector<std::thread> threads;
        std::mutex failure_mutex;
        for (std::size_t i = 0; i < connections; ++i)
            threads.emplace_back([&] {
                try {
                    connection_loop();
                } catch (...) {
                    std::lock_guard lock(failure_mutex);
                    failure = std::current_exception();
                }
            });
        for (auto& t : threads)
            t.join();
    }
    if (failure)
        std::rethrow_exception(failure);

    summary.sent = source.sent;
    summary.failed = source.failed;
    summary.bounces = source.bounces;
    summary.deferred = source.count_still_pending();
    summary.unconfirmed = source.count_unconfirmed();
    return finish();
}

int exit_status_of(const flush_summary& summary)
{
    if (summary.lock_busy || summary.deferred > 0)
        return exit_status::temp_fail;
    return exit_status::ok;
}

std::string summary_line(const flush_summary& summary)
{
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.2f", summary.seconds);
    std::string line = "sent " + std::to_string(summary.sent) + ", deferred " +
                       std::to_string(summary.deferred) + ", failed " +
                       std::to_string(summary.failed);
    if (summary.unconfirmed > 0)
        line += ", unconfirmed " + std::to_string(summary.unconfirmed);
    return line + " in " + seconds + " s";
}

} // namespace leafmail::relay
