#include "leafmail/config.hpp"

#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fstream>

#include <sys/stat.h>

using namespace leafmail;
namespace po = boost::program_options;

namespace {

struct config_file {
    leafmail::test::temp_dir dir;
    std::string path;
    explicit config_file(const std::string& text) : path((dir.path() / "leafmail.conf").string())
    {
        std::ofstream(path) << text;
    }
};

parsed_command_line parse(std::vector<std::string> args)
{
    po::options_description tool("tool");
    tool.add_options()("help", "help")("version", "version");
    std::vector<const char*> argv{"leafmail-test"};
    for (const auto& a : args)
        argv.push_back(a.c_str());
    return parse_command_line(static_cast<int>(argv.size()), argv.data(), tool);
}

} // namespace

TEST_CASE("a configuration file sets every kind of value")
{
    config_file file("# comment\n"
                     "spool = /var/tmp/spool\n"
                     "hostname = mx.example\n"
                     "listen = 127.0.0.1:2525\n"
                     "listen = [::1]:2525\n"
                     "allow = 10.0.0.0/8\n"
                     "deny = 10.9.0.0/16\n"
                     "max-message-size = 10M\n"
                     "max-recipients = 7\n"
                     "idle-timeout = 2m\n"
                     "smarthost = smtp.example:2587\n"
                     "tls = tls\n"
                     "tls-verify = no\n"
                     "max-queue-age = 3d\n");
    const config c = parse({"--config", file.path}).settings;
    CHECK(c.spool == "/var/tmp/spool");
    CHECK(c.hostname == "mx.example");
    CHECK(c.domain == "mx.example");
    CHECK(c.relay.helo == "mx.example");
    CHECK(c.receiver.listen == std::vector<std::string>{"127.0.0.1:2525", "[::1]:2525"});
    CHECK(c.receiver.access.is_allowed("10.1.1.1"));
    CHECK_FALSE(c.receiver.access.is_allowed("10.9.1.1"));
    CHECK_FALSE(c.receiver.access.is_allowed("127.0.0.1")); // allow replaces the default
    CHECK(c.receiver.max_message_size == 10 * 1024 * 1024);
    CHECK(c.receiver.max_recipients == 7);
    CHECK(c.receiver.idle_timeout == std::chrono::seconds(120));
    CHECK(c.relay.host() == "smtp.example");
    CHECK(c.relay.port() == 2587);
    CHECK(c.relay.tls == smtp::client_tls::implicit);
    CHECK_FALSE(c.relay.tls_verify);
    CHECK(c.relay.max_queue_age == std::chrono::hours(72));
}

TEST_CASE("defaults are safe: loopback only, port 25, TLS verified")
{
    config_file file("");
    const config c = parse({"--config", file.path}).settings;
    CHECK(c.receiver.listen == std::vector<std::string>{"127.0.0.1:25"});
    CHECK(c.receiver.access.is_allowed("127.0.0.1"));
    CHECK_FALSE(c.receiver.access.is_allowed("192.0.2.1"));
    CHECK(c.receiver.max_message_size == 25 * 1024 * 1024);
    CHECK(c.receiver.max_recipients == 100);
    CHECK(c.receiver.max_connections == 100);
    CHECK(c.receiver.idle_timeout == std::chrono::seconds(300));
    CHECK(c.relay.tls == smtp::client_tls::starttls);
    CHECK(c.relay.tls_verify);
    CHECK_FALSE(c.relay.auth_over_plaintext);
}

TEST_CASE("the command line wins over the file, key for key")
{
    config_file file("max-recipients = 7\nlisten = 127.0.0.1:2525\n");
    const config c =
        parse({"--config", file.path, "--max-recipients", "9", "--listen", "127.0.0.2:26"})
            .settings;
    CHECK(c.receiver.max_recipients == 9);
    CHECK(c.receiver.listen == std::vector<std::string>{"127.0.0.2:26"});
}

TEST_CASE("smarthost ports default by TLS mode")
{
    relay_settings r;
    r.smarthost = "smtp.example";
    r.tls = smtp::client_tls::none;
    CHECK(r.port() == 25);
    r.tls = smtp::client_tls::starttls;
    CHECK(r.port() == 587);
    r.tls = smtp::client_tls::implicit;
    CHECK(r.port() == 465);
    r.smarthost = "[2001:db8::1]:2525";
    CHECK(r.host() == "2001:db8::1");
    CHECK(r.port() == 2525);
}

