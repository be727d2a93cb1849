#include "leafmail/spool/envelope.hpp"

#include "leafmail/spool/spool.hpp"

#include <boost/archive/archive_exception.hpp>
#include <boost/archive/text_iarchive.hpp>
#include <boost/archive/text_oarchive.hpp>
#include <boost/serialization/collection_size_type.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <boost/serialization/version.hpp>
// A text archive of our own below (checked_text_iarchive): the member templates of Boost's
// text input archive are instantiated here for it, as Boost documents for derived archives.
#include <boost/archive/impl/archive_serializer_map.ipp>
#include <boost/archive/impl/basic_text_iarchive.ipp>
#include <boost/archive/impl/text_iarchive_impl.ipp>

#include <algorithm>
#include <istream>
#include <limits>
#include <sstream>
#include <utility>

// A new field is appended behind `if (version >= N)` together with a BOOST_CLASS_VERSION bump,
// a golden file in spool-format/ and a row in its version table. A new recipient version also
// bumps the envelope's: a leafmail that reads at most format 2 checked only that a recipient's
// version is at most 2, so it would misread a newer recipient; it does refuse a newer envelope.
BOOST_CLASS_VERSION(leafmail::spool::recipient, leafmail::spool::recipient_format_version)
BOOST_CLASS_VERSION(leafmail::spool::envelope, leafmail::spool::envelope_format_version)
// Envelopes are values, never shared through pointers: no object tracking in the archive.
BOOST_CLASS_TRACKING(leafmail::spool::recipient, boost::serialization::track_never)
BOOST_CLASS_TRACKING(leafmail::spool::envelope, boost::serialization::track_never)

namespace {

// Boost 1.74 hands the stored version to serialize() but does not refuse one it does not
// know; a newer leafmail's entry must be refused, not misread.
void check_version(unsigned stored, unsigned newest, const char* what)
{
    if (stored > newest)
        throw leafmail::spool::corrupt_entry(
            std::string(what) + " format version " + std::to_string(stored) +
            " is newer than this leafmail reads (" + std::to_string(newest) + ")");
}

} // namespace

namespace leafmail::spool {

// Boost's text archive trusts the lengths it reads: a damaged "4000000000" in front of a
// string (the archive signature included) or a vector makes it allocate that much before it
// notices that the input ended. This archive reads the same format but refuses any length
// longer than what is left of the input, so thawing garbage costs at most the input's size.
class checked_text_iarchive : public boost::archive::text_iarchive_impl<checked_text_iarchive> {
public:
    // no_codecvt: the archive holds only ASCII digits and raw string octets, so the locale
    // machinery Boost would set up for every thaw is pure cost.
    explicit checked_text_iarchive(std::istream& in)
        : boost::archive::text_iarchive_impl<checked_text_iarchive>(in, boost::archive::no_codecvt)
    {
        init();
    }

    // Called back by Boost's archive machinery (interface_iarchive, load_access).
    template <class T> void load(T& t) { text_iarchive_impl::load(t); }
    void load(std::string& s)
    {
        std::size_t size = 0;
        *this->This() >> size;
        is.get(); // the separating space
        if (size > remaining())
            throw corrupt_entry("envelope declares a string of " + std::to_string(size) +
                                " octets, longer than the rest of the archive");
        s.resize(size);
        if (size > 0 && !is.read(s.data(), static_cast<std::streamsize>(size)))
            throw corrupt_entry("envelope ends inside a string");
    }
    template <class T> void load_override(T& t) { text_iarchive_impl::load_override(t); }
    void load_override(boost::serialization::collection_size_type& count)
    {
        text_iarchive_impl::load_override(count);
        // Read through a const reference: collection_size_type converts to its base type both
        // by value (const) and by reference, and only the const one is unambiguous.
        const std::size_t declared = std::as_const(count);
        // Each element takes at least two octets of text (a digit and a separator).
        if (declared > remaining() / 2)
            throw corrupt_entry("envelope declares " + std::to_string(declared) +
                                " elements, more than the rest of the archive can hold");
    }

private:
    // The input is a view_buffer: what is left to read is known without seeking.
    [[nodiscard]] std::size_t remaining()
    {
        return static_cast<std::size_t>(is.rdbuf()->in_avail());
    }
};

// An input buffer over octets that already are in memory, so thawing copies nothing.
class view_buffer : public std::streambuf {
public:
    explicit view_buffer(std::string_view text)
    {
        char* begin = const_cast<char*>(text.data()); // only ever read
        setg(begin, begin, begin + text.size());
    }
};

} // namespace leafmail::spool

