#include "leafmail/spool/status.hpp"

#include <nlohmann/json.hpp>

namespace leafmail::spool {

namespace {

using json = nlohmann::json;

// The format version of both status files; a newer one is refused, not guessed at.
constexpr int status_format_version = 1;

json to_json(const route_attempt& a)
{
    return {{"route", one_line(a.route)},
            {"smarthost", one_line(a.smarthost)},
            {"at", a.at},
            {"result", one_line(a.result)},
            {"reason", one_line(a.reason)},
            {"sent", a.sent},
            {"deferred", a.deferred},
            {"failed", a.failed}};
}

json to_json(const route_view& v)
{
    return {{"route", one_line(v.route)},
            {"condition", one_line(v.condition)},
            {"since", v.since},
            {"until", v.until},
            {"reason", one_line(v.reason)}};
}

std::string dump(const json& document)
{
    // Invalid UTF-8 in a reply (a peer's bytes) is replaced, never an exception.
    return document.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

// Reading: every accessor checks the type and the size; the first problem stops the read.
class reader {
public:
    std::string problem;

    const json* member(const json& object, const char* name)
    {
        if (!problem.empty())
            return nullptr;
        const auto it = object.find(name);
        if (it == object.end()) {
            problem = std::string("\"") + name + "\" is missing";
            return nullptr;
        }
        return &*it;
    }

    std::string text(const json& object, const char* name)
    {
        const json* value = member(object, name);
        if (!value)
            return {};
        if (!value->is_string()) {
            problem = std::string("\"") + name + "\" is not a string";
            return {};
        }
        const auto& s = value->get_ref<const std::string&>();
        if (s.size() > max_status_text) {
            problem = std::string("\"") + name + "\" is too long";
            return {};
        }
        return one_line(s);
    }

    std::int64_t integer(const json& object, const char* name)
    {
        const json* value = member(object, name);
        if (!value)
            return 0;
        if (!value->is_number_integer() || value->get<std::int64_t>() < 0) {
            problem = std::string("\"") + name + "\" is not a number of seconds or a count";
            return 0;
        }
        return value->get<std::int64_t>();
    }

    std::uint64_t count(const json& object, const char* name)
    {
        return static_cast<std::uint64_t>(integer(object, name));
    }

    bool flag(const json& object, const char* name)
    {
        const json* value = member(object, name);
        if (!value)
            return false;
        if (!value->is_boolean()) {
            problem = std::string("\"") + name + "\" is not true or false";
            return false;
        }
        return value->get<bool>();
    }

    const json* list(const json& object, const char* name)
    {
        const json* value = member(object, name);
        if (!value)
            return nullptr;
        if (!value->is_array() || value->size() > max_status_routes) {
            problem = std::string("\"") + name + "\" is not a list of at most " +
                      std::to_string(max_status_routes) + " objects";
            return nullptr;
        }
        for (const auto& item : *value)
            if (!item.is_object()) {
                problem = std::string("\"") + name + "\" holds something that is not an object";
                return nullptr;
            }
        return value;
    }

    /// The document's top-level object, or nullptr with the problem said.
    const json* top(const json& document)
    {
        if (document.is_discarded() || !document.is_object()) {
            problem = "not a JSON object";
            return nullptr;
        }
        const std::int64_t version = integer(document, "version");
        if (!problem.empty())
            return nullptr;
        if (version != status_format_version) {
            problem = "format version " + std::to_string(version) + " is not " +
                      std::to_string(status_format_version) + " (written by another leafmail?)";
            return nullptr;
        }
        return &document;
    }
};

json parse(std::string_view text)
{
    if (text.size() > max_status_size)
        return json(json::value_t::discarded);
    // No exceptions: a parse error is a discarded value.
    return json::parse(text.begin(), text.end(), nullptr, false);
}

} // namespace

std::string one_line(std::string_view text)
{
    // Control characters stay: every human output escapes them (text::escape_controls), and
    // the JSON outputs escape them as JSON does.
    return std::string(text.substr(0, text.find_first_of("\r\n")).substr(0, max_status_text));
}

std::string encode_flush_record(const flush_record& record)
{
    json routes = json::array();
    for (const auto& a : record.routes)
        routes.push_back(to_json(a));
    return dump({{"version", status_format_version},
                 {"finished_at", record.finished_at},
                 {"result", one_line(record.result)},
                 {"summary", one_line(record.summary)},
                 {"routes", routes}});
}

std::string encode_watch_record(const watch_record& record)
{
    json routes = json::array();
    for (const auto& v : record.routes)
        routes.push_back(to_json(v));
    return dump({{"version", status_format_version},
                 {"updated_at", record.updated_at},
                 {"has_link", record.has_link},
                 {"routes", routes}});
}

status_read<flush_record> decode_flush_record(std::string_view text)
{
    const json document = parse(text);
    reader r;
    flush_record out;
    const json* top = r.top(document);
    if (top) {
        out.finished_at = r.integer(*top, "finished_at");
        out.result = r.text(*top, "result");
        out.summary = r.text(*top, "summary");
        if (const json* routes = r.list(*top, "routes"))
            for (const auto& item : *routes) {
                route_attempt a;
                a.route = r.text(item, "route");
                a.smarthost = r.text(item, "smarthost");
                a.at = r.integer(item, "at");
                a.result = r.text(item, "result");
                a.reason = r.text(item, "reason");
                a.sent = r.count(item, "sent");
                a.deferred = r.count(item, "deferred");
                a.failed = r.count(item, "failed");
                out.routes.push_back(std::move(a));
            }
    }
    if (!r.problem.empty())
        return {std::nullopt, r.problem};
    return {std::move(out), {}};
}

status_read<watch_record> decode_watch_record(std::string_view text)
{
    const json document = parse(text);
    reader r;
    watch_record out;
    const json* top = r.top(document);
    if (top) {
        out.updated_at = r.integer(*top, "updated_at");
        out.has_link = r.flag(*top, "has_link");
        if (const json* routes = r.list(*top, "routes"))
            for (const auto& item : *routes) {
                route_view v;
                v.route = r.text(item, "route");
                v.condition = r.text(item, "condition");
                v.since = r.integer(item, "since");
                v.until = r.integer(item, "until");
                v.reason = r.text(item, "reason");
                out.routes.push_back(std::move(v));
            }
    }
    if (!r.problem.empty())
        return {std::nullopt, r.problem};
    return {std::move(out), {}};
}

} // namespace leafmail::spool
