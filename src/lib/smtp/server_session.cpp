#include "leafmail/smtp/server_session.hpp"

// Framing policy (decided, not accidental; "SMTP smuggling": CVE-2023-51764/51765/51766):
//
// Command lines
//  - A command line ends at LF. It must end in CRLF: a line ended by a bare LF, or holding a
//    CR anywhere else, is refused with 500 5.5.2 and never executed, so a bare-LF command can
//    never be read differently by us and by a server we relay to.
//  - At most max_command_line_length octets with the CRLF (RFC 5321 4.5.3.1.4 says 512; we
//    are lenient for ESMTP parameters). A longer line gets one 500 5.5.2 and is skipped up to
//    its LF without being buffered. A NUL in a command line: 500 5.5.2.
//  - Several commands in one read are answered in order (RFC 2920); input after QUIT, or after
//    the 421 of the bad-command cap, is ignored.
//
// DATA content (RFC 5321 4.1.1.4, 4.5.2)
//  - The end of the data is <CRLF>.<CRLF> and nothing else: the "." line must follow a real
//    CRLF (the one ending the DATA command counts) and be ended by a real CRLF. <LF>.<LF>,
//    <CR>.<CR>, <LF>.<CRLF> and <CRLF>.<LF> are content.
//  - A line starts only after a real CRLF: only there is a leading "." removed (dot-stuffing);
//    a "." followed by a bare line end, or after a bare line end, is kept as content.
//  - A bare LF and a bare CR in content are each stored as CRLF, so stored content always has
//    CRLF line ends and our relay client dot-stuffs it as ordinary lines.
//  - Content is handed out per feed() call, never accumulated: memory stays bounded by the
//    caller's read size whatever the message size.
//  - A NUL octet, a line over 998 octets (RFC 5322 2.1.1) or more than max_message_size octets
//    (counted after unstuffing and normalisation) refuses the message at its end: 552 5.3.4 for
//    size, otherwise 554 5.6.0, with discard_message. No octet past the one that broke a limit
//    is emitted (whatever the chunking), but the data is still read to its end so that the
//    framing stays in step with the client.
//  - After the final dot we stop reading until stored()/store_failed(); input already received
//    waits in pending_input_ and is processed then (RFC 2920 lets DATA end a batch).

#include "leafmail/smtp/replies.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