namespace boost::archive {
template class detail::archive_serializer_map<leafmail::spool::checked_text_iarchive>;
template class basic_text_iarchive<leafmail::spool::checked_text_iarchive>;
template class text_iarchive_impl<leafmail::spool::checked_text_iarchive>;
} // namespace boost::archive

namespace boost::serialization {

template <class Archive>
void serialize(Archive& ar, leafmail::spool::recipient& r, const unsigned version)
{
    check_version(version, leafmail::spool::recipient_format_version, "recipient");
    auto state = static_cast<std::int32_t>(r.state);
    ar& r.address& state& r.attempts& r.last_attempt_at& r.last_reply;
    r.state = static_cast<leafmail::spool::recipient_state>(state);
    if (version >= 2)
        ar& r.original_address& r.unconfirmed;
}

template <class Archive>
void serialize(Archive& ar, leafmail::spool::envelope& e, const unsigned version)
{
    check_version(version, leafmail::spool::envelope_format_version, "envelope");
    ar& e.id& e.queued_at& e.origin& e.client_address& e.helo_name& e.reverse_path;
    ar& e.recipients& e.content_size& e.body_8bit& e.is_bounce;
    if (version >= 2)
        ar& e.next_attempt_at& e.delay_notice_at;
}

} // namespace boost::serialization

namespace leafmail::spool {

std::string_view to_string(recipient_state state)
{
    switch (state) {
    case recipient_state::pending:
        return "pending";
    case recipient_state::delivered:
        return "delivered";
    case recipient_state::failed:
        return "failed";
    }
    return "unknown";
}

bool envelope::has_pending() const
{
    return count(recipient_state::pending) > 0;
}

std::size_t envelope::count(recipient_state state) const
{
    return static_cast<std::size_t>(
        std::count_if(recipients.begin(), recipients.end(),
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

std::string cut_reply(std::string_view reply)
{
    constexpr std::string_view mark = "...";
    if (reply.size() <= max_recorded_reply)
        return std::string(reply);
    std::string cut(reply.substr(0, max_recorded_reply - mark.size()));
    cut.append(mark);
    return cut;
}

std::size_t largest_state_size(const envelope& env)
{
    constexpr auto widest_time = std::numeric_limits<std::int64_t>::min(); // 20 characters
    envelope largest = env;
    for (auto& r : largest.recipients) {
        if (r.state != recipient_state::pending)
            continue;
        r.state = recipient_state::failed;
        r.attempts = std::numeric_limits<std::uint32_t>::max();
        r.last_attempt_at = widest_time;
        r.unconfirmed = 1;
        r.last_reply.assign(std::max(max_recorded_reply, r.last_reply.size()), 'x');
    }
    largest.next_attempt_at = widest_time;
    largest.delay_notice_at = widest_time;
    return freeze(largest).size();
}

envelope thaw(std::string_view text)
{
    envelope env;
    try {
        view_buffer buffer(text);
        std::istream in(&buffer);
        checked_text_iarchive archive(in);
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
        if (r.unconfirmed != 0 && r.unconfirmed != 1)
            throw corrupt_entry(
                "envelope has a recipient with an unconfirmed flag other than 0 or 1");
    }
    return env;
}

} // namespace leafmail::spool
