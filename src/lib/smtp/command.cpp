#include "leafmail/smtp/command.hpp"

#include "leafmail/text.hpp"

#include <array>
#include <limits>
#include <utility>

namespace leafmail::smtp {
namespace {

constexpr std::array<std::pair<std::string_view, verb>, 20> verbs{{
    {"HELO", verb::helo}, {"EHLO", verb::ehlo}, {"MAIL", verb::mail}, {"RCPT", verb::rcpt},
    {"DATA", verb::data}, {"RSET", verb::rset}, {"NOOP", verb::noop}, {"QUIT", verb::quit},
    {"VRFY", verb::vrfy}, {"EXPN", verb::expn}, {"HELP", verb::help}, {"STARTTLS", verb::starttls},
    {"AUTH", verb::auth}, {"BDAT", verb::bdat}, {"TURN", verb::turn}, {"ATRN", verb::atrn},
    {"ETRN", verb::etrn}, {"SEND", verb::send}, {"SOML", verb::soml}, {"SAML", verb::saml},
}};

// Locale-free ASCII helpers: peer bytes above 127 must never be case-folded by a locale.
constexpr bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}
constexpr bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

using text::iequals;

bool istarts_with(std::string_view text, std::string_view prefix)
{
    return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

// RFC 5322 3.2.3 atext, as RFC 5321 4.1.2 Atom uses it.
bool is_atext(char c)
{
    if (is_alpha(c) || is_digit(c))
        return true;
    return std::string_view{"!#$%&'*+-/=?^_`{|}~"}.find(c) != std::string_view::npos;
}

// Reads the path grammar of RFC 5321 4.1.2 one character at a time: a quoted local part may
// contain '>' or '@', so the path cannot be found by searching for them.
class path_reader {
public:
    explicit path_reader(std::string_view text) : text_(text) {}

    [[nodiscard]] std::size_t position() const { return pos_; }
    [[nodiscard]] bool at_end() const { return pos_ >= text_.size(); }
    [[nodiscard]] char peek() const { return at_end() ? '\0' : text_[pos_]; }
    bool accept(char c)
    {
        if (at_end() || text_[pos_] != c)
            return false;
        ++pos_;
        return true;
    }

    // Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
    bool domain()
    {
        const std::size_t start = pos_;
        do {
            const std::size_t label_start = pos_;
            while (!at_end() && (is_alpha(peek()) || is_digit(peek()) || peek() == '-'))
                ++pos_;
            const std::string_view label = text_.substr(label_start, pos_ - label_start);
            if (label.empty() || label.size() > max_label_length || label.front() == '-' ||
                label.back() == '-')
                return false;
        } while (accept('.'));
        return pos_ - start <= max_domain_length;
    }

    // address-literal = "[" ( IPv4 / IPv6 / General-address-literal ) "]"; checked only as
    // far as dcontent (%d33-90 / %d94-126): we never route by it, we only store it.
    bool address_literal()
    {
        const std::size_t start = pos_;
        if (!accept('['))
            return false;
        const std::size_t content_start = pos_;
        while (!at_end() && peek() != ']') {
            const char c = peek();
            if (c < 33 || c > 126 || c == '[' || c == '\\')
                return false;
            ++pos_;
        }
        if (pos_ == content_start || !accept(']'))
            return false;
        return pos_ - start <= max_domain_length;
    }

    // A-d-l = At-domain *( "," At-domain ) ":"; RFC 5321 4.1.2 / C: accepted and ignored.
    bool source_route()
    {
        do {
            if (!accept('@') || !domain())
                return false;
        } while (accept(','));
        return accept(':');
    }

    // Local-part = Dot-string / Quoted-string
    bool local_part()
    {
        const std::size_t start = pos_;
        if (accept('"')) {
            // QcontentSMTP = qtextSMTP / quoted-pairSMTP: printable ASCII only, so no
            // controls, CR, LF or NUL can hide inside quotes.
            while (!accept('"')) {
                if (at_end())
                    return false;
                const char c = text_[pos_++];
                if (c == '\\') {
                    if (at_end() || text_[pos_] < 32 || text_[pos_] > 126)
                        return false;
                    ++pos_;
                } else if (c < 32 || c > 126) {
                    return false;
                }
            }
        } else {
            do {
                const std::size_t atom_start = pos_;
                while (!at_end() && is_atext(peek()))
                    ++pos_;
                if (pos_ == atom_start)
                    return false;
            } while (accept('.'));
        }
        return pos_ - start <= max_local_part_length;
    }

    [[nodiscard]] std::string_view slice(std::size_t from) const
    {
        return text_.substr(from, pos_ - from);
    }

private:
    std::string_view text_;
    std::size_t pos_ = 0;
};

enum class path_kind { reverse, forward };

struct parsed_path {
    std::string address;
    std::string_view rest; // what follows the closing '>'
};

std::variant<parsed_path, argument_error> parse_path(std::string_view text, path_kind kind)
{
    if (text.empty() || text.front() != '<')
        return argument_error::syntax;
    path_reader in{text};
    in.accept('<');
    if (in.accept('>')) {
        // RFC 5321 4.5.5: the null reverse path, for bounces; never a recipient.
        if (kind == path_kind::forward)
            return argument_error::bad_address;
        return parsed_path{"", text.substr(in.position())};
    }
    if (in.peek() == '@' && !in.source_route())
        return argument_error::bad_address;
    const std::size_t mailbox_start = in.position();
    if (!in.local_part())
        return argument_error::bad_address;
    // RFC 5321 4.5.1: "<Postmaster>" without a domain must be accepted as a recipient.
    const bool is_bare_postmaster =
        kind == path_kind::forward && iequals(in.slice(mailbox_start), "postmaster");
    if (!is_bare_postmaster || in.peek() != '>') {
        if (!in.accept('@'))
            return argument_error::bad_address;
        if (!(in.peek() == '[' ? in.address_literal() : in.domain()))
            return argument_error::bad_address;
    }
    std::string address{in.slice(mailbox_start)};
    if (!in.accept('>') || in.position() > max_path_length)
        return argument_error::bad_address;
    return parsed_path{std::move(address), text.substr(in.position())};
}

} // namespace

bool is_valid_mailbox(std::string_view address)
{
    // "<" address ">" must fit in max_path_length.
    if (address.size() + 2 > max_path_length)
        return false;
    path_reader in{address};
    if (!in.local_part() || !in.accept('@'))
        return false;
    if (!(in.peek() == '[' ? in.address_literal() : in.domain()))
        return false;
    return in.at_end();
}

bool is_valid_local_part(std::string_view text)
{
    path_reader in{text};
    return in.local_part() && in.at_end();
}

namespace {

struct parameter {
    std::string_view keyword;
    std::optional<std::string_view> value;
};

// esmtp-param = esmtp-keyword ["=" esmtp-value] (RFC 5321 4.1.2)
std::optional<parameter> parse_parameter(std::string_view token)
{
    const std::size_t equals = token.find('=');
    parameter p{token.substr(0, equals), std::nullopt};
    if (p.keyword.empty() || !(is_alpha(p.keyword.front()) || is_digit(p.keyword.front())))
        return std::nullopt;
    for (char c : p.keyword)
        if (!is_alpha(c) && !is_digit(c) && c != '-')
            return std::nullopt;
    if (equals != std::string_view::npos) {
        p.value = token.substr(equals + 1);
        if (p.value->empty())
            return std::nullopt;
        for (char c : *p.value)
            if (c < 33 || c > 126 || c == '=')
                return std::nullopt;
    }
    return p;
}

// Calls on_parameter for each parameter after the path; the first error stops the walk.
template <typename Handler>
std::optional<argument_error> for_each_parameter(std::string_view rest, Handler on_parameter)
{
    if (rest.empty())
        return std::nullopt;
    if (rest.front() != ' ')
        return argument_error::syntax; // junk glued to the closing '>'
    while (!rest.empty()) {
        const std::size_t start = rest.find_first_not_of(' ');
        if (start == std::string_view::npos)
            break;
        rest.remove_prefix(start);
        const std::size_t end = rest.find(' ');
        const std::string_view token = rest.substr(0, end);
        rest.remove_prefix(token.size());
        const auto p = parse_parameter(token);
        if (!p)
            return argument_error::invalid_parameter;
        if (auto error = on_parameter(*p))
            return error;
    }
    return std::nullopt;
}

std::optional<std::uint64_t> parse_size_value(std::string_view digits)
{
    if (digits.empty() || digits.size() > max_size_value_digits)
        return std::nullopt;
    std::uint64_t value = 0;
    constexpr auto max = std::numeric_limits<std::uint64_t>::max();
    for (char c : digits) {
        if (!is_digit(c))
            return std::nullopt;
        const auto digit = static_cast<std::uint64_t>(c - '0');
        // 20 digits can exceed 2^64: saturate, the size check refuses it anyway.
        value = value > (max - digit) / 10 ? max : value * 10 + digit;
    }
    return value;
}

// "FROM:" / "TO:" then at most one space: RFC 5321 has none, but real clients send one.
std::optional<std::string_view> strip_path_prefix(std::string_view arg, std::string_view prefix)
{
    if (!istarts_with(arg, prefix))
        return std::nullopt;
    arg.remove_prefix(prefix.size());
    if (!arg.empty() && arg.front() == ' ')
        arg.remove_prefix(1);
    return arg;
}

} // namespace

std::string_view verb_name(verb v)
{
    for (const auto& [name, value] : verbs)
        if (value == v)
            return name;
    return "unknown";
}

command parse_command(std::string_view line)
{
    while (!line.empty() && is_blank(line.back()))
        line.remove_suffix(1);
    std::size_t verb_end = 0;
    while (verb_end < line.size() && !is_blank(line[verb_end]))
        ++verb_end;
    command result;
    const std::string_view word = line.substr(0, verb_end);
    for (const auto& [name, value] : verbs)
        if (iequals(word, name))
            result.what = value;
    std::size_t argument_start = verb_end;
    while (argument_start < line.size() && is_blank(line[argument_start]))
        ++argument_start;
    result.argument = line.substr(argument_start);
    return result;
}

std::variant<mail_argument, argument_error> parse_mail_argument(std::string_view arg)
{
    const auto path_text = strip_path_prefix(arg, "FROM:");
    if (!path_text)
        return argument_error::syntax;
    auto path = parse_path(*path_text, path_kind::reverse);
    if (const auto* error = std::get_if<argument_error>(&path))
        return *error;
    auto& parsed = std::get<parsed_path>(path);

    mail_argument result;
    result.reverse_path = std::move(parsed.address);
    const auto error =
        for_each_parameter(parsed.rest, [&](const parameter& p) -> std::optional<argument_error> {
            if (iequals(p.keyword, "SIZE")) { // RFC 1870 section 3
                if (result.size || !p.value)
                    return argument_error::invalid_parameter;
                result.size = parse_size_value(*p.value);
                if (!result.size)
                    return argument_error::invalid_parameter;
                return std::nullopt;
            }
            if (iequals(p.keyword, "BODY")) { // RFC 6152 section 2
                if (result.body != body_type::unspecified || !p.value)
                    return argument_error::invalid_parameter;
                if (iequals(*p.value, "7BIT"))
                    result.body = body_type::seven_bit;
                else if (iequals(*p.value, "8BITMIME"))
                    result.body = body_type::eight_bit_mime;
                else
                    return argument_error::unsupported_value; // BINARYMIME needs BDAT
                return std::nullopt;
            }
            return argument_error::unknown_parameter;
        });
    if (error)
        return *error;
    return result;
}

std::variant<rcpt_argument, argument_error> parse_rcpt_argument(std::string_view arg)
{
    const auto path_text = strip_path_prefix(arg, "TO:");
    if (!path_text)
        return argument_error::syntax;
    auto path = parse_path(*path_text, path_kind::forward);
    if (const auto* error = std::get_if<argument_error>(&path))
        return *error;
    auto& parsed = std::get<parsed_path>(path);
    // We advertise no extension with RCPT parameters (no DSN), so any keyword is unknown.
    const auto error =
        for_each_parameter(parsed.rest, [](const parameter&) -> std::optional<argument_error> {
            return argument_error::unknown_parameter;
        });
    if (error)
        return *error;
    return rcpt_argument{std::move(parsed.address)};
}

} // namespace leafmail::smtp
