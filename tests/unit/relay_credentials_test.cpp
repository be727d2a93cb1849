// The password file check and the HMAC-MD5 given to the client core for CRAM-MD5.
#include "leafmail/config.hpp"
#include "leafmail/net/tls_context.hpp"
#include "leafmail/relay/credentials.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace leafmail;

namespace {

fs::path write_file(const std::string& name, const std::string& content, fs::perms mode)
{
    fs::path dir =
        fs::temp_directory_path() / ("leafmail-credentials-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    fs::path file = dir / name;
    std::ofstream(file) << content;
    fs::permissions(file, mode);
    return file;
}

std::string hex(const std::string& bytes)
{
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

} // namespace

TEST_CASE("password file: first line, private to its owner", "[relay]")
{
    using fs::perms;
    auto good = write_file("good", "s3cret\nignored\n", perms::owner_read | perms::owner_write);
    CHECK(relay::read_password_file(good) == "s3cret");
    auto crlf = write_file("crlf", "pw\r\n", perms::owner_read);
    CHECK(relay::read_password_file(crlf) == "pw");
    auto group = write_file("group", "pw\n", perms::owner_read | perms::group_read);
    CHECK_THROWS_AS(relay::read_password_file(group), config_error);
    auto others = write_file("others", "Zq9-secret\n", perms::owner_read | perms::others_read);
    try {
        (void)relay::read_password_file(others);
        FAIL("accepted a world-readable password file");
    } catch (const config_error& e) {
        std::string what = e.what();
        CHECK(what.find("group or others") != std::string::npos);
        CHECK(what.find("Zq9-secret") == std::string::npos); // never the secret itself
    }
    auto empty = write_file("empty", "", perms::owner_read);
    CHECK_THROWS_AS(relay::read_password_file(empty), config_error);
    CHECK_THROWS_AS(relay::read_password_file(good.parent_path() / "missing"), config_error);
    fs::remove_all(good.parent_path());
}

TEST_CASE("HMAC-MD5 for CRAM-MD5: RFC 2195 and RFC 2104 vectors", "[relay]")
{
    // RFC 2195 section 2 example.
    CHECK(hex(net::hmac_md5("tanstaaftanstaaf", "<1896.697170952@postoffice.reston.mci.net>")) ==
          "b913a602c7eda7a495b4e6e7334d3890");
    // RFC 2104 test vector 2.
    CHECK(hex(net::hmac_md5("Jefe", "what do ya want for nothing?")) ==
          "750c783e6ab0b503eaa86e310a5db738");
}
