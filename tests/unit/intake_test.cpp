#include "leafmail/intake/intake.hpp"

#include "leafmail/exit_status.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <cerrno>

using namespace leafmail;

TEST_CASE("origins are named as spool-format/README.md lists them")
{
    CHECK(intake::to_string(intake::origin::smtp) == "smtp");
    CHECK(intake::to_string(intake::origin::local) == "local");
    CHECK(intake::to_string(intake::origin::dsn) == "dsn");
}

TEST_CASE("one errno table gives the SMTP outcome and the sysexits status")
{
    auto of = [](int error) {
        return intake::classify(std::system_error(error, std::generic_category(), "x"));
    };
    for (int full : {ENOSPC, EDQUOT, EFBIG}) {
        INFO(full);
        CHECK(of(full).what == intake::outcome::insufficient_storage);
        CHECK(of(full).exit_status == exit_status::temp_fail);
    }
    CHECK(of(EMFILE).what == intake::outcome::local_error);
    CHECK(of(EMFILE).exit_status == exit_status::temp_fail);
    CHECK(of(EACCES).exit_status == exit_status::no_permission);
    CHECK(of(EIO).exit_status == exit_status::io_error);
    CHECK(of(ENOTDIR).exit_status == exit_status::cant_create);
}

TEST_CASE("a local entry records its submitter in the envelope and the Received line")
{
    test::temp_dir dir;
    spool::spool s(dir.path());
    auto entry = intake::begin_entry(s, {"mx.example", 0}, intake::local_source(1234, "eve"),
                                     "eve@example.org", {{"bob@example.net", ""}}, 1700000000);
    entry.write("Subject: x\r\n\r\nbody\r\n");
    const std::string id = entry.id();
    entry.commit();
    const auto env = *s.load(spool::area::queue, id);
    CHECK(env.origin == "local");
    CHECK(env.client_address == "uid=1234");
    CHECK(env.queued_at == 1700000000);
    REQUIRE(env.recipients.size() == 1);
    auto reader = s.open_content(spool::area::queue, id);
    const std::string head = reader.read(200);
    CHECK(head.rfind("Received: ", 0) == 0);
    CHECK(head.find("(from eve@localhost)") != std::string::npos);
}

TEST_CASE("below the free-space floor nothing is created and the error is ENOSPC")
{
    test::temp_dir dir;
    spool::spool s(dir.path());
    intake::source from;
    try {
        (void)intake::begin_entry(s, {"mx.example", UINT64_MAX}, from, "", {{"a@b.example", ""}},
                                  1);
        FAIL("an entry was started below the floor");
    } catch (const std::system_error& e) {
        CHECK(intake::classify(e).what == intake::outcome::insufficient_storage);
    }
    CHECK(s.list(spool::area::queue).empty());
}

TEST_CASE("a bounce carries no Received line, a null reverse-path and origin dsn")
{
    test::temp_dir dir;
    spool::spool s(dir.path());
    intake::source from;
    from.from = intake::origin::dsn;
    auto entry =
        intake::begin_entry(s, {"mx.example", 0}, from, "", {{"alice@example.org", ""}}, 5);
    entry.write("From: MAILER-DAEMON\r\n\r\nx\r\n");
    const std::string id = entry.id();
    entry.commit();
    const auto env = *s.load(spool::area::queue, id);
    CHECK(env.origin == "dsn");
    CHECK(env.reverse_path.empty());
    CHECK(s.open_content(spool::area::queue, id).read(9) == "From: MAI");
}

TEST_CASE("local recipients are expanded with their originals and each address once")
{
    auto table = std::make_shared<alias_table>();
    table->entries["root"] = {"alice@example.org", "bob@example.org"};
    table->entries["postmaster"] = {"root"};
    const local_recipients rules{table, "admin@example.org", "laptop"};
    const auto e =
        intake::expand_recipients(rules, {"root@laptop", "postmaster", "www-data@localhost",
                                          "carol@example.net", "alice@example.org"});
    CHECK(e.refusal.empty());
    CHECK(e.recipients ==
          std::vector<intake::accepted_recipient>{{"alice@example.org", "root@laptop"},
                                                  {"bob@example.org", "root@laptop"},
                                                  {"admin@example.org", "www-data@localhost"},
                                                  {"carol@example.net", ""}});

    const auto refused =
        intake::expand_recipients({nullptr, "", "laptop"}, {"a@b.example", "root"});
    CHECK(refused.recipients.empty());
    CHECK(refused.refused == "root");
    CHECK_FALSE(refused.refusal.empty());
}

TEST_CASE("the envelope keeps the original recipient beside the new one")
{
    test::temp_dir dir;
    spool::spool s(dir.path());
    auto entry = intake::begin_entry(s, {"mx.example", 0}, intake::local_source(0, "root"), "",
                                     {{"alice@example.org", "root"}}, 1700000000);
    entry.write("Subject: x\r\n\r\nbody\r\n");
    const std::string id = entry.id();
    entry.commit();
    const auto env = *s.load(spool::area::queue, id);
    REQUIRE(env.recipients.size() == 1);
    CHECK(env.recipients[0].address == "alice@example.org");
    CHECK(env.recipients[0].original_address == "root");
    // The trace line names the recipient as it was handed over.
    auto reader = s.open_content(spool::area::queue, id);
    CHECK(reader.read(400).find("for <root>") != std::string::npos);
}
