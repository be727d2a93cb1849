#pragma once
// What leaves leafmail on the wire, decided per transaction: a streaming filter over a stored
// message. It breaks lines longer than 998 octets (RFC 5321 section 4.5.3.1.6) and, for a
// smarthost without 8BITMIME (RFC 6152 section 3), re-encodes 8-bit MIME leaf parts as
// quoted-printable (RFC 2045 section 6.7). Pure: bytes in, bytes out, memory bounded by a
// line and one part's header section, never by the message.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace leafmail::relay {

struct content_filter_options {
    // The server takes 8-bit data (8BITMIME offered): no re-encoding, only long lines broken.
    bool eight_bit_allowed = true;
};

class content_filter {
public:
    // RFC 5321 section 4.5.3.1.6: 1000 octets per line including CRLF. Postfix breaks longer
    // lines at smtp_line_length_limit = 998 by inserting CRLF SPACE; so do we (for a header
    // that is a fold, so it stays one header; in a body the space is the visible cost).
    static constexpr std::size_t max_line = 998;
    // A part's header section is held until its end to find Content-Type and
    // Content-Transfer-Encoding; a bigger one passes unconverted.
    static constexpr std::size_t max_header_section = 64 * 1024;

    explicit content_filter(content_filter_options options);

    /// Filters the next chunk (split anywhere); appends the result to out.
    void put(std::string_view in, std::string& out);
    /// The content ended: flushes what is held (a last line without CRLF stays without).
    void finish(std::string& out);

    /// 8-bit content that could not be made 7-bit: a message without MIME-Version (sent
    /// as it is, as Postfix does), or 8-bit octets in a header or a message/* part.
    [[nodiscard]] bool sent_8bit_unconverted() const { return sent_8bit_unconverted_; }
    [[nodiscard]] std::size_t lines_broken() const { return lines_broken_; }
    [[nodiscard]] std::size_t parts_converted() const { return parts_converted_; }

private:
    enum class state { headers, body };
    enum class body_mode { pass, quoted_printable };
    // How a piece of a line ends: with its CRLF, cut because it is too long, or at the end of
    // the content (a last line without CRLF).
    enum class piece_end { line, broken, content };

    void piece(std::string_view bytes, piece_end end, std::string& out);
    void header_line(std::string_view line, piece_end end, std::string& out);
    void end_of_headers(std::string& out);
    void body_line(std::string_view line, piece_end end, std::string& out);
    void emit_body(std::string_view bytes, piece_end end, std::string& out);
    void encode_qp(std::string_view bytes, piece_end end, std::string& out);
    bool is_boundary(std::string_view line, bool& closing, std::size_t& level) const;
    void note_8bit(std::string_view bytes);

    content_filter_options options_;
    state state_ = state::headers;
    body_mode mode_ = body_mode::pass;
    bool top_level_ = true;
    bool mime_ = false;                   // the message has MIME-Version
    bool headers_overflow_ = false;       // this header section passes as it is
    std::string headers_;                 // the current header section, held until its end
    std::vector<std::string> boundaries_; // open multiparts, outermost first
    std::string pending_boundary_;        // of a multipart whose headers just ended
    std::string line_;                    // bytes of the current line, without its end
    bool continuing_ = false;             // line_ continues a line already broken
    std::size_t qp_column_ = 0;
    bool sent_8bit_unconverted_ = false;
    std::size_t lines_broken_ = 0;
    std::size_t parts_converted_ = 0;
};

} // namespace leafmail::relay
