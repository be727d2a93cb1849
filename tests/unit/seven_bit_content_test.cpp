// The content filter: long lines broken, 8-bit MIME parts made quoted-printable; any split.
#include "leafmail/relay/seven_bit_content.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace leafmail::relay;

namespace {

std::string filter_whole(std::string_view in, bool eight_bit_allowed, std::size_t split = 0)
{
    content_filter f({eight_bit_allowed});
    std::string out;
    if (split == 0) {
        f.put(in, out);
    } else {
        for (std::size_t at = 0; at < in.size(); at += split)
            f.put(in.substr(at, split), out);
    }
    f.finish(out);
    return out;
}

std::size_t longest_line(std::string_view s)
{
    std::size_t longest = 0, at = 0;
    while (at < s.size()) {
        std::size_t end = s.find("\r\n", at);
        if (end == std::string_view::npos)
            end = s.size();
        longest = std::max(longest, end - at);
        at = end + 2;
    }
    return longest;
}

bool is_seven_bit(std::string_view s)
{
    for (char c : s)
        if (static_cast<unsigned char>(c) > 127)
            return false;
    return true;
}

/// RFC 2045 section 6.7 decoding, for checking what the filter encoded.
std::string decode_qp(std::string_view s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '=') {
            out += s[i];
        } else if (s.substr(i + 1, 2) == "\r\n") {
            i += 2; // soft line break
        } else {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        }
    }
    return out;
}

} // namespace

TEST_CASE("lines over 998 octets are broken with CRLF SPACE, headers folded", "[seven_bit]")
{
    std::string body_line(5000, 'x');
    std::string header = "Subject: " + std::string(2000, 's');
    std::string in = header + "\r\nFrom: a@b\r\n\r\n" + body_line + "\r\nshort\r\n";
    for (std::size_t split : {0, 1, 7, 998, 999, 1000, 4096}) {
        INFO("split " << split);
        std::string out = filter_whole(in, true, split);
        CHECK(longest_line(out) <= 998);
        // Taking the inserted CRLF SPACE out gives the original back.
        std::string joined;
        for (std::size_t at = 0; at < out.size();) {
            std::size_t cut = out.find("\r\n ", at);
            if (cut == std::string::npos) {
                joined += out.substr(at);
                break;
            }
            joined += out.substr(at, cut - at);
            at = cut + 3;
        }
        CHECK(joined == in);
        CHECK(out.find("Subject: ") == 0);
        CHECK(out.ends_with("\r\nshort\r\n"));
    }
    content_filter f({true});
    std::string out;
    f.put(in, out);
    f.finish(out);
    CHECK(f.lines_broken() == 5 + 2); // 5000 -> 6 lines, 2009 -> 3 lines
}

TEST_CASE("a line of exactly 998 octets passes unbroken, CR LF split across chunks", "[seven_bit]")
{
    std::string in = "A: b\r\n\r\n" + std::string(998, 'y') + "\r\n";
    for (std::size_t split = 1; split < 20; ++split)
        CHECK(filter_whole(in, true, split) == in);
    CHECK(filter_whole(in, true, 1006) == in); // the chunk ends between CR and LF
}

TEST_CASE("8-bit text part of a multipart becomes quoted-printable, others untouched",
          "[seven_bit]")
{
    std::string text = "Gr\xc3\xbc\xc3\x9f"
                       "e aus K\xc3\xb6ln = 1 \r\nline with trailing space \r\n" +
                       std::string(200, 'z') + "\r\n.dot\r\n";
    std::string in = "From: a@b\r\nMIME-Version: 1.0\r\n"
                     "Content-Type: multipart/mixed;\r\n boundary=\"XX\"\r\n\r\n"
                     "preamble\r\n--XX\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Transfer-Encoding: 8bit\r\n\r\n" +
                     text +
                     "--XX\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--XX--\r\nepilogue\r\n";
    std::string whole = filter_whole(in, false);
    for (std::size_t split = 1; split < 40; ++split)
        REQUIRE(filter_whole(in, false, split) == whole);
    CHECK(is_seven_bit(whole));
    CHECK(longest_line(whole) <= 76);
    CHECK(whole.find("Content-Transfer-Encoding: 8bit") == std::string::npos);
    CHECK(whole.find("charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") !=
          std::string::npos);
    // The encoded part decodes to the original text.
    std::size_t begin = whole.find("quoted-printable\r\n\r\n") + 20;
    std::size_t end = whole.find("--XX\r\nContent-Type: application");
    CHECK(decode_qp(whole.substr(begin, end - begin)) == text);
    CHECK(whole.find("space=20\r\n") != std::string::npos); // RFC 2045 6.7 rule 3
    CHECK(whole.find("\r\nAAEC\r\n--XX--\r\nepilogue\r\n") != std::string::npos);
    content_filter f({false});
    std::string out;
    f.put(in, out);
    f.finish(out);
    CHECK(f.parts_converted() == 1);
    CHECK_FALSE(f.sent_8bit_unconverted());
}

TEST_CASE("a single-part MIME message declared 8bit is converted", "[seven_bit]")
{
    std::string in = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Transfer-Encoding: 8BIT\r\nSubject: x\r\n\r\n\xc3\xa9t\xc3\xa9\r\n";
    std::string out = filter_whole(in, false);
    CHECK(out == "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nSubject: x\r\n"
                 "Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9t=C3=A9\r\n");
    // With 8BITMIME offered nothing changes.
    CHECK(filter_whole(in, true) == in);
}

TEST_CASE("a non-MIME 8-bit message is sent as it is, flagged for a warning", "[seven_bit]")
{
    std::string in = "Subject: cron\r\n\r\nK\xc3\xb6ln\r\n";
    content_filter f({false});
    std::string out;
    f.put(in, out);
    f.finish(out);
    CHECK(out == in);
    CHECK(f.sent_8bit_unconverted());
    CHECK(f.parts_converted() == 0);
}

TEST_CASE("a long line without end streams through in bounded pieces", "[seven_bit]")
{
    content_filter f({true});
    std::string out;
    f.put("Subject: big\r\n\r\n", out);
    std::string chunk(64 * 1024, 'q');
    for (int i = 0; i < 64; ++i) { // 4 MiB without a line end
        out.clear();
        f.put(chunk, out);
        // Everything but the tail of the current line is out already.
        CHECK(out.size() + 998 >= chunk.size());
    }
    out.clear();
    f.finish(out);
    CHECK(out.size() < 1000);
}
