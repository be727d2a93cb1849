#include "leafmail/program.hpp"

#include "leafmail/exit_status.hpp"

#include <boost/program_options.hpp>
#include <catch2/catch.hpp>

#include <iostream>
#include <sstream>

using namespace leafmail;
namespace po = boost::program_options;

namespace {

// Captures what a stream receives while it lives.
class captured {
public:
    explicit captured(std::ostream& stream) : stream_(stream), old_(stream.rdbuf(text_.rdbuf())) {}
    ~captured() { stream_.rdbuf(old_); }
    captured(const captured&) = delete;
    captured& operator=(const captured&) = delete;
    [[nodiscard]] std::string text() const { return text_.str(); }

private:
    std::ostringstream text_;
    std::ostream& stream_;
    std::streambuf* old_;
};

program test_program(unsigned keys = config_keys::flush)
{
    program p;
    p.name = "leafmail-test";
    p.usage = "Usage: leafmail-test";
    p.flags.add_options()("verbose", "say more");
    p.keys = keys;
    return p;
}

// Runs the test program with arguments; --config names a file that does not exist unless
// given, so the machine's /etc/leafmail.conf never matters.
int run(const program& p, std::vector<std::string> args,
        const std::function<int(const program_context&)>& body)
{
    std::vector<char*> argv{const_cast<char*>("leafmail-test")};
    for (auto& a : args)
        argv.push_back(a.data());
    return run_program(static_cast<int>(argv.size()), argv.data(), p, body);
}

int returns_ok(const program_context&)
{
    return exit_status::ok;
}

} // namespace

TEST_CASE("the runner answers --version and --help without running the program")
{
    bool ran = false;
    auto body = [&](const program_context&) {
        ran = true;
        return exit_status::ok;
    };
    captured out(std::cout);
    CHECK(run(test_program(), {"--version"}, body) == exit_status::ok);
    CHECK(run(test_program(), {"--help"}, body) == exit_status::ok);
    CHECK_FALSE(ran);
    CHECK(out.text().find("leafmail-test " LEAFMAIL_VERSION "\n") != std::string::npos);
    CHECK(out.text().find("Usage: leafmail-test") != std::string::npos);
    CHECK(out.text().find("--verbose") != std::string::npos);
}

TEST_CASE("--help lists only the configuration keys the program uses")
{
    {
        captured out(std::cout);
        CHECK(run(test_program(config_keys::list), {"--help"}, returns_ok) == exit_status::ok);
        CHECK(out.text().find("--spool") != std::string::npos);
        CHECK(out.text().find("--smarthost") == std::string::npos);
        CHECK(out.text().find("--listen") == std::string::npos);
    }
    {
        captured out(std::cout);
        CHECK(run(test_program(config_keys::flush), {"--help"}, returns_ok) == exit_status::ok);
        CHECK(out.text().find("--smarthost") != std::string::npos);
        CHECK(out.text().find("--listen") == std::string::npos);
    }
}

TEST_CASE("a key another program uses is still accepted on the command line")
{
    captured err(std::cerr);
    const int status =
        run(test_program(config_keys::list),
            {"--config", "/nonexistent/leafmail.conf", "--listen", "127.0.0.1:1"}, returns_ok);
    CHECK(status == exit_status::config); // the named file is missing: read, not refused
    CHECK(err.text().find("unrecognised") == std::string::npos);
}

TEST_CASE("the runner maps what escapes the program to sysexits statuses")
{
    captured err(std::cerr);
    const std::vector<std::string> no_file{"--config", "/dev/null"};
    CHECK(run(test_program(), {"--no-such-flag"}, returns_ok) == exit_status::usage);
    CHECK(run(test_program(), {"--config", "/nonexistent/leafmail.conf"}, returns_ok) ==
          exit_status::config);
    CHECK(run(test_program(), no_file, [](const program_context&) -> int {
              throw config_error("bad key");
          }) == exit_status::config);
    CHECK(run(test_program(), no_file, [](const program_context&) -> int {
              throw po::error("bad flag");
          }) == exit_status::usage);
    CHECK(run(test_program(), no_file, [](const program_context&) -> int {
              throw program_error(exit_status::data_error, "no recipients");
          }) == exit_status::data_error);
    CHECK(run(test_program(), no_file, [](const program_context&) -> int {
              throw std::system_error(ENOENT, std::generic_category(), "cannot open /x");
          }) == exit_status::os_error);
    CHECK(run(test_program(), no_file, [](const program_context&) -> int {
              throw std::logic_error("bug");
          }) == exit_status::software);
    CHECK(err.text().find("leafmail-test: no recipients\n") != std::string::npos);
    CHECK(err.text().find("Try 'leafmail-test --help'") != std::string::npos);
}

TEST_CASE("a program chooses the status of an environment failure")
{
    captured err(std::cerr);
    program p = test_program();
    p.status_of_system_error = [](const std::system_error&) { return exit_status::temp_fail; };
    CHECK(run_guarded(p, []() -> int {
              throw std::system_error(EIO, std::generic_category(), "cannot write /x");
          }) == exit_status::temp_fail);
    CHECK(run_guarded(p, []() -> int { throw usage_error("-Z is not an option"); }) ==
          exit_status::usage);
    CHECK(err.text().find("leafmail-test: cannot write /x") != std::string::npos);
}

TEST_CASE("the program reads the same command line again on request")
{
    captured err(std::cerr);
    std::string spool_again;
    CHECK(run(test_program(), {"--config", "/dev/null", "--spool", "/tmp/a-spool"},
              [&](const program_context& context) {
                  CHECK(context.parsed.settings.spool == "/tmp/a-spool");
                  spool_again = context.reread_config().spool.string();
                  return exit_status::ok;
              }) == exit_status::ok);
    CHECK(spool_again == "/tmp/a-spool");
}
