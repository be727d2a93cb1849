#include "leafmail/relay/queue_relay.hpp"

#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <ctime>
#include <thread>

using namespace leafmail;
using leafmail::relay::queue_relay;
using leafmail::relay::queue_relay_options;
using spool::area;
using spool::recipient_state;

namespace {

constexpr std::string_view content =
    "Subject: test\r\nMessage-ID: <m1@example.org>\r\n\r\nhello\r\n";

// A spool in a temporary directory and a queue_relay over it whose clock the test sets.
struct fixture {
    test::temp_dir dir;
    spool::spool spool{dir.path() / "spool"};
    std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));

    queue_relay_options options()
    {
        queue_relay_options o;
        o.reporting_host = "flush.test";
        o.relay_name = "smarthost.test:587";
        o.remote_host = "smarthost.test";
        o.max_queue_age = std::chrono::hours(24);
        o.now = [this] { return now; };
        return o;
    }

    std::string queue(std::vector<std::string> recipients, std::string sender = "alice@example.org")
    {
        spool::entry_writer writer = spool.create_entry();
        writer.write(content);
        spool::envelope env;
        env.origin = "smtp";
        env.reverse_path = std::move(sender);
        for (auto& r : recipients)
            env.recipients.push_back({std::move(r), recipient_state::pending, 0, 0, "", "", 0});
        const std::string id = writer.id();
        writer.commit(std::move(env));
        return id;
    }

    // The notifications in queue/: entries created by the relay itself.
    std::vector<spool::envelope> bounces()
    {
        std::vector<spool::envelope> out;
        for (const auto& id : spool.list(area::queue))
            if (auto env = spool.load(area::queue, id); env && env->is_bounce)
                out.push_back(*env);
        return out;
    }

    std::string content_of(area where, const std::string& id)
    {
        auto reader = spool.open_content(where, id);
        std::string all;
        for (std::string block; !(block = reader.read(4096)).empty();)
            all += block;
        return all;
    }
};

smtp::recipient_result outcome(std::size_t index, const std::string& address,
                               smtp::delivery_status status, smtp::reply why)
{
    return {index, address, status, std::move(why)};
}

const smtp::reply accepted{250, "2.1.5", {"ok"}};
const smtp::reply busy{451, "4.3.0", {"try again"}};
const smtp::reply unknown_user{550, "5.1.1", {"no such user"}};

// Plays the connection: takes the next job, answers each recipient with `replies` in turn.
smtp::message_result relay_next(queue_relay& relay, const std::vector<smtp::reply>& replies)
{
    auto job = relay.next();
    REQUIRE(job.has_value());
    REQUIRE(job->message.recipients.size() == replies.size());
    smtp::message_result result;
    result.tag = job->message.tag;
    result.attempted = true;
    for (std::size_t i = 0; i < replies.size(); ++i) {
        const auto& r = replies[i];
        const auto status = r.is_positive()            ? smtp::delivery_status::delivered
                            : r.is_permanent_failure() ? smtp::delivery_status::failed
                                                       : smtp::delivery_status::deferred;
        result.recipients.push_back(outcome(i, job->message.recipients[i], status, r));
    }
    relay.finished(result);
    return result;
}

} // namespace

TEST_CASE("the relay hands out an entry with its pending recipients and its content")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net", "carol@example.net"});
    queue_relay relay(f.spool, f.options());
    REQUIRE(relay.has_work());
    auto job = relay.next();
    REQUIRE(job.has_value());
    CHECK(job->message.reverse_path == "alice@example.org");
    CHECK(job->message.recipients ==
          std::vector<std::string>{"bob@example.net", "carol@example.net"});
    CHECK(job->content->size() == content.size());
    CHECK(job->content->read(4096) == content);
    CHECK_FALSE(relay.next().has_value()); // one entry, handed out once per flush
    CHECK(f.spool.list(area::queue) == std::vector<std::string>{id});
}

