#include "leafmail/list/queue_actions.hpp"

#include "temp_dir.hpp"

#include <catch2/catch.hpp>

using namespace leafmail;
using namespace leafmail::list;

namespace {

std::string commit(spool::spool& s)
{
    auto writer = s.create_entry();
    writer.write("Subject: x\r\n\r\nbody\r\n");
    spool::envelope env;
    env.origin = "sendmail";
    env.reverse_path = "a@b";
    env.recipients.push_back({"ok@x", spool::recipient_state::delivered, 1, 1, "250 ok", "", 0});
    env.recipients.push_back(
        {"bad@x", spool::recipient_state::failed, 3, 1, "550 no such user", "", 0});
    env.recipients.push_back(
        {"later@x", spool::recipient_state::pending, 2, 1, "451 later", "", 0});
    const std::string id = writer.id();
    writer.commit(env);
    return id;
}

const std::string unknown = "0000000000000001-00000001-0001";

} // namespace

TEST_CASE("hold and release move an entry between queue and hold")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const std::string id = commit(s);

    auto r = apply_action(s, queue_action::hold, id, 0);
    CHECK(r.ok);
    CHECK(r.message == id + ": held");
    CHECK(s.list(spool::area::hold) == std::vector<std::string>{id});
    CHECK(apply_action(s, queue_action::hold, id, 0).ok); // already held: fine
    CHECK_FALSE(apply_action(s, queue_action::requeue, unknown, 0).ok);

    r = apply_action(s, queue_action::release, id, 0);
    CHECK(r.ok);
    CHECK(s.list(spool::area::queue) == std::vector<std::string>{id});
    CHECK(apply_action(s, queue_action::release, id, 0).message == id + ": already queued");
}

TEST_CASE("requeue puts a failed entry back with failed recipients pending and attempts reset")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const std::string id = commit(s);
    REQUIRE(s.move(id, spool::area::queue, spool::area::failed));
    CHECK_FALSE(apply_action(s, queue_action::hold, id, 0).ok);
    CHECK_FALSE(apply_action(s, queue_action::release, id, 0).ok);

    const auto r = apply_action(s, queue_action::requeue, id, 1234567);
    CHECK(r.ok);
    CHECK(r.message.find("2 recipients pending") != std::string::npos);
    const auto env = s.load(spool::area::queue, id);
    REQUIRE(env);
    CHECK(env->queued_at == 1234567);
    CHECK(env->recipients[0].state == spool::recipient_state::delivered);
    CHECK(env->recipients[1].state == spool::recipient_state::pending);
    CHECK(env->recipients[1].attempts == 0);
    CHECK(env->recipients[1].last_reply.empty());
    CHECK(env->recipients[2].attempts == 0);
    CHECK(s.list(spool::area::failed).empty());
}

TEST_CASE("delete removes an entry from any area, and unknown and bad ids are errors")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const std::string id = commit(s);
    REQUIRE(s.move(id, spool::area::queue, spool::area::hold));
    const auto r = apply_action(s, queue_action::remove, id, 0);
    CHECK(r.ok);
    CHECK(r.message == id + ": deleted (was held)");
    CHECK(s.list(spool::area::hold).empty());

    auto missing = apply_action(s, queue_action::remove, id, 0);
    CHECK_FALSE(missing.ok);
    CHECK_FALSE(missing.is_transient);
    CHECK(missing.message == id + ": no such entry");
    CHECK(apply_action(s, queue_action::remove, "../../etc/passwd", 0).message ==
          "../../etc/passwd: not a queue id");
}

TEST_CASE("an entry being relayed is busy, not changed")
{
    test::temp_dir dir;
    spool::spool s(dir.path() / "spool");
    const std::string id = commit(s);
    const auto lock = s.try_lock_entry(spool::area::queue, id);
    REQUIRE(lock);
    const auto r = apply_action(s, queue_action::remove, id, 0);
    CHECK_FALSE(r.ok);
    CHECK(r.is_transient);
    CHECK(s.list(spool::area::queue) == std::vector<std::string>{id});
}
