#include "leafmail/sendmail/sendmail_args.hpp"

#include <catch2/catch.hpp>

using namespace leafmail::sendmail;

namespace {
sendmail_options parse(std::vector<std::string> args, std::string_view program = "sendmail")
{
    return parse_sendmail_args(args, program);
}
} // namespace

TEST_CASE("plain recipients and the common flags")
{
    auto o = parse({"-t", "-i", "-f", "me@x", "-F", "Cron Daemon", "a@b", "c@d"});
    CHECK(o.mode == sendmail_mode::deliver);
    CHECK(o.extract_recipients);
    CHECK(o.ignore_dots);
    CHECK(o.sender == "me@x");
    CHECK(o.full_name == "Cron Daemon");
    CHECK(o.recipients == std::vector<std::string>{"a@b", "c@d"});
    CHECK(o.warnings.empty());
}

TEST_CASE("values attached or separate, -r as -f, the null sender")
{
    CHECK(parse({"-fme@x"}).sender == "me@x");
    CHECK(parse({"-r", "me@x"}).sender == "me@x");
    CHECK(parse({"-f", "<>"}).sender == "");
    CHECK(parse({"-f", ""}).sender == "");
    CHECK(parse({"-FCronDaemon"}).full_name == "CronDaemon");
    CHECK_FALSE(parse({}).sender.has_value());
}

TEST_CASE("what cron, mutt and git send-email pass is accepted quietly")
{
    auto o = parse({"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"}); // Debian cron
    CHECK(o.warnings.empty());
    CHECK(o.recipients == std::vector<std::string>{"root"});
    o = parse(
        {"-oem", "-oi", "-N", "failure,delay", "-R", "hdrs", "--", "a@b", "-weird@c"}); // mutt
    CHECK(o.ignore_dots);
    CHECK(o.warnings.empty());
    CHECK(o.recipients == std::vector<std::string>{"a@b", "-weird@c"});
    o = parse({"-i", "a@b"}); // git send-email
    CHECK(o.ignore_dots);
    for (const char* quiet :
         {"-odb", "-odi", "-oQ/var/spool/x", "-v", "-U", "-G", "-Am", "-V", "-h"}) {
        std::vector<std::string> args{quiet};
        if (std::string_view(quiet) == "-V" || std::string_view(quiet) == "-h")
            args.push_back("value");
        INFO(quiet);
        CHECK(parse(args).warnings.empty());
    }
}

TEST_CASE("unknown -o options and a few Sendmail-only ones are warned about, not fatal")
{
    auto o = parse({"-oX", "a@b"});
    REQUIRE(o.warnings.size() == 1);
    CHECK(o.warnings[0].find("-oX") != std::string::npos);
    CHECK(parse({"-X", "/tmp/log", "a@b"}).warnings.size() == 1);
    CHECK(parse({"-O", "DeliveryMode=b", "a@b"}).warnings.size() == 1);
    CHECK(parse({"-q30m"}).warnings.size() == 1);
}

TEST_CASE("modes: -bs, -bp, -bm, -bi, -q, and the names mailq and newaliases")
{
    CHECK(parse({"-bs"}).mode == sendmail_mode::smtp_session);
    CHECK(parse({"-bp"}).mode == sendmail_mode::print_queue);
    CHECK(parse({"-bm", "a@b"}).mode == sendmail_mode::deliver);
    CHECK(parse({"-bi"}).mode == sendmail_mode::check_aliases);
    CHECK(parse({"-q"}).mode == sendmail_mode::flush_queue);
    CHECK(parse({}, "mailq").mode == sendmail_mode::print_queue);
    CHECK(parse({}, "newaliases").mode == sendmail_mode::check_aliases);
    CHECK(parse({"--help"}).mode == sendmail_mode::help);
    CHECK(parse({"--version"}).mode == sendmail_mode::version);
}

TEST_CASE("grouped switches and the configuration file")
{
    auto o = parse({"-ti", "-C", "/etc/x.conf"});
    CHECK(o.extract_recipients);
    CHECK(o.ignore_dots);
    CHECK(o.config_file == "/etc/x.conf");
    CHECK(parse({"--config=/a"}).config_file == "/a");
    CHECK(parse({"--config", "/b"}).config_file == "/b");
}

TEST_CASE("options end at the first recipient")
{
    auto o = parse({"a@b", "-t"});
    CHECK_FALSE(o.extract_recipients);
    CHECK(o.recipients == std::vector<std::string>{"a@b", "-t"});
}

TEST_CASE("unknown flags and missing values are usage errors")
{
    CHECK_THROWS_AS(parse({"-Z"}), usage_error);
    CHECK_THROWS_AS(parse({"--frobnicate"}), usage_error);
    CHECK_THROWS_AS(parse({"-bd"}), usage_error);
    CHECK_THROWS_AS(parse({"-f"}), usage_error);
    CHECK_THROWS_AS(parse({"-o"}), usage_error);
    CHECK_THROWS_AS(parse({"--config"}), usage_error);
}

TEST_CASE("the help names every option it supports")
{
    const std::string help = sendmail_help();
    for (const char* flag : {"-t", "-f", "-r", "-F", "-i", "-oi", "-bs", "-bp", "-bm", "-bi", "-q",
                             "-v", "-C", "--config"})
        CHECK(help.find(flag) != std::string::npos);
}
