#include "leafmail/spool/envelope.hpp"

#include "leafmail/spool/spool.hpp"

#include <boost/archive/archive_exception.hpp>
#include <boost/archive/text_iarchive.hpp>
#include <boost/archive/text_oarchive.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <boost/serialization/version.hpp>

#include <algorithm>
#include <sstream>

// Version 1 of both classes. A new field is appended behind `if (version >= 2)` together with
// a BOOST_CLASS_VERSION bump, a golden file in spool-format/ and a row in its version table.
BOOST_CLASS_VERSION(leafmail::spool::recipient, 1)
BOOST_CLASS_VERSION(leafmail::spool::envelope, 1)
// Envelopes are values, never shared through pointers: no object tracking in the archive.
BOOST_CLASS_TRACKING(leafmail::spool::recipient, boost::serialization::track_never)
BOOST_CLASS_TRACKING(leafmail::spool::envelope, boost::serialization::track_never)

namespace {

// Boost 1.74 hands the stored version to serialize() but does not refuse one it does not
// know; a newer leafmail's entry must be refused, not misread.
void check_version(unsigned stored, const char* what)
{
    if (stored > leafmail::spool::envelope_format_version)
        throw leafmail::spool::corrupt_entry(std::string(what) + " format version " +
                                             std::to_string(stored) + " is newer than this leafmail reads (" +
                                             std::to_string(leafmail::spool::envelope_format_version) + ")");
}

} // namespace

namespace boost::serialization {

template <class Archive>
void serialize(Archive& ar, leafmail::spool::recipient& r, const unsigned version)
{
    check_version(version, "recipient");
    auto state = static_cast<std::int32_t>(r.state);
    ar & r.address & state & r.attempts & r.last_attempt_at & r.last_reply;
    r.state = static_cast<leafmail::spool::recipient_state>(state);
}

template <class Archive>
void serialize(Archive& ar, leafmail::spool::envelope& e, const unsigned version)
{
    check_version(version, "envelope");
    ar & e.id & e.queued_at & e.origin & e.client_address & e.helo_name & e.reverse_path;
    ar & e.recipients & e.content_size & e.body_8bit & e.is_bounce;
}

} // namespace boost::serialization

namespace leafmail::spool {

std::string_view to_string(recipient_state state)
{
    switch (state) {
    case recipient_state::pending: return "pending";
    case recipient_state::delivered: return "delivered";
    case recipient_state::failed: return "failed";
    }
    return "unknown";
}

bool envelope::has_pending() const
{
    return count(recipient_state::pending) > 0;
}

std::size_t envelope::count(recipient_state state) const
{
    return static_cast<std::size_t>(std::count_if(recipients.begin(), recipients.end(),
                                                  [state](const recipient& r) { return r.state == state; }));
}

std::string freeze(const envelope& env)
{
    std::ostringstream out;
    {
        boost::archive::text_oarchive archive(out);
        archive << env;
    }
    return std::move(out).str();
}

envelope thaw(std::string_view text)
{
    envelope env;
    try {
        std::istringstream in{std::string(text)};
        boost::archive::text_iarchive archive(in);
        archive >> env;
    } catch (const corrupt_entry&) {
        throw;
    } catch (const std::exception& e) {
        throw corrupt_entry(std::string("envelope cannot be read: ") + e.what());
    }
    for (const auto& r : env.recipients) {
        if (r.state != recipient_state::pending && r.state != recipient_state::delivered &&
            r.state != recipient_state::failed)
            throw corrupt_entry("envelope has a recipient in an unknown state");
    }
    return env;
}

} // namespace leafmail::spool