namespace leafmail::smtp {
namespace {

// RFC 5322 2.1.1: 998 characters plus CRLF; RFC 5321 4.5.3.1.6: a text line is 1000 octets
// including the CRLF.
constexpr std::size_t max_content_line_length = 998;
// RFC 5321 4.5.3.1.2: "The maximum total length of a domain name or number is 255 octets."
constexpr std::size_t max_domain_length = 255;

// The octets that stop the fast scan of a content line.
constexpr std::string_view content_specials{"\r\n\0", 3};

// A client mistake is a reply of RFC 5321 4.2.4's syntax and sequence family, or an
// unrecognised or unimplemented command (RFC 5321 4.1.1.11 for 555). These count toward the
// bad-command cap; refusals of a well-formed request (size, recipients, content) do not.
bool is_client_mistake(const reply& r)
{
    switch (r.code) {
    case 500:
    case 501:
    case 502:
    case 503:
    case 504:
    case 555:
        return true;
    default:
        return false;
    }
}

// HELO/EHLO name: we are lenient about its syntax (clients send bare hostnames, underscores,
// literals and worse) but it goes into our Received: line, logs and leafmail-list, so it must
// be printable ASCII and no longer than a domain may be. RFC 5321 4.1.1.1 wants a Domain or
// an address literal: letters, digits, hyphens and dots (4.1.2), at most 255 octets
// (4.5.3.1.2). An 8-bit or longer name is no name at all; refusing it (as Exim does) keeps
// every Received: line a valid header of short lines (RFC 5322 2.1.1) without guessing how
// to show it. The client can send its address literal instead.
bool is_acceptable_helo_name(std::string_view name)
{
    if (name.empty() || name.size() > max_domain_length)
        return false;
    for (const char c : name) {
        const auto octet = static_cast<unsigned char>(c);
        if (octet < 0x20 || octet >= 0x7f)
            return false;
    }
    return true;
}

} // namespace

server_session::server_session(server_options options) : options_(std::move(options)) {}

reply server_session::greeting() const
{
    return replies::greeting(options_.hostname);
}

bool server_session::is_receiving_data() const
{
    return phase_ == phase::in_data;
}

bool server_session::is_in_transaction() const
{
    return phase_ == phase::in_transaction || phase_ == phase::in_data ||
           phase_ == phase::awaiting_store;
}

bool server_session::is_closed() const
{
    return phase_ == phase::closed;
}

std::vector<effect> server_session::feed(std::string_view bytes)
{
    std::vector<effect> out;
    switch (phase_) {
    case phase::closed:
        return out;
    case phase::awaiting_store:
        // The transport should not read while it stores; what it did read waits here until
        // stored()/store_failed(), bounded by its read size.
        pending_input_.append(bytes);
        return out;
    default:
        break;
    }
    if (pending_input_.empty()) {
        run(bytes, out); // the common case, and the only one in DATA: no copy
    } else {
        std::string input = std::move(pending_input_);
        pending_input_.clear();
        input.append(bytes);
        run(input, out);
    }
    return out;
}

std::vector<effect> server_session::stored(std::string_view queue_id)
{
    std::vector<effect> out;
    assert(phase_ == phase::awaiting_store && "stored() without commit_message");
    if (phase_ != phase::awaiting_store)
        return out;
    out.emplace_back(send_reply{replies::queued(queue_id)});
    end_transaction();
    resume(out);
    return out;
}

std::vector<effect> server_session::store_failed(store_error why)
{
    std::vector<effect> out;
    assert(phase_ == phase::awaiting_store && "store_failed() without commit_message");
    if (phase_ != phase::awaiting_store)
        return out;
    out.emplace_back(send_reply{why == store_error::insufficient_storage
                                    ? replies::insufficient_storage()
                                    : replies::local_error()});
    end_transaction();
    resume(out);
    return out;
}

void server_session::resume(std::vector<effect>& out)
{
    std::string input = std::move(pending_input_);
    pending_input_.clear();
    run(input, out);
}

// Consumes input until it runs out, the session closes, or a message awaits its store; what
// is left is kept in pending_input_ (never a view into it: callers move it out first).
void server_session::run(std::string_view input, std::vector<effect>& out)
{
    std::size_t position = 0;
    while (position < input.size()) {
        if (phase_ == phase::closed)
            return; // input after QUIT or the 421 is ignored
        const std::string_view rest = input.substr(position);
        if (phase_ == phase::awaiting_store) {
            pending_input_.assign(rest);
            return;
        }
        const std::size_t used =
            phase_ == phase::in_data ? read_data(rest, out) : read_command_line(rest, out);
        if (used == 0) {
            // A partial command line, shorter than max_command_line_length: wait for more.
            pending_input_.assign(rest);
            return;
        }
        position += used;
    }
}

// Returns the octets consumed, 0 when a complete line has not arrived yet.
std::size_t server_session::read_command_line(std::string_view input, std::vector<effect>& out)
{
    const std::size_t lf = input.find('\n');
    if (discarding_command_line_) {
        if (lf == std::string_view::npos)
            return input.size();
        discarding_command_line_ = false;
        return lf + 1;
    }
    if (lf == std::string_view::npos) {
        // Even with its LF still to come this line is too long: refuse it now and skip the
        // rest as it arrives, so an endless line is never buffered.
        if (input.size() >= max_command_line_length) {
            discarding_command_line_ = true;
            respond(out, replies::line_too_long());
            return input.size();
        }
        return 0;
    }
    const std::size_t used = lf + 1;
    std::string_view line = input.substr(0, lf);
    if (used > max_command_line_length) {
        respond(out, replies::line_too_long());
        return used;
    }
    // CRLF is required (RFC 5321 2.3.8); a bare LF ends the line but the command is refused,
    // and so is a CR inside it: smuggling defence, see the policy at the top of this file.
    if (line.empty() || line.back() != '\r') {
        respond(out, replies::bad_line_ending());
        return used;
    }
    line.remove_suffix(1);
    if (line.find('\0') != std::string_view::npos) {
        respond(out, replies::nul_in_command());
        return used;
    }
    if (line.find('\r') != std::string_view::npos) {
        respond(out, replies::bad_line_ending());
        return used;
    }
    execute(parse_command(line), out);
    return used;
}

// The DATA reader: consumes content up to and including the final <CRLF>.<CRLF>, or all of
// input when the end is not in it. Each call emits at most one message_content.
std::size_t server_session::read_data(std::string_view input, std::vector<effect>& out)
{
    std::string chunk;
    std::size_t i = 0;
    while (i < input.size()) {
        const char c = input[i];
        switch (data_.state) {
        case data_state::line_start:
            if (c == '.') {
                data_.state = data_state::after_dot;
                ++i;
            } else {
                data_.state = data_state::in_line; // c is read again as line content
            }
            break;
        case data_state::after_dot:
            if (c == '\r') {
                data_.state = data_state::after_dot_cr;
                ++i;
            } else if (c == '\n') {
                // <CRLF>.<LF> is not the end: keep the dot, the LF is a bare line end.
                add_content_text(chunk, ".");
                data_.state = data_state::in_line;
            } else {
                // RFC 5321 4.5.2: the first of a leading dot and more characters is removed.
                data_.state = data_state::in_line;
            }
            break;
        case data_state::after_dot_cr:
            if (c == '\n') {
                // <CRLF>.<CRLF>: the end of the data (RFC 5321 4.1.1.4). The only one.
                ++i;
                finish_data(chunk, out);
                return i;
            }
            // <CRLF>.<CR> then something else: the dot is content, the CR a bare line end.
            add_content_text(chunk, ".");
            end_content_line(chunk);
            data_.state = data_state::in_line;
            break;
        case data_state::after_cr:
            if (c == '\n') {
                end_content_line(chunk);
                data_.state = data_state::line_start;
                ++i;
            } else {
                end_content_line(chunk); // a bare CR is stored as CRLF, c read again
                data_.state = data_state::in_line;
            }
            break;
        case data_state::in_line:
            if (c == '\r') {
                data_.state = data_state::after_cr;
                ++i;
            } else if (c == '\n') {
                // A bare LF is stored as CRLF but does not start a line: a dot after it
                // is content (no <LF>.<LF> end, no unstuffing).
                end_content_line(chunk);
                ++i;
            } else if (c == '\0') {
                data_.has_nul = true;
                ++data_.line_length;
                ++i;
            } else {
                const std::size_t stop =
                    std::min(input.find_first_of(content_specials, i), input.size());
                add_content_text(chunk, input.substr(i, stop - i));
                i = stop;
            }
            break;
        }
    }
    if (!chunk.empty())
        out.emplace_back(message_content{std::move(chunk)});
    return i;
}

// Hands out at most `usable` of bytes, and nothing past a limit: what is emitted must depend
// only on the bytes, never on how they were chunked, even for a message about to be refused.
void server_session::emit_content(std::string& chunk, std::string_view bytes, std::size_t usable)
{
    if (!data_.is_refused()) {
        const std::uint64_t room =
            data_.size < options_.max_message_size ? options_.max_message_size - data_.size : 0;
        chunk.append(bytes.substr(
            0, static_cast<std::size_t>(std::min<std::uint64_t>({usable, bytes.size(), room}))));
    }
    data_.size += bytes.size();
    if (data_.size > options_.max_message_size)
        data_.too_big = true;
}

void server_session::add_content_text(std::string& chunk, std::string_view bytes)
{
    const std::size_t line_room = data_.line_length < max_content_line_length
                                      ? max_content_line_length - data_.line_length
                                      : 0;
    emit_content(chunk, bytes, line_room);
    data_.line_length += bytes.size();
    if (data_.line_length > max_content_line_length)
        data_.has_long_line = true;
}

void server_session::end_content_line(std::string& chunk)
{
    data_.line_length = 0;
    emit_content(chunk, "\r\n");
}

void server_session::finish_data(std::string& chunk, std::vector<effect>& out)
{
    if (!chunk.empty())
        out.emplace_back(message_content{std::move(chunk)});
    chunk.clear();
    if (!data_.is_refused()) {
        // The transaction stays readable (current_transaction()) while the transport stores.
        out.emplace_back(commit_message{});
        phase_ = phase::awaiting_store;
        return;
    }
    out.emplace_back(discard_message{});
    const reply refusal = data_.too_big   ? replies::message_too_big()
                          : data_.has_nul ? replies::content_has_nul()
                                          : replies::content_line_too_long();
    end_transaction();
    respond(out, refusal);
}

void server_session::execute(const command& cmd, std::vector<effect>& out)
{
    switch (cmd.what) {
    case verb::helo:
    case verb::ehlo:
        handle_helo(cmd, out);
        return;
    case verb::mail:
        handle_mail(cmd, out);
        return;
    case verb::rcpt:
        handle_rcpt(cmd, out);
        return;
    case verb::data:
        handle_data(cmd, out);
        return;
    case verb::rset:
        handle_rset(cmd, out);
        return;
    case verb::noop: // RFC 5321 4.1.1.9: any argument is ignored
        respond(out, replies::ok());
        return;
    case verb::quit:
        handle_quit(cmd, out);
        return;
    case verb::vrfy:
        handle_vrfy(cmd, out);
        return;
    case verb::expn:
        // RFC 5321 3.5.2 / 7.3: EXPN is optional; we hold no lists to expand and would not
        // reveal them.
        respond(out, replies::not_implemented());
        return;
    case verb::help:
        respond(out, replies::help());
        return;
    case verb::starttls:
    case verb::auth:
    case verb::bdat:
    case verb::turn:
    case verb::atrn:
    case verb::etrn:
    case verb::send:
    case verb::soml:
    case verb::saml:
        respond(out, replies::not_implemented()); // known, not advertised (RFC 5321 4.2.4)
        return;
    case verb::unknown:
        respond(out, replies::unrecognized_command());
        return;
    }
    assert(false && "unhandled verb");
}

// RFC 5321 4.1.1.1: HELO/EHLO may come again at any time and resets the transaction.
void server_session::handle_helo(const command& cmd, std::vector<effect>& out)
{
    if (!is_acceptable_helo_name(cmd.argument)) {
        respond(out, replies::helo_syntax());
        return;
    }
    helo_ = cmd.argument;
    esmtp_ = cmd.what == verb::ehlo;
    end_transaction();
    respond(out, esmtp_ ? replies::ehlo(options_.hostname, options_.max_message_size)
                        : replies::helo(options_.hostname));
}

namespace {
// MAIL and RCPT refuse a bad argument alike except for the syntax and address replies.
reply argument_refusal(argument_error error, reply syntax, reply bad_address)
{
    switch (error) {
    case argument_error::syntax:
        return syntax;
    case argument_error::bad_address:
        return bad_address;
    case argument_error::invalid_parameter:
        return replies::invalid_parameter();
    case argument_error::unknown_parameter:
        return replies::unknown_parameter();
    case argument_error::unsupported_value:
        return replies::unsupported_parameter_value();
    }
    return syntax;
}
} // namespace

void server_session::handle_mail(const command& cmd, std::vector<effect>& out)
{
    if (phase_ == phase::need_helo) {
        respond(out, replies::need_helo());
        return;
    }
    if (phase_ == phase::in_transaction) {
        respond(out, replies::nested_mail()); // RFC 5321 4.1.4: no MAIL inside a transaction
        return;
    }
    auto parsed = parse_mail_argument(cmd.argument);
    if (const auto* error = std::get_if<argument_error>(&parsed)) {
        respond(out,
                argument_refusal(*error, replies::mail_syntax(), replies::bad_sender_address()));
        return;
    }
    auto& mail = std::get<mail_argument>(parsed);
    // RFC 1870 section 6: refuse a declared size over our fixed maximum before any data.
    if (mail.size && *mail.size > options_.max_message_size) {
        respond(out, replies::message_too_big());
        return;
    }
    transaction_ = transaction{std::move(mail.reverse_path), {}, mail.size, mail.body};
    phase_ = phase::in_transaction;
    respond(out, replies::sender_ok());
}

void server_session::handle_rcpt(const command& cmd, std::vector<effect>& out)
{
    if (phase_ != phase::in_transaction) {
        respond(out, phase_ == phase::need_helo ? replies::need_helo() : replies::need_mail());
        return;
    }
    auto parsed = parse_rcpt_argument(cmd.argument);
    if (const auto* error = std::get_if<argument_error>(&parsed)) {
        respond(out,
                argument_refusal(*error, replies::rcpt_syntax(), replies::bad_recipient_address()));
        return;
    }
    // RFC 5321 4.5.3.1.10: over the limit is a 452, the client sends the rest later.
    if (transaction_.recipients.size() >= options_.max_recipients) {
        respond(out, replies::too_many_recipients());
        return;
    }
    auto& forward_path = std::get<rcpt_argument>(parsed).forward_path;
    if (options_.refuse_recipient)
        if (auto why = options_.refuse_recipient(forward_path)) {
            respond(out, replies::no_such_mailbox(*why));
            return;
        }
    transaction_.recipients.push_back(std::move(forward_path));
    respond(out, replies::recipient_ok());
}

void server_session::handle_data(const command& cmd, std::vector<effect>& out)
{
    if (phase_ != phase::in_transaction) {
        respond(out, phase_ == phase::need_helo ? replies::need_helo() : replies::need_mail());
        return;
    }
    if (transaction_.recipients.empty()) {
        respond(out, replies::need_rcpt()); // RFC 2920 3.1: also when every RCPT failed
        return;
    }
    if (!cmd.argument.empty()) {
        respond(out, replies::no_parameters_allowed());
        return;
    }
    respond(out, replies::start_mail_input());
    out.emplace_back(begin_message{});
    data_ = data_reader{}; // line_start: the CRLF that ended DATA starts the first line
    phase_ = phase::in_data;
}

void server_session::handle_rset(const command& cmd, std::vector<effect>& out)
{
    if (!cmd.argument.empty()) {
        respond(out, replies::no_parameters_allowed());
        return;
    }
    end_transaction();
    respond(out, replies::ok());
}

void server_session::handle_quit(const command& cmd, std::vector<effect>& out)
{
    if (!cmd.argument.empty()) {
        respond(out, replies::no_parameters_allowed());
        return;
    }
    respond(out, replies::closing(options_.hostname));
    close(out);
}

void server_session::handle_vrfy(const command& cmd, std::vector<effect>& out)
{
    if (cmd.argument.empty()) {
        respond(out, replies::vrfy_syntax());
        return;
    }
    // RFC 5321 3.5.3: 252, we neither confirm nor deny a mailbox.
    respond(out, replies::cannot_verify());
}

// Every reply goes out here, so the bad-command cap cannot be bypassed by any command.
void server_session::respond(std::vector<effect>& out, reply what)
{
    const bool mistake = is_client_mistake(what);
    out.emplace_back(send_reply{std::move(what)});
    if (mistake && ++bad_commands_ >= options_.max_bad_commands) {
        out.emplace_back(send_reply{replies::too_many_errors(options_.hostname)});
        close(out);
    }
}

void server_session::close(std::vector<effect>& out)
{
    out.emplace_back(close_connection{});
    phase_ = phase::closed;
    pending_input_.clear();
    pending_input_.shrink_to_fit();
}

// Drops the transaction; the HELO/EHLO state is kept (RFC 5321 4.1.1.5).
void server_session::end_transaction()
{
    transaction_ = transaction{};
    phase_ = helo_.empty() ? phase::need_helo : phase::ready; // a HELO name is never empty
}

} // namespace leafmail::smtp
