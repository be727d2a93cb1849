#pragma once
// Which route carries a message: its envelope sender against each `[route NAME]` section's
// `senders` patterns, the first section that matches wins, else the default route (the
// top-level keys). Pure functions over the parsed configuration: no files, no network.
#include "leafmail/config.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail {

/// `user@example.org` or `@example.org`; nullopt for anything else (no '@', an empty or
/// malformed domain, blanks, angle brackets, quotes, a second '@').
[[nodiscard]] std::optional<sender_pattern> parse_sender_pattern(std::string_view text);

/// Whether an envelope sender (without angle brackets) matches: the local part exactly, the
/// domain without regard to case (RFC 5321 section 2.4). The null sender matches nothing.
[[nodiscard]] bool matches(const sender_pattern& pattern, std::string_view sender);

/// The section whose `senders` match first, or nullptr for the default route.
[[nodiscard]] const route* route_for_sender(const std::vector<route>& routes,
                                            std::string_view sender);

/// The name of the route for a sender: a section's name or "default".
[[nodiscard]] std::string route_name_for_sender(const config& settings, std::string_view sender);

/// The settings of the route called `name` ("default" is the top-level keys); nullptr when
/// no route has that name.
[[nodiscard]] const relay_settings* relay_of_route(const config& settings, std::string_view name);

/// Splits a value listing several items separated by blanks or commas.
[[nodiscard]] std::vector<std::string> split_list(std::string_view text);

} // namespace leafmail
