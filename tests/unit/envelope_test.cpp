#include "leafmail/spool/envelope.hpp"
#include "leafmail/spool/spool.hpp"

#include <catch2/catch.hpp>

using namespace leafmail::spool;

namespace {
envelope sample_envelope()
{
    envelope env;
    env.id = "00005f4a3b2c1d0e-00001f3a-0001";
    env.queued_at = 1795000000;
    env.origin = "smtp";
    env.client_address = "127.0.0.1";
    env.helo_name = "client.example";
    env.reverse_path = "alice@example.org";
    env.recipients = {{"bob@example.net", recipient_state::pending, 0, 0, "", "", 0},
                      {"carol \"x\"@example.net", recipient_state::failed, 2, 1795000100,
                       "550 5.1.1 no such user\nsecond", "", 0}};
    env.content_size = 1234;
    env.body_8bit = 1;
    return env;
}
} // namespace

TEST_CASE("an envelope survives freeze and thaw unchanged")
{
    const envelope env = sample_envelope();
    CHECK(thaw(freeze(env)) == env);
    envelope null_sender = env;
    null_sender.reverse_path.clear();
    null_sender.is_bounce = 1;
    null_sender.recipients.clear();
    CHECK(thaw(freeze(null_sender)) == null_sender);
}

TEST_CASE("thaw refuses what it cannot read as an envelope")
{
    const std::string good = freeze(sample_envelope());
    CHECK_THROWS_AS(thaw(""), corrupt_entry);
    CHECK_THROWS_AS(thaw("garbage that is not an archive"), corrupt_entry);
    CHECK_THROWS_AS(thaw(good.substr(0, good.size() / 2)), corrupt_entry);
}

TEST_CASE("thaw refuses an envelope from a newer format version")
{
    // Text archive: "22 serialization::archive 18 0 3 <fields>": after the library version
    // come the envelope's class flags, "0", and its class version, "3".
    std::string text = freeze(sample_envelope());
    const std::string marker = "serialization::archive ";
    auto pos = text.find(marker);
    REQUIRE(pos != std::string::npos);
    pos = text.find(' ', pos + marker.size()); // past the library version
    REQUIRE(text.compare(pos, 5, " 0 3 ") == 0);
    text.replace(pos, 5, " 0 9 ");
    CHECK_THROWS_WITH(thaw(text), Catch::Contains("newer"));
}

TEST_CASE("thaw refuses a recipient from a newer format version")
{
    // The vector's count, its item version (the recipient's class version) and the first
    // recipient's class information (tracking flag, class version) precede its fields.
    std::string text = freeze(sample_envelope());
    const auto pos = text.find(" 2 2 0 2 15 bob@example.net ");
    REQUIRE(pos != std::string::npos);
    text.replace(pos, 9, " 2 7 0 7 ");
    CHECK_THROWS_WITH(thaw(text), Catch::Contains("recipient format version 7 is newer"));
}

TEST_CASE("thaw refuses an unconfirmed flag other than 0 or 1")
{
    envelope env = sample_envelope();
    env.recipients[0].unconfirmed = 2;
    CHECK_THROWS_WITH(thaw(freeze(env)), Catch::Contains("unconfirmed flag"));
}

TEST_CASE("an alias replacement and an unconfirmed delivery survive freeze and thaw")
{
    envelope env = sample_envelope();
    env.recipients[0].original_address = "root";
    env.recipients[1].unconfirmed = 1;
    CHECK(thaw(freeze(env)) == env);
}

TEST_CASE("envelope counts recipients by state")
{
    const envelope env = sample_envelope();
    CHECK(env.has_pending());
    CHECK(env.count(recipient_state::failed) == 1);
    CHECK(env.count(recipient_state::delivered) == 0);
}