TEST_CASE("configuration errors name the file, the line and the key")
{
    struct bad_case {
        const char* text;
        const char* expected_place;
        const char* expected_key;
    };
    const bad_case cases[] = {
        {"spool = /x\nno-such-key = 1\n", ":2", "no-such-key"},
        {"\n\nmax-recipients = many\n", ":3", "max-recipients"},
        {"max-message-size = 12Q\n", ":1", "max-message-size"},
        {"idle-timeout = 0\n", ":1", "idle-timeout"},
        {"allow = 10.0.0.0/33\n", ":1", "allow"},
        {"tls = maybe\n", ":1", "tls"},
        {"tls-verify = perhaps\n", ":1", "tls-verify"},
        {"listen = 127.0.0.1\n", ":1", "listen"},
        {"listen = 127.0.0.1:99999\n", ":1", "listen"},
        {"smarthost = relay:0\n", ":1", "smarthost"},
        // Issue 11: the second setting's own line, and the line of the first.
        {"spool = /a\nspool = /b\n", ":2", "spool"},
        {"spool = /a\n\n# a comment\nspool = /b\n", ":4: 'spool' is set twice (first on line 1)",
         "spool"},
        // Issue 11: a line without '=' (Boost said only "invalid line", without a number).
        {"spool = /a\nsmarthost relay.example:25\n", ":2", "smarthost relay.example:25"},
        {"auth-user = me\n", ":1", "auth-user"},
        {"[section]\nkey = 1\n", ":1", "[section]"},
        {"auth-user = me\nauth-token-command = get-token\n", ":2", "auth-token-command"},
        {"auth-user = me\nauth-password-command = p\nauth-mechanisms = xoauth2\n", ":3",
         "auth-mechanisms"},
        {"auth-mechanisms = plain scram-sha-1\n", ":1", "auth-mechanisms"},
        {"rewrite-sender = nobody\n", ":1", "rewrite-sender"},
        {"rewrite-from = yes\n", ":1", "rewrite-from"}, // without rewrite-sender
        {"rewrite-sender = me@example.org\nrewrite-from = perhaps\n", ":2", "rewrite-from"},
        {"admin-address = root\n", ":1", "admin-address"},
        {"hostname = laptop\nadmin-address = root@Laptop\n", ":2", "admin-address"}, // local
        {"admin-address = me@localhost\n", ":1", "admin-address"},
        // [route NAME] sections
        {"[route work]\nsmarthost = a:25\ncolour = blue\n", ":3", "colour"},
        {"[route work]\ntls = none\n", ":1", "smarthost"},
        {"[route work]\nsmarthost = a:25\n[route work]\nsmarthost = b:25\n", ":3", "work"},
        {"[route work]\nsmarthost = a:25\nsenders = me@example.org example.org\n", ":3", "senders"},
        {"[route work]\nsmarthost = a:25\nsenders = <me@example.org>\n", ":3", "senders"},
        {"[route work]\nsmarthost = a:25\nsenders = @exa..mple.org\n", ":3", "senders"},
        {"[route work]\nsmarthost = a:25\nmax-queue-age = 1d\n", ":3", "max-queue-age"},
        {"[route work]\nsmarthost = a:25\ntls = maybe\n", ":3", "tls"},
        {"[route work]\nsmarthost = a:25\n\nauth-user = me\n", ":4", "auth-user"},
        {"[route work]\nsmarthost = a:25\nhelo = x\nhelo = y\n", ":4", "helo"},
        {"[route default]\nsmarthost = a:25\n", ":1", "default"},
        {"[route]\nsmarthost = a:25\n", ":1", "[route]"},
        {"[route work]\nsmarthost\n", ":2", "smarthost"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        config_file file(c.text);
        try {
            (void)parse({"--config", file.path});
            FAIL("no config_error");
        } catch (const config_error& e) {
            const std::string what = e.what();
            CHECK_THAT(what, Catch::Contains(file.path + c.expected_place));
            CHECK_THAT(what, Catch::Contains(c.expected_key));
        }
    }
}

TEST_CASE("a named configuration file that does not exist is an error")
{
    leafmail::test::temp_dir dir;
    const std::string missing = (dir.path() / "nope.conf").string();
    CHECK_THROWS_AS(parse({"--config", missing}), config_error);
}

TEST_CASE("bad command-line flags are usage errors, bad values on it are config errors")
{
    config_file file("");
    CHECK_THROWS_AS(parse({"--config", file.path, "--no-such-flag"}), po::error);
    CHECK_THROWS_WITH(parse({"--config", file.path, "--max-recipients", "x"}),
                      Catch::Contains("command line"));
}

TEST_CASE("a configuration path that is no regular file is an error naming it")
{
    leafmail::test::temp_dir dir;
    const std::string directory = dir.path().string();
    CHECK_THROWS_WITH(load_config_file(directory, true),
                      Catch::Contains(directory) && Catch::Contains("directory"));
    const std::string fifo = (dir.path() / "fifo").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_AS(load_config_file(fifo, true), config_error); // and it does not block
}

TEST_CASE("procfs, sysfs and devices are never configuration")
{
    CHECK_NOTHROW(load_config_file("/dev/null", true)); // the one device that means "none"
    for (const char* path : {"/proc/self/cmdline", "/proc/self/environ", "/dev/zero"}) {
        INFO(path);
        CHECK_THROWS_WITH(load_config_file(path, true), Catch::Contains(path));
    }
}

TEST_CASE("route sections are routes of their own beside the top-level default route")
{
    config_file file("smarthost = default.example:25\n"
                     "auth-user = everyone\n"
                     "auth-password-file = /etc/leafmail.secret\n"
                     "# a work account\n"
                     "[route work]\n"
                     "smarthost = smtp.work.example:587  # the company relay\n"
                     "senders = me@work.example, @Team.Work.Example\n"
                     "senders = boss@work.example\n"
                     "auth-user = me\n"
                     "auth-password-command = pass show work\n"
                     "\n"
                     "[ route  gmail ]\n"
                     "smarthost = smtp.gmail.com:465\n"
                     "tls = tls\n"
                     "senders = me@gmail.com\n"
                     "auth-user = me@gmail.com\n"
                     "auth-mechanisms = XOAUTH2 oauthbearer\n"
                     "auth-token-command = oauth-helper --account me\n"
                     "rewrite-sender = me@gmail.com\n"
                     "connections = 2\n");
    const config c = parse({"--config", file.path, "--hostname", "laptop"}).settings;
    CHECK(c.relay.smarthost == "default.example:25");
    CHECK(c.relay.auth_user == "everyone");
    REQUIRE(c.routes.size() == 2);

    const route& work = c.routes[0];
    CHECK(work.name == "work");
    CHECK(work.relay.smarthost == "smtp.work.example:587");
    CHECK(work.relay.auth_user == "me");
    CHECK(work.relay.auth_password_command == "pass show work");
    CHECK(work.relay.auth_password_file.empty()); // nothing inherited from the top level
    CHECK(work.relay.auth_mechanisms.empty());
    CHECK(work.relay.helo == c.relay.helo); // the same default as the top level
    CHECK(work.relay.tls == smtp::client_tls::starttls);
    REQUIRE(work.senders.size() == 3);
    CHECK(work.senders[0].local == "me");
    CHECK(work.senders[0].domain == "work.example");
    CHECK(work.senders[1].local.empty());
    CHECK(work.senders[1].domain == "team.work.example");
    CHECK(work.senders[2].local == "boss");

    const route& gmail = c.routes[1];
    CHECK(gmail.name == "gmail");
    CHECK(gmail.relay.tls == smtp::client_tls::implicit);
    CHECK(gmail.relay.port() == 465);
    CHECK(gmail.relay.auth_mechanisms == std::vector<std::string>{"XOAUTH2", "OAUTHBEARER"});
    CHECK(gmail.relay.auth_token_command == "oauth-helper --account me");
    CHECK(gmail.relay.rewrite_sender == "me@gmail.com");
    CHECK(gmail.relay.connections == 2);
}

TEST_CASE("a file without sections has only the default route")
{
    config_file file("smarthost = relay.example\n");
    const config c = parse({"--config", file.path}).settings;
    CHECK(c.routes.empty());
    CHECK(c.relay.smarthost == "relay.example");
}

TEST_CASE("an error in the top-level keys is placed on its line even when a section repeats it")
{
    config_file file("smarthost = relay:0\n[route work]\nsmarthost = work:25\n");
    CHECK_THROWS_WITH(parse({"--config", file.path}), Catch::Contains(file.path + ":1"));
    config_file later("tls = none\n[route work]\nsmarthost = work:0\n");
    CHECK_THROWS_WITH(parse({"--config", later.path}), Catch::Contains(later.path + ":3"));
}

TEST_CASE("the EHLO name defaults to a dotted name when one can be made without DNS")
{
    CHECK(default_helo("laptop.example.org", "example.net") == "laptop.example.org");
    CHECK(default_helo("laptop", "example.org") == "laptop.example.org");
    CHECK(default_helo("laptop", "laptop") == "laptop");
    CHECK(default_helo("laptop", "") == "laptop");
    CHECK(is_dotted_name("laptop.example.org"));
    CHECK(is_dotted_name("[192.0.2.1]"));
    CHECK_FALSE(is_dotted_name("laptop"));
    CHECK_FALSE(is_dotted_name(".laptop"));
    CHECK_FALSE(is_dotted_name("laptop."));
    CHECK_FALSE(is_dotted_name(""));
}

TEST_CASE("helo comes from hostname and domain unless it is set")
{
    config_file bare("hostname = laptop\ndomain = example.org\n");
    CHECK(parse({"--config", bare.path}).settings.relay.helo == "laptop.example.org");
    config_file set("hostname = laptop\ndomain = example.org\nhelo = relay.example.net\n");
    CHECK(parse({"--config", set.path}).settings.relay.helo == "relay.example.net");
    config_file alone("hostname = laptop\n");
    CHECK(parse({"--config", alone.path}).settings.relay.helo == "laptop");
}

TEST_CASE("a repeatable key may be set on several lines")
{
    config_file file("listen = 127.0.0.1:2525\nlisten = [::1]:2525\n");
    const auto parsed = parse({"--config", file.path});
    CHECK(parsed.settings.receiver.listen ==
          std::vector<std::string>{"127.0.0.1:2525", "[::1]:2525"});
}
