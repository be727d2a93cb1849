#pragma once
// Every reply the leafmail SMTP server sends, one named factory each, with its RFC 3463
// enhanced status code (RFC 2034). The only place a reply text is written: callers and tests
// choose a reply by name and compare codes, never wording.
#include "leafmail/smtp/reply.hpp"

#include <cstdint>
#include <string_view>

namespace leafmail::smtp::replies {

// Connection level. RFC 2034 section 4 gives the greeting and the HELO/EHLO replies no
// enhanced code, and we give none to 354 either (it is not a completion). Every other reply
// carries one, after HELO as after EHLO (RFC 2034 section 4).
[[nodiscard]] reply greeting(std::string_view host);                     // 220
[[nodiscard]] reply helo(std::string_view host);                         // 250
[[nodiscard]] reply ehlo(std::string_view host, std::uint64_t max_size); // 250, extensions
[[nodiscard]] reply closing(std::string_view host);                      // 221 2.0.0
[[nodiscard]] reply service_shutting_down(std::string_view host);        // 421 4.3.2
[[nodiscard]] reply timeout(std::string_view host);                      // 421 4.4.2
[[nodiscard]] reply too_many_connections(std::string_view host);         // 421 4.7.0
[[nodiscard]] reply too_many_errors(std::string_view host);              // 421 4.7.0
[[nodiscard]] reply access_denied();                                     // 554 5.7.1

// Success.
[[nodiscard]] reply ok();                              // 250 2.0.0 (NOOP, RSET)
[[nodiscard]] reply sender_ok();                       // 250 2.1.0
[[nodiscard]] reply recipient_ok();                    // 250 2.1.5
[[nodiscard]] reply start_mail_input();                // 354
[[nodiscard]] reply queued(std::string_view queue_id); // 250 2.0.0
[[nodiscard]] reply help();                            // 214 2.0.0
[[nodiscard]] reply cannot_verify();                   // 252 2.5.0 (RFC 5321 3.5.3)

// Command errors (RFC 5321 4.2.4, RFC 3463 X.5.x). These count toward the bad-command cap.
[[nodiscard]] reply unrecognized_command();        // 500 5.5.1
[[nodiscard]] reply line_too_long();               // 500 5.5.2
[[nodiscard]] reply bad_line_ending();             // 500 5.5.2 (bare LF or CR)
[[nodiscard]] reply nul_in_command();              // 500 5.5.2
[[nodiscard]] reply not_implemented();             // 502 5.5.1
[[nodiscard]] reply helo_syntax();                 // 501 5.5.2
[[nodiscard]] reply mail_syntax();                 // 501 5.5.2
[[nodiscard]] reply rcpt_syntax();                 // 501 5.5.2
[[nodiscard]] reply vrfy_syntax();                 // 501 5.5.2
[[nodiscard]] reply no_parameters_allowed();       // 501 5.5.4
[[nodiscard]] reply invalid_parameter();           // 501 5.5.4
[[nodiscard]] reply bad_sender_address();          // 501 5.1.7
[[nodiscard]] reply bad_recipient_address();       // 501 5.1.3
[[nodiscard]] reply unsupported_parameter_value(); // 504 5.5.4
[[nodiscard]] reply unknown_parameter();           // 555 5.5.4 (RFC 5321 4.1.1.11)
[[nodiscard]] reply need_helo();                   // 503 5.5.1
[[nodiscard]] reply need_mail();                   // 503 5.5.1
[[nodiscard]] reply need_rcpt();                   // 503 5.5.1
[[nodiscard]] reply nested_mail();                 // 503 5.5.1

// Limits and content.
[[nodiscard]] reply too_many_recipients();                 // 452 4.5.3 (RFC 5321 4.5.3.1.10)
[[nodiscard]] reply no_such_mailbox(std::string_view why); // 550 5.1.1 (RFC 3463: bad mailbox)
[[nodiscard]] reply message_too_big();                     // 552 5.3.4 (RFC 1870 section 6)
[[nodiscard]] reply content_has_nul();                     // 554 5.6.0
[[nodiscard]] reply content_line_too_long();               // 554 5.6.0

// Storage (the daemon never turns a spool failure into a 5xx).
[[nodiscard]] reply local_error();          // 451 4.3.0
[[nodiscard]] reply insufficient_storage(); // 452 4.3.1

} // namespace leafmail::smtp::replies