TEST_CASE("each recipient keeps its own outcome")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net", "carol@example.net", "dave@example.net"});
    queue_relay relay(f.spool, f.options());
    relay_next(relay, {accepted, busy, unknown_user});

    const auto env = f.spool.load(area::queue, id);
    REQUIRE(env.has_value());
    REQUIRE(env->recipients.size() == 3);
    CHECK(env->recipients[0].state == recipient_state::delivered);
    CHECK(env->recipients[1].state == recipient_state::pending);
    CHECK(env->recipients[2].state == recipient_state::failed);
    for (const auto& r : env->recipients) {
        CHECK(r.attempts == 1);
        CHECK(r.last_attempt_at == f.now);
    }
    CHECK(env->recipients[1].last_reply == "451 4.3.0 try again");
    CHECK(relay.sent() == 0);
    CHECK(relay.failed() == 0);
    CHECK(relay.bounces() == 1); // for dave, at once: the others' fate does not delay it
    CHECK(relay.count_still_pending() == 1); // the notification is not this flush's yet
}

TEST_CASE("an entry whose every recipient was delivered is removed")
{
    fixture f;
    f.queue({"bob@example.net", "carol@example.net"});
    queue_relay relay(f.spool, f.options());
    relay_next(relay, {accepted, accepted});
    CHECK(f.spool.list(area::queue).empty());
    CHECK(relay.sent() == 1);
    CHECK(relay.count_still_pending() == 0);
}

TEST_CASE("a deferred entry stays queued with the reply recorded and is not tried twice")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net"});
    queue_relay relay(f.spool, f.options());
    relay_next(relay, {busy});
    CHECK_FALSE(relay.has_work());
    const auto env = f.spool.load(area::queue, id);
    REQUIRE(env.has_value());
    CHECK(env->recipients[0].state == recipient_state::pending);
    CHECK(env->recipients[0].last_reply == "451 4.3.0 try again");
    CHECK(relay.count_still_pending() == 1);
    CHECK(f.bounces().empty());

    // The next flush sends only what is still pending.
    queue_relay again(f.spool, f.options());
    relay_next(again, {accepted});
    CHECK(f.spool.list(area::queue).empty());
}

TEST_CASE("a failed entry goes to failed and its sender gets a notification")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net"});
    queue_relay relay(f.spool, f.options());
    relay_next(relay, {unknown_user});

    CHECK(f.spool.list(area::failed) == std::vector<std::string>{id});
    CHECK(relay.failed() == 1);
    const auto bounces = f.bounces();
    REQUIRE(bounces.size() == 1);
    CHECK(bounces[0].origin == "dsn");
    CHECK(bounces[0].reverse_path.empty()); // RFC 5321 4.5.5: the null reverse-path
    REQUIRE(bounces[0].recipients.size() == 1);
    CHECK(bounces[0].recipients[0].address == "alice@example.org");
    const std::string dsn = f.content_of(area::queue, bounces[0].id);
    // The status comes from the reply's enhanced code, the diagnostic from the whole reply.
    CHECK(dsn.find("Status: 5.1.1") != std::string::npos);
    CHECK(dsn.find("Diagnostic-Code: smtp; 550 5.1.1 no such user") != std::string::npos);
    CHECK(dsn.find("Remote-MTA: dns; smarthost.test") != std::string::npos);
    CHECK(dsn.find("Message-ID: <m1@example.org>") != std::string::npos); // original headers
}

TEST_CASE("a failure without an enhanced code gets the status of its reply class")
{
    fixture f;
    f.queue({"bob@example.net"});
    queue_relay relay(f.spool, f.options());
    relay_next(relay, {smtp::reply{554, "", {"go away"}}});
    const auto bounces = f.bounces();
    REQUIRE(bounces.size() == 1);
    CHECK(f.content_of(area::queue, bounces[0].id).find("Status: 5.0.0") != std::string::npos);
}

TEST_CASE("a failure of a message with the null sender is not notified")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net"}, "");
    queue_relay relay(f.spool, f.options());
    relay_next(relay, {unknown_user});
    CHECK(f.spool.list(area::failed) == std::vector<std::string>{id});
    CHECK(relay.bounces() == 0);
    CHECK(f.spool.list(area::queue).empty());
}

