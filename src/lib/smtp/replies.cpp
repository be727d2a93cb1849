#include "leafmail/smtp/replies.hpp"

#include <string>

namespace leafmail::smtp::replies {
namespace {

reply make(int code, std::string_view enhanced, std::string text)
{
    return reply{code, std::string{enhanced}, {std::move(text)}};
}

std::string str(std::string_view text)
{
    return std::string{text};
}

} // namespace

// Connection level.

reply greeting(std::string_view host)
{
    return make(220, "", str(host) + " ESMTP leafmail");
}

// The client's HELO argument is never echoed: it is peer data of up to a line's length.
reply helo(std::string_view host)
{
    return make(250, "", str(host));
}

reply ehlo(std::string_view host, std::uint64_t max_size)
{
    return reply{250,
                 "",
                 {str(host), "SIZE " + std::to_string(max_size), "8BITMIME", "PIPELINING",
                  "ENHANCEDSTATUSCODES", "HELP"}};
}

reply closing(std::string_view host)
{
    return make(221, "2.0.0", str(host) + " closing connection");
}

reply service_shutting_down(std::string_view host)
{
    return make(421, "4.3.2", str(host) + " service shutting down, try again later");
}

reply timeout(std::string_view host)
{
    return make(421, "4.4.2", str(host) + " timeout exceeded, closing connection");
}

reply too_many_connections(std::string_view host)
{
    return make(421, "4.7.0", str(host) + " too many connections, try again later");
}

reply too_many_errors(std::string_view host)
{
    return make(421, "4.7.0", str(host) + " too many errors, closing connection");
}

reply access_denied()
{
    return make(554, "5.7.1", "Access denied");
}

// Success.

reply ok()
{
    return make(250, "2.0.0", "OK");
}
reply sender_ok()
{
    return make(250, "2.1.0", "Sender OK");
}
reply recipient_ok()
{
    return make(250, "2.1.5", "Recipient OK");
}
reply start_mail_input()
{
    return make(354, "", "End data with <CR><LF>.<CR><LF>");
}
reply queued(std::string_view queue_id)
{
    return make(250, "2.0.0", "OK queued as " + str(queue_id));
}

reply help()
{
    return reply{214,
                 "2.0.0",
                 {"Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
                  "See RFC 5321 for their use"}};
}

reply cannot_verify()
{
    return make(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

// Command errors.

reply unrecognized_command()
{
    return make(500, "5.5.1", "Command unrecognized");
}
reply line_too_long()
{
    return make(500, "5.5.2", "Line too long");
}
reply bad_line_ending()
{
    return make(500, "5.5.2", "Command lines must end with CRLF");
}
reply nul_in_command()
{
    return make(500, "5.5.2", "NUL byte in command");
}
reply not_implemented()
{
    return make(502, "5.5.1", "Command not implemented");
}
reply helo_syntax()
{
    return make(501, "5.5.2", "Syntax: HELO/EHLO hostname");
}
reply mail_syntax()
{
    return make(501, "5.5.2", "Syntax: MAIL FROM:<address> [parameters]");
}
reply rcpt_syntax()
{
    return make(501, "5.5.2", "Syntax: RCPT TO:<address>");
}
reply vrfy_syntax()
{
    return make(501, "5.5.2", "Syntax: VRFY address");
}
reply no_parameters_allowed()
{
    return make(501, "5.5.4", "No parameters allowed");
}
reply invalid_parameter()
{
    return make(501, "5.5.4", "Invalid parameter");
}
reply bad_sender_address()
{
    return make(501, "5.1.7", "Bad sender address syntax");
}
reply bad_recipient_address()
{
    return make(501, "5.1.3", "Bad recipient address syntax");
}
reply unsupported_parameter_value()
{
    return make(504, "5.5.4", "Parameter value not supported");
}
reply unknown_parameter()
{
    return make(555, "5.5.4", "Parameter not recognized");
}
reply need_helo()
{
    return make(503, "5.5.1", "Send HELO/EHLO first");
}
reply need_mail()
{
    return make(503, "5.5.1", "Need MAIL command first");
}
reply need_rcpt()
{
    return make(503, "5.5.1", "Need RCPT command first");
}
reply nested_mail()
{
    return make(503, "5.5.1", "Sender already specified");
}

// Limits and content.

reply too_many_recipients()
{
    return make(452, "4.5.3", "Too many recipients");
}
reply no_such_mailbox(std::string_view why)
{
    return make(550, "5.1.1", str(why));
}
reply message_too_big()
{
    return make(552, "5.3.4", "Message size exceeds fixed maximum");
}
reply content_has_nul()
{
    return make(554, "5.6.0", "Message content contains a NUL byte");
}
reply content_line_too_long()
{
    return make(554, "5.6.0", "Message content has a line longer than 998 octets");
}

// Storage.

reply local_error()
{
    return make(451, "4.3.0", "Local error in processing, try again later");
}
reply insufficient_storage()
{
    return make(452, "4.3.1", "Insufficient system storage");
}

} // namespace leafmail::smtp::replies
