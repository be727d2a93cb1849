#include "leafmail/aliases.hpp"

#include <algorithm>
#include <optional>

namespace leafmail {

namespace {

std::string lowered(std::string_view text)
{
    std::string out(text);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string_view trimmed(std::string_view text)
{
    const auto start = text.find_first_not_of(" \t\r");
    if (start == std::string_view::npos)
        return {};
    return text.substr(start, text.find_last_not_of(" \t\r") - start + 1);
}

// The part before the '@' of a local address, which names the alias (lower case, as
// sendmail folds alias names).
std::string alias_name(std::string_view address)
{
    return lowered(address.substr(0, address.rfind('@')));
}

bool is_plain_address(std::string_view target)
{
    if (target.empty() || target.front() == '@' || target.back() == '@')
        return false;
    if (std::count(target.begin(), target.end(), '@') > 1)
        return false;
    return std::none_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 127 ||
               c == '<' || c == '>' || c == '"' || c == ',' || c == ':' || c == '\\';
    });
}

struct pending_entry {
    std::size_t line = 0;
    std::string text; // "name: targets" with continuation lines joined
};

void add_entry(const pending_entry& entry, alias_parse_result& result,
               std::map<std::string, std::size_t>& defined_on)
{
    auto problem = [&](std::string message) {
        result.problems.push_back({entry.line, std::move(message)});
    };
    const auto colon = entry.text.find(':');
    if (colon == std::string::npos) {
        problem("expected 'name: address, ...'");
        return;
    }
    const std::string name = lowered(trimmed(std::string_view(entry.text).substr(0, colon)));
    if (name.empty() || !is_plain_address(name) || name.find('@') != std::string::npos) {
        problem("bad alias name '" + std::string(trimmed(entry.text.substr(0, colon))) + "'");
        return;
    }
    if (const auto earlier = defined_on.find(name); earlier != defined_on.end()) {
        problem("alias '" + name + "' is already defined on line " +
                std::to_string(earlier->second));
        return;
    }
    std::vector<std::string> targets;
    std::string_view rest = std::string_view(entry.text).substr(colon + 1);
    while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string_view item = trimmed(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        if (item.empty())
            continue;
        std::string_view target = item;
        if (target.size() > 2 && target.front() == '<' && target.back() == '>')
            target = target.substr(1, target.size() - 2);
        if (target.front() == '|' || target.front() == '/' || target.rfind(":include:", 0) == 0) {
            problem("'" + std::string(item) +
                    "': programs, files and :include: are not supported (leafmail only relays)");
            return;
        }
        if (!is_plain_address(target)) {
            problem("'" + std::string(item) + "' is not an address");
            return;
        }
        targets.emplace_back(target);
    }
    if (targets.empty()) {
        problem("alias '" + name + "' has no address");
        return;
    }
    defined_on.emplace(name, entry.line);
    result.table.entries.emplace(name, std::move(targets));
}

// Follows one name's local targets; reports a loop with its path, or a chain too deep.
void check_chains(const std::string& name, std::size_t line, std::string_view hostname,
                  alias_parse_result& result)
{
    std::vector<std::string> path{name};
    // Depth-first over local targets; each step's path is checked for a repeat.
    struct frame {
        std::string name;
        std::size_t next = 0;
    };
    std::vector<frame> stack{{name, 0}};
    while (!stack.empty()) {
        frame& top = stack.back();
        const auto found = result.table.entries.find(top.name);
        if (found == result.table.entries.end() || top.next >= found->second.size()) {
            stack.pop_back();
            path.pop_back();
            continue;
        }
        const std::string& target = found->second[top.next++];
        if (!is_local_address(target, hostname))
            continue;
        const std::string next = alias_name(target);
        if (!result.table.entries.count(next))
            continue;
        if (std::find(path.begin(), path.end(), next) != path.end()) {
            std::string chain;
            for (const auto& step : path)
                chain += step + " -> ";
            result.problems.push_back({line, "alias loop: " + chain + next});
            return;
        }
        if (stack.size() >= max_alias_depth) {
            result.problems.push_back({line, "alias '" + name + "' is more than " +
                                                 std::to_string(max_alias_depth) +
                                                 " aliases deep"});
            return;
        }
        path.push_back(next);
        stack.push_back({next, 0});
    }
}

} // namespace