TEST_CASE("an entry older than max-queue-age fails without being sent")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net", "carol@example.net"});
    f.now += 2 * 24 * 3600; // two days later; max-queue-age is one
    queue_relay relay(f.spool, f.options());
    relay.expire_old_entries();

    CHECK(f.spool.list(area::failed) == std::vector<std::string>{id});
    CHECK(relay.failed() == 1);
    const auto env = f.spool.load(area::failed, id);
    REQUIRE(env.has_value());
    CHECK(env->count(recipient_state::failed) == 2);
    const auto bounces = f.bounces();
    REQUIRE(bounces.size() == 1);
    CHECK(f.content_of(area::queue, bounces[0].id).find("Status: 4.4.7") != std::string::npos);
    // What is left to send is the notification alone.
    auto job = relay.next();
    REQUIRE(job.has_value());
    CHECK(job->message.reverse_path.empty());
}

TEST_CASE("an expired entry found while preparing fails too")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net"});
    f.now += 2 * 24 * 3600;
    queue_relay relay(f.spool, f.options()); // expire_old_entries not called
    auto job = relay.next();
    REQUIRE(job.has_value());
    CHECK(job->message.reverse_path.empty()); // the notification, not the expired entry
    CHECK(f.spool.list(area::failed) == std::vector<std::string>{id});
}

TEST_CASE("an entry locked by another tool is skipped and left as it is")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net"});
    const auto before = f.spool.load(area::queue, id);
    const auto lock = f.spool.try_lock_entry(area::queue, id);
    REQUIRE(lock.has_value());
    queue_relay relay(f.spool, f.options());
    CHECK_FALSE(relay.has_work());
    CHECK_FALSE(relay.next().has_value());
    CHECK(f.spool.load(area::queue, id) == before);
    CHECK(relay.count_still_pending() == 1);
}

TEST_CASE("held entries are never handed out")
{
    fixture f;
    const std::string held = f.queue({"bob@example.net"});
    REQUIRE(f.spool.move(held, area::queue, area::hold));
    const std::string queued = f.queue({"carol@example.net"});
    queue_relay relay(f.spool, f.options());
    auto job = relay.next();
    REQUIRE(job.has_value());
    CHECK(job->message.recipients == std::vector<std::string>{"carol@example.net"});
    CHECK_FALSE(relay.next().has_value());
    CHECK(f.spool.list(area::hold) == std::vector<std::string>{held});
}

TEST_CASE("entries go out in arrival order")
{
    fixture f;
    const std::string first = f.queue({"one@example.net"});
    const std::string second = f.queue({"two@example.net"});
    queue_relay relay(f.spool, f.options());
    auto a = relay.next();
    auto b = relay.next();
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(a->message.recipients.front() == "one@example.net");
    CHECK(b->message.recipients.front() == "two@example.net");
}

TEST_CASE("a message split over transactions records each part before the next goes out")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net", "carol@example.net", "dave@example.net"});
    queue_relay relay(f.spool, f.options());
    auto job = relay.next();
    REQUIRE(job.has_value());
    // First transaction: bob delivered, carol refused for good; dave follows (last == false).
    smtp::message_result first{job->message.tag, true, {}, false};
    first.recipients.push_back(
        outcome(0, "bob@example.net", smtp::delivery_status::delivered, accepted));
    first.recipients.push_back(
        outcome(1, "carol@example.net", smtp::delivery_status::failed, unknown_user));
    relay.finished(first);
    auto on_disk = f.spool.load(area::queue, id);
    REQUIRE(on_disk.has_value());
    // The delivery is on disk (a crash now never sends bob a second copy); carol's failure
    // waits for the one notification at the end, so it is still pending on disk.
    CHECK(on_disk->recipients[0].state == recipient_state::delivered);
    CHECK(on_disk->recipients[1].state == recipient_state::pending);
    CHECK(on_disk->recipients[2].state == recipient_state::pending);
    CHECK(relay.bounces() == 0);

    smtp::message_result second{job->message.tag, true, {}, true};
    second.recipients.push_back(
        outcome(2, "dave@example.net", smtp::delivery_status::failed, unknown_user));
    relay.finished(second);
    CHECK(relay.bounces() == 1); // one notification for carol and dave
    CHECK(relay.failed() == 1);
    CHECK(f.spool.list(area::queue).size() == 1); // the notification itself
}

