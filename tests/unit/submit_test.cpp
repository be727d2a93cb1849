#include "leafmail/sendmail/submit.hpp"

#include "leafmail/exit_status.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <fstream>
#include <unistd.h>

using namespace leafmail;
using namespace leafmail::sendmail;

namespace {

struct fixture {
    test::temp_dir dir;
    spool::spool spool{dir.path() / "spool"};
    config settings;
    submitter who{1000, "joe", "Joe User"};

    fixture()
    {
        settings.hostname = "host.example";
        settings.domain = "example.org";
        settings.receiver.min_free_space = 0;
    }

    submission_result submit(const std::string& input, const std::vector<std::string>& args)
    {
        const auto path = dir.path() / "input";
        std::ofstream(path, std::ios::binary | std::ios::trunc) << input;
        const int fd = ::open(path.c_str(), O_RDONLY);
        REQUIRE(fd >= 0);
        sendmail_options options = parse_sendmail_args(args, "sendmail");
        try {
            auto result = submit_message(spool, settings, options, who, fd, 86400);
            ::close(fd);
            return result;
        } catch (...) {
            ::close(fd);
            throw;
        }
    }

    std::string content(const std::string& id)
    {
        auto reader = spool.open_content(spool::area::queue, id);
        std::string out;
        for (std::string chunk; !(chunk = reader.read(65536)).empty();)
            out += chunk;
        return out;
    }
};

int exit_of(fixture& f, const std::string& input, const std::vector<std::string>& args)
{
    try {
        (void)f.submit(input, args);
    } catch (const submission_error& e) {
        return e.exit_status();
    }
    return 0;
}

} // namespace

TEST_CASE(
    "a bare message gets Received, From, Date and Message-ID, CRLF line ends and its envelope")
{
    fixture f;
    const auto r = f.submit("Subject: hi\nTo: x@y\n\nhello\n", {"root@example.org"});
    REQUIRE(r.recipients == std::vector<std::string>{"root@example.org"});
    CHECK(r.reverse_path == "joe@example.org");
    const std::string text = f.content(r.id);
    CHECK(text.starts_with(
        "Received: (from joe@localhost)\r\n\tby host.example (leafmail) with local id " + r.id));
    CHECK(text.find("\r\nSubject: hi\r\nTo: x@y\r\nFrom: Joe User <joe@example.org>\r\n"
                    "Date: Fri, 02 Jan 1970 00:00:00 +0000\r\nMessage-ID: <" +
                    r.id + "@host.example>\r\n\r\nhello\r\n") != std::string::npos);
    CHECK(text.ends_with("\r\n\r\nhello\r\n"));
    const auto env = f.spool.load(spool::area::queue, r.id);
    REQUIRE(env);
    CHECK(env->origin == "local");
    CHECK(env->client_address == "uid=1000");
    CHECK(env->reverse_path == "joe@example.org");
    CHECK(env->content_size == text.size());
}

TEST_CASE("-t takes To, Cc and Bcc, removes Bcc, and adds argument recipients")
{
    fixture f;
    const auto r =
        f.submit("To: A <a@x.org>, b@x.org\nCc: undisclosed:;\nBcc: Hidden <h@y.org>,\n  h2@y.org\n"
                 "Subject: s\n\nbody\n",
                 {"-t", "extra@z.org", "a@x.org"});
    CHECK(r.recipients ==
          std::vector<std::string>{"extra@z.org", "a@x.org", "b@x.org", "h@y.org", "h2@y.org"});
    const std::string text = f.content(r.id);
    CHECK(text.find("Bcc") == std::string::npos);
    CHECK(text.find("h@y.org") == std::string::npos);
    CHECK(text.find("To: A <a@x.org>, b@x.org\r\n") != std::string::npos);
}

TEST_CASE("existing Date, Message-ID and From are kept and -f and -F set sender and name")
{
    fixture f;
    auto r = f.submit(
        "From: Boss <boss@x>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <m@x>\n\nb\n",
        {"-f", "bounces@x", "a@b"});
    CHECK(r.reverse_path == "bounces@x");
    std::string text = f.content(r.id);
    CHECK(text.find("From: Boss <boss@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: "
                    "<m@x>\r\n\r\nb\r\n") != std::string::npos);
    CHECK(text.find("Fri, 02 Jan 1970") != std::string::npos); // only in Received:

    r = f.submit("Subject: s\n\nb\n", {"-F", "Cron Daemon", "-f", "<>", "a@b"});
    CHECK(r.reverse_path.empty());
    text = f.content(r.id);
    CHECK(text.find("From: Cron Daemon <joe@example.org>\r\n") != std::string::npos);
}

TEST_CASE("a lone dot ends the message unless -i")
{
    fixture f;
    auto r = f.submit("Subject: s\n\none\n.\ntwo\n", {"a@b"});
    CHECK(f.content(r.id).ends_with("\r\n\r\none\r\n"));
    r = f.submit("Subject: s\n\none\n.\ntwo\n", {"-oi", "a@b"});
    CHECK(f.content(r.id).ends_with("\r\n\r\none\r\n.\r\ntwo\r\n"));
}

TEST_CASE("input without a header or an empty line still makes a proper message")
{
    fixture f;
    const auto r = f.submit("just text\nmore", {"a@b"});
    const std::string text = f.content(r.id);
    CHECK(text.ends_with("Message-ID: <" + r.id + "@host.example>\r\n\r\njust text\r\nmore\r\n"));
    const auto empty = f.submit("", {"a@b"});
    CHECK(f.content(empty.id).ends_with("@host.example>\r\n\r\n"));
}

TEST_CASE("refusals leave nothing in the spool and carry sysexits codes")
{
    fixture f;
    CHECK(exit_of(f, "Subject: s\n\nb\n", {}) == exit_status::data_error);
    CHECK(exit_of(f, "Subject: s\n\nb\n", {"-t"}) == exit_status::data_error);
    CHECK(exit_of(f, "Subject: s\n\nb\n", {"a b@c"}) == exit_status::data_error);
    CHECK(exit_of(f, "To: <x@y>\r\nRCPT TO:<z@w>\n\nb\n", {"-t", "a@b"}) == 0);
    CHECK(exit_of(f, "Subject: s\n\nb\n", {"-f", "bad sender@x", "a@b"}) ==
          exit_status::data_error);
    f.settings.receiver.max_message_size = 1000;
    CHECK(exit_of(f, "Subject: s\n\n" + std::string(5000, 'x') + "\n", {"a@b"}) ==
          exit_status::data_error);
    f.settings.receiver.min_free_space = UINT64_MAX;
    CHECK(exit_of(f, "Subject: s\n\nb\n", {"a@b"}) == exit_status::temp_fail);
    CHECK(f.spool.list(spool::area::queue).size() == 1); // only the one accepted above
    CHECK(std::filesystem::is_empty(f.dir.path() / "spool" / "tmp"));
}

TEST_CASE("max-recipients applies to sendmail as to leafmaild")
{
    fixture f;
    f.settings.receiver.max_recipients = 3;
    CHECK(exit_of(f, "Subject: s\n\nbody\n", {"a@x.org", "b@x.org", "c@x.org"}) == 0);
    CHECK(exit_of(f, "To: a@x.org, b@x.org\nCc: c@x.org, d@x.org\n\nbody\n", {"-t"}) ==
          exit_status::data_error);
    CHECK(exit_of(f, "Subject: s\n\nbody\n", {"a@x.org", "b@x.org", "c@x.org", "d@x.org"}) ==
          exit_status::data_error);
    CHECK(f.spool.list(spool::area::queue).size() == 1); // nothing stored for the refused
}