alias_parse_result parse_aliases(std::string_view text, std::string_view hostname)
{
    alias_parse_result result;
    std::map<std::string, std::size_t> defined_on;
    std::optional<pending_entry> pending;
    std::size_t number = 0;
    while (!text.empty()) {
        ++number;
        const auto end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        const std::string_view content = trimmed(line);
        if (content.empty() || content.front() == '#')
            continue; // blank lines and comments neither end nor continue an entry
        if (line.front() == ' ' || line.front() == '\t') {
            if (!pending)
                result.problems.push_back({number, "continuation line without an alias above"});
            else
                pending->text += ", " + std::string(content); // a comma is implied
            continue;
        }
        if (pending)
            add_entry(*pending, result, defined_on);
        pending = pending_entry{number, std::string(content)};
    }
    if (pending)
        add_entry(*pending, result, defined_on);
    for (const auto& [name, line] : defined_on)
        check_chains(name, line, hostname, result);
    std::stable_sort(
        result.problems.begin(), result.problems.end(),
        [](const alias_problem& a, const alias_problem& b) { return a.line < b.line; });
    return result;
}

alias_parse_result load_aliases(const std::filesystem::path& file, std::string_view hostname,
                                file_trust trust)
{
    return parse_aliases(read_trusted_file(file, "aliases file", trust), hostname);
}

std::string describe_problems(const std::filesystem::path& file,
                              const std::vector<alias_problem>& problems, std::size_t max_lines)
{
    std::string out;
    for (std::size_t i = 0; i < problems.size() && i < max_lines; ++i)
        out += (i ? "\n" : "") + file.string() + ":" + std::to_string(problems[i].line) + ": " +
               problems[i].message;
    if (problems.size() > max_lines)
        out += "\n(" + std::to_string(problems.size() - max_lines) + " more)";
    return out;
}

void load_aliases_for(config& settings, file_trust trust)
{
    if (settings.aliases_file.empty())
        return;
    auto result = load_aliases(settings.aliases_file, settings.hostname, trust);
    if (!result.problems.empty())
        throw config_error(describe_problems(settings.aliases_file, result.problems) +
                           "\n(newaliases checks the aliases file)");
    settings.aliases = std::make_shared<const alias_table>(std::move(result.table));
}

local_recipients local_recipients_of(const config& settings)
{
    return {settings.aliases, settings.admin_address, settings.hostname};
}

bool is_local_address(std::string_view address, std::string_view hostname)
{
    const auto at = address.rfind('@');
    if (at == std::string_view::npos)
        return true;
    const std::string domain = lowered(address.substr(at + 1));
    return domain == "localhost" || domain == lowered(hostname);
}

resolved_recipient resolve_recipient(const local_recipients& rules, std::string_view address)
{
    resolved_recipient result;
    if (!is_local_address(address, rules.hostname)) {
        result.addresses.emplace_back(address);
        return result;
    }
    // Breadth-first through local names; each name is expanded once, so a loop that slipped
    // past the file check ends, and the depth is bounded as the file check promises.
    std::vector<std::string> seen;
    std::vector<std::pair<std::string, std::size_t>> work{{std::string(address), 0}};
    auto add = [&](const std::string& target) {
        if (std::find(result.addresses.begin(), result.addresses.end(), target) ==
            result.addresses.end())
            result.addresses.push_back(target);
    };
    for (std::size_t i = 0; i < work.size(); ++i) {
        const auto [current, depth] = work[i];
        if (!is_local_address(current, rules.hostname)) {
            add(current);
            continue;
        }
        const std::string name = alias_name(current);
        if (std::find(seen.begin(), seen.end(), name) != seen.end())
            continue;
        seen.push_back(name);
        const std::vector<std::string>* targets = nullptr;
        if (rules.aliases)
            if (const auto found = rules.aliases->entries.find(name);
                found != rules.aliases->entries.end())
                targets = &found->second;
        if (targets) {
            if (depth >= max_alias_depth) {
                result.addresses.clear();
                result.refusal = "alias chain for <" + std::string(address) + "> is more than " +
                                 std::to_string(max_alias_depth) + " deep";
                return result;
            }
            for (const auto& target : *targets)
                work.emplace_back(target, depth + 1);
            continue;
        }
        if (rules.admin_address.empty()) {
            result.addresses.clear();
            result.refusal = "<" + std::string(current) +
                             "> is a local mailbox and leafmail has no alias for it and no "
                             "admin-address";
            return result;
        }
        add(rules.admin_address);
    }
    if (result.addresses.empty()) // every name led back to one already expanded
        result.refusal = "alias loop: <" + std::string(address) + "> leads only back to itself";
    return result;
}

} // namespace leafmail