TEST_CASE("the content source starts over for each transaction")
{
    fixture f;
    f.queue({"bob@example.net"});
    queue_relay relay(f.spool, f.options());
    auto job = relay.next();
    REQUIRE(job.has_value());
    job->content->start(false);
    CHECK(job->content->read(4096) == content);
    CHECK(job->content->read(4096).empty());
    job->content->start(true);
    CHECK(job->content->read(4096) == content);
}

TEST_CASE("a failure before MAIL records an attempt on each entry the relay meant to send")
{
    fixture f;
    const std::string first = f.queue({"bob@example.net", "carol@example.net"});
    const std::string second = f.queue({"dave@example.net"});
    const std::string other_route = f.queue({"erin@example.net"}, "mallory@elsewhere.test");
    const std::string held = f.queue({"frank@example.net"});
    REQUIRE(f.spool.move(held, area::queue, area::hold));
    auto options = f.options();
    options.takes = [](const spool::envelope& env) {
        return env.reverse_path != "mallory@elsewhere.test";
    };
    queue_relay relay(f.spool, options);
    REQUIRE(relay.has_work()); // prepared one entry, as the flush does before connecting
    const std::string why = "451 4.4.1 cannot connect to smarthost.test:587: Connection refused";
    CHECK(relay.record_unreached(why) == 2);
    for (const auto& id : {first, second}) {
        const auto env = f.spool.load(area::queue, id);
        REQUIRE(env);
        for (const auto& r : env->recipients) {
            CHECK(r.state == recipient_state::pending);
            CHECK(r.attempts == 1);
            CHECK(r.last_attempt_at == f.now);
            CHECK(r.last_reply == why);
        }
        CHECK(env->next_attempt_at == 0); // the route's backoff decides when to probe again
    }
    CHECK(f.spool.load(area::queue, other_route)->recipients[0].attempts == 0);
    CHECK(f.spool.load(area::hold, held)->recipients[0].attempts == 0);
    CHECK_FALSE(relay.has_work());
    CHECK(relay.count_still_pending() == 2);
}

TEST_CASE("the relay remembers the last reply that left mail pending")
{
    fixture f;
    f.queue({"bob@example.net", "carol@example.net"});
    queue_relay relay(f.spool, f.options());
    CHECK(relay.last_deferral().empty());
    relay_next(relay, {accepted, busy});
    CHECK(relay.last_deferral() == "451 4.3.0 try again");
}

TEST_CASE("a lingering relay hands out an entry that arrives while it waits")
{
    fixture f;
    f.queue({"bob@example.net"});
    auto options = f.options();
    options.linger = std::chrono::milliseconds(2000);
    queue_relay relay(f.spool, options);
    relay_next(relay, {accepted});
    std::string late;
    std::thread writer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        late = f.queue({"carol@example.net"});
    });
    const auto started = std::chrono::steady_clock::now();
    auto job = relay.next();
    writer.join();
    REQUIRE(job.has_value());
    CHECK(job->message.recipients == std::vector<std::string>{"carol@example.net"});
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::milliseconds(1500));
}

TEST_CASE("without new mail a lingering relay gives up after its linger")
{
    fixture f;
    auto options = f.options();
    options.linger = std::chrono::milliseconds(150);
    queue_relay relay(f.spool, options);
    const auto started = std::chrono::steady_clock::now();
    CHECK_FALSE(relay.next().has_value());
    const auto waited = std::chrono::steady_clock::now() - started;
    CHECK(waited >= std::chrono::milliseconds(150));
    CHECK(waited < std::chrono::milliseconds(1000));
}

TEST_CASE("a watcher probe that fails before MAIL records why but counts no attempt")
{
    fixture f;
    const std::string id = f.queue({"bob@example.net"});
    queue_relay relay(f.spool, f.options());
    REQUIRE(relay.has_work());
    const std::string why = "451 4.4.1 cannot connect to smarthost.test:587: Connection refused";
    CHECK(relay.record_unreached(why, false) == 1);
    const auto env = f.spool.load(area::queue, id);
    REQUIRE(env);
    CHECK(env->recipients[0].attempts == 0);
    CHECK(env->recipients[0].last_attempt_at == f.now);
    CHECK(env->recipients[0].last_reply == why);
}
