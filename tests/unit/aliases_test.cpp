#include "leafmail/aliases.hpp"

#include <catch2/catch.hpp>

using namespace leafmail;

namespace {

bool has_problem(const alias_parse_result& r, std::size_t line, const std::string& words)
{
    for (const auto& p : r.problems)
        if (p.line == line && p.message.find(words) != std::string::npos)
            return true;
    return false;
}

} // namespace

TEST_CASE("an aliases file in /etc/aliases syntax")
{
    const auto r = parse_aliases("# system aliases\n"
                                 "postmaster: root\n"
                                 "Root: alice@example.org,\n"
                                 "   bob@example.org  \n"
                                 "\n"
                                 "\tcarol@example.org\n"
                                 "webmaster : <web@example.net>\r\n",
                                 "laptop");
    CHECK(r.problems.empty());
    REQUIRE(r.table.entries.size() == 3);
    CHECK(r.table.entries.at("postmaster") == std::vector<std::string>{"root"});
    // A comment or blank line between continuation lines does not end the entry.
    CHECK(r.table.entries.at("root") ==
          std::vector<std::string>{"alice@example.org", "bob@example.org", "carol@example.org"});
    CHECK(r.table.entries.at("webmaster") == std::vector<std::string>{"web@example.net"});
}

TEST_CASE("aliases file errors carry their line numbers")
{
    const auto r = parse_aliases("root alice@example.org\n"   // 1: no colon
                                 "  bob@example.org\n"        // 2: continues line 1
                                 "backup: |/usr/bin/store\n"  // 3
                                 "log: /var/log/mail\n"       // 4
                                 "list: :include:/etc/list\n" // 5
                                 "empty:\n"                   // 6
                                 "ok: a@example.org\n"        // 7
                                 "OK: b@example.org\n"        // 8: duplicate
                                 "bad: a b@example.org\n"     // 9
                                 "bad@name: x@example.org\n",
                                 "laptop"); // 10
    CHECK(has_problem(r, 1, "expected"));
    CHECK(has_problem(r, 3, "not supported"));
    CHECK(has_problem(r, 4, "not supported"));
    CHECK(has_problem(r, 5, "not supported"));
    CHECK(has_problem(r, 6, "no address"));
    CHECK(has_problem(r, 8, "already defined on line 7"));
    CHECK(has_problem(r, 9, "not an address"));
    CHECK(has_problem(r, 10, "bad alias name"));
    CHECK(r.table.entries.count("ok") == 1);

    const auto orphan = parse_aliases("  alice@example.org\n", "laptop");
    CHECK(has_problem(orphan, 1, "continuation"));
}

TEST_CASE("alias loops and overlong chains are errors naming them")
{
    const auto loop = parse_aliases("a: b\nb: c@localhost\nc: A@Laptop, x@example.org\n", "laptop");
    REQUIRE_FALSE(loop.problems.empty());
    CHECK_THAT(loop.problems[0].message, Catch::Contains("alias loop"));
    CHECK_THAT(loop.problems[0].message, Catch::Contains("a -> b -> c"));

    const auto self = parse_aliases("root: root\n", "laptop");
    CHECK(has_problem(self, 1, "root -> root"));

    std::string chain;
    for (int i = 0; i < 12; ++i)
        chain += "n" + std::to_string(i) + ": n" + std::to_string(i + 1) + "\n";
    const auto deep = parse_aliases(chain, "laptop");
    CHECK(has_problem(deep, 1, "deep"));

    const auto shallow = parse_aliases("a: b\nb: c\nc: d@example.org\n", "laptop");
    CHECK(shallow.problems.empty());
}

TEST_CASE("local addresses: no domain, the hostname or localhost, not the mail domain")
{
    CHECK(is_local_address("root", "laptop"));
    CHECK(is_local_address("root@laptop", "laptop"));
    CHECK(is_local_address("root@LAPTOP", "laptop"));
    CHECK(is_local_address("root@localhost", "laptop"));
    CHECK_FALSE(is_local_address("root@example.org", "laptop"));
    CHECK_FALSE(is_local_address("root@laptop.example.org", "laptop"));
}

TEST_CASE("a local recipient is replaced by its aliases, else by admin-address")
{
    const auto file = parse_aliases("root: alice@example.org, operator\n"
                                    "operator: bob@example.org, alice@example.org\n"
                                    "postmaster: root\n",
                                    "laptop");
    REQUIRE(file.problems.empty());
    local_recipients rules{std::make_shared<alias_table>(file.table), "admin@example.org",
                           "laptop"};

    CHECK(resolve_recipient(rules, "someone@example.org").addresses ==
          std::vector<std::string>{"someone@example.org"});
    CHECK(resolve_recipient(rules, "Root@laptop").addresses ==
          std::vector<std::string>{"alice@example.org", "bob@example.org"});
    CHECK(resolve_recipient(rules, "postmaster").addresses ==
          std::vector<std::string>{"alice@example.org", "bob@example.org"});
    CHECK(resolve_recipient(rules, "www-data@localhost").addresses ==
          std::vector<std::string>{"admin@example.org"});

    local_recipients admin_only{nullptr, "admin@example.org", "laptop"};
    CHECK(resolve_recipient(admin_only, "root").addresses ==
          std::vector<std::string>{"admin@example.org"});

    local_recipients neither{nullptr, "", "laptop"};
    const auto refused = resolve_recipient(neither, "root");
    CHECK(refused.addresses.empty());
    CHECK_THAT(refused.refusal, Catch::Contains("admin-address"));
    CHECK(resolve_recipient(neither, "me@example.org").addresses.size() == 1);

    // An alias pointing at a local name with no alias of its own, and no admin-address.
    const auto partial = parse_aliases("root: nobody\n", "laptop");
    local_recipients strict{std::make_shared<alias_table>(partial.table), "", "laptop"};
    CHECK_FALSE(resolve_recipient(strict, "root").refusal.empty());
}

TEST_CASE("resolving ends even on a table with a loop")
{
    auto table = std::make_shared<alias_table>();
    table->entries["a"] = {"b"};
    table->entries["b"] = {"a", "x@example.org"};
    local_recipients rules{table, "", "laptop"};
    const auto r = resolve_recipient(rules, "a");
    CHECK(r.addresses == std::vector<std::string>{"x@example.org"});

    // A loop with no way out is refused, naming the loop, never an empty recipient list.
    auto closed = std::make_shared<alias_table>();
    closed->entries["a"] = {"b"};
    closed->entries["b"] = {"a@laptop"};
    const auto looped = resolve_recipient({closed, "admin@example.org", "laptop"}, "a");
    CHECK(looped.addresses.empty());
    CHECK_THAT(looped.refusal, Catch::Contains("loop"));
}
