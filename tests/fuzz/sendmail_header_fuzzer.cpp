// leafmail-sendmail's message reading fed arbitrary stdin bytes (issue 6): line normalisation,
// header splitting, the -t address lists and the submission fixes. Checks:
//  - normalised text has no bare LF, whatever the chunking, and the chunking changes nothing;
//  - the header splitter respects its size bound;
//  - the fixed header is CRLF lines only, has Date:, Message-ID: and From:, and no Bcc:;
//  - every -t address that passes is_acceptable_address() is safe on the SMTP wire: no
//    control octets, at most 254 octets, and "<address>" reads back whole as leafmaild's
//    RCPT path, so nothing inside it (a quoted '>') can end the path early.
#include "fuzz_check.hpp"
#include "leafmail/sendmail/message.hpp"
#include "leafmail/smtp/command.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

using namespace leafmail::sendmail;

constexpr std::size_t max_header = 4096;

void check_no_bare_lf(std::string_view text)
{
    for (std::size_t i = 0; i < text.size(); ++i)
        if (text[i] == '\n')
            FUZZ_CHECK(i > 0 && text[i - 1] == '\r');
}

bool has_field(std::string_view header, std::string_view name)
{
    // At the start of the header or after a CRLF, case-insensitively; blanks may stand
    // before the colon (RFC 5322 section 4.5, obsolete syntax such as "From :").
    std::string lower(header);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    for (std::size_t line = 0; line < lower.size();) {
        if (lower.compare(line, name.size(), name) == 0) {
            std::size_t at = line + name.size();
            while (at < lower.size() && (lower[at] == ' ' || lower[at] == '\t'))
                ++at;
            if (at < lower.size() && lower[at] == ':')
                return true;
        }
        const auto next = lower.find("\r\n", line);
        if (next == std::string::npos)
            break;
        line = next + 2;
    }
    return false;
}

std::string normalize(std::string_view input, bool ignore_dots, std::size_t step)
{
    line_normalizer lines(ignore_dots);
    std::string out;
    for (std::size_t i = 0; i < input.size() && !lines.ended(); i += step)
        lines.put(input.substr(i, step), out);
    if (!lines.ended())
        lines.finish(out);
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 2)
        return 0;
    const bool ignore_dots = data[0] & 1;
    const std::size_t step = 1 + data[1] % 97;
    const std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

    const std::string normalized = normalize(input, ignore_dots, input.size() + 1);
    check_no_bare_lf(normalized);
    FUZZ_CHECK(normalize(input, ignore_dots, step) == normalized);

    header_splitter header(max_header);
    std::string body;
    for (std::size_t i = 0; i < normalized.size(); i += step)
        header.put(std::string_view(normalized).substr(i, step), body);
    header.finish(body);
    FUZZ_CHECK(header.is_complete() || header.is_too_large());
    std::size_t header_size = 0;
    for (const auto& field : header.fields()) {
        header_size += field.raw.size();
        check_no_bare_lf(field.raw);
        (void)field.value();
    }
    FUZZ_CHECK(header_size <= max_header + 1000);
    if (header.is_too_large())
        return 0;

    submission_fix fix;
    fix.from_address = "user@fuzz.example";
    fix.full_name =
        std::string(input.substr(0, std::min<std::size_t>(input.size(), 40))); // any octets
    fix.message_id = "<0123456789abcdef-00000001-0000@fuzz.example>";
    fix.now = 1700000000;
    const fixed_header fixed = fix_header(header.fields(), fix);
    check_no_bare_lf(fixed.text);
    FUZZ_CHECK(fixed.text.empty() || fixed.text.ends_with("\r\n"));
    FUZZ_CHECK(has_field(fixed.text, "date"));
    FUZZ_CHECK(has_field(fixed.text, "message-id"));
    FUZZ_CHECK(has_field(fixed.text, "from"));
    FUZZ_CHECK(!has_field(fixed.text, "bcc"));
    // No field was split in two or made up: the fixed header, read again, has the original
    // fields less Bcc: plus the added ones (a CRLF in the full name must not forge a field).
    std::size_t expected_fields =
        static_cast<std::size_t>(fixed.added_date) + fixed.added_message_id + fixed.added_from;
    for (const auto& field : header.fields())
        expected_fields += field.is("bcc") ? 0 : 1;
    header_splitter again(max_header * 4);
    std::string rest;
    again.put(fixed.text, rest);
    again.put("\r\n", rest);
    again.finish(rest);
    FUZZ_CHECK(again.fields().size() == expected_fields);
    FUZZ_CHECK(rest.empty());

    std::vector<std::string> addresses = fixed.to_cc_bcc;
    const auto more = parse_address_list(input);
    addresses.insert(addresses.end(), more.begin(), more.end());
    for (const auto& address : addresses) {
        if (!is_acceptable_address(address))
            continue;
        FUZZ_CHECK(!address.empty() && address.size() <= 254);
        for (const char c : address) {
            const auto octet = static_cast<unsigned char>(c);
            FUZZ_CHECK(octet >= 0x20 && octet != 0x7f);
        }
        const std::string qualified = qualify(address, "fuzz.example");
        const auto path = leafmail::smtp::parse_rcpt_argument("TO:<" + qualified + ">");
        const auto* rcpt = std::get_if<leafmail::smtp::rcpt_argument>(&path);
        FUZZ_CHECK(rcpt != nullptr && rcpt->forward_path == qualified);
    }
    return 0;
}
