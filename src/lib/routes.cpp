#include "leafmail/routes.hpp"

#include <algorithm>

namespace leafmail {

namespace {

char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowered(std::string_view text)
{
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), lower);
    return out;
}

bool is_domain_character(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

// RFC 5321 section 4.1.2 Domain: dot-separated labels of letters, digits and hyphens.
bool is_domain(std::string_view domain)
{
    if (domain.empty() || domain.front() == '.' || domain.back() == '.' ||
        domain.find("..") != std::string_view::npos)
        return false;
    return std::all_of(domain.begin(), domain.end(), is_domain_character);
}

// Dot-atom local parts only (RFC 5322 section 3.2.3 atext): a quoted local part in a
// configuration file is more likely a typo than a real mailbox.
bool is_local_part(std::string_view local)
{
    static constexpr std::string_view specials = "()<>[]:;@\\,\"";
    if (local.empty() || local.front() == '.' || local.back() == '.' ||
        local.find("..") != std::string_view::npos)
        return false;
    return std::all_of(local.begin(), local.end(), [](char c) {
        return static_cast<unsigned char>(c) > ' ' && static_cast<unsigned char>(c) < 127 &&
               specials.find(c) == std::string_view::npos;
    });
}

} // namespace

std::optional<sender_pattern> parse_sender_pattern(std::string_view text)
{
    const auto at = text.find('@');
    if (at == std::string_view::npos)
        return std::nullopt;
    const std::string_view local = text.substr(0, at);
    const std::string_view domain = text.substr(at + 1);
    if (!is_domain(domain) || (!local.empty() && !is_local_part(local)))
        return std::nullopt;
    return sender_pattern{std::string(local), lowered(domain)};
}

bool matches(const sender_pattern& pattern, std::string_view sender)
{
    const auto at = sender.rfind('@');
    if (sender.empty() || at == std::string_view::npos)
        return false;
    if (lowered(sender.substr(at + 1)) != pattern.domain)
        return false;
    return pattern.local.empty() || sender.substr(0, at) == pattern.local;
}

const route* route_for_sender(const std::vector<route>& routes, std::string_view sender)
{
    for (const auto& r : routes)
        for (const auto& pattern : r.senders)
            if (matches(pattern, sender))
                return &r;
    return nullptr;
}

std::string route_name_for_sender(const config& settings, std::string_view sender)
{
    const route* chosen = route_for_sender(settings.routes, sender);
    return chosen ? chosen->name : std::string(default_route_name);
}

const relay_settings* relay_of_route(const config& settings, std::string_view name)
{
    if (name == default_route_name)
        return &settings.relay;
    for (const auto& r : settings.routes)
        if (r.name == name)
            return &r.relay;
    return nullptr;
}

std::vector<std::string> split_list(std::string_view text)
{
    std::vector<std::string> items;
    std::size_t at = 0;
    while (at < text.size()) {
        const auto end = text.find_first_of(" \t,", at);
        const auto stop = end == std::string_view::npos ? text.size() : end;
        if (stop > at)
            items.emplace_back(text.substr(at, stop - at));
        at = stop + 1;
    }
    return items;
}

} // namespace leafmail
