"""leafmaild over SMTP: the real daemon on 127.0.0.1:0 with a fresh spool, driven by independent
clients (Python's smtplib, swaks, curl, and a raw socket for what no polite client sends). Each
test checks reply codes, the spool and the log, never reply wording.

Daemon life (signals, configuration, privileges, spool failures, memory, kill -9) is in
test_receive_daemon.py."""

import os
import re
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (LEAFMAILD, Daemon, SmtpClient, content_without_received, entry_ids, read_entry, require, requires,
                     temp_files, wait_until)

IO_TIMEOUT = 10.0


def raw_client(port, host="127.0.0.1"):
    return SmtpClient(port, host=host, timeout=IO_TIMEOUT)


def sample_message(tag="sample"):
    """A message with CRLF line ends, 8-bit octets and lines that start with dots."""
    return (b"From: sender@example.org\r\n"
            b"To: rcpt@example.org\r\n"
            b"Subject: " + tag.encode() + b"\r\n"
            b"Message-ID: <" + tag.encode() + b"@test.example>\r\n"
            b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n"
            b"\r\n"
            b"Gr\xfc\xdfe aus K\xf6ln, \xe9t\xe9 \xff\x80\xfe\r\n"
            b".a line that starts with one dot\r\n"
            b"..two dots\r\n"
            b".\tdot and tab\r\n"
            b" . not at the start\r\n"
            b"\r\n"
            b"\r\n"
            b"last line\r\n")


def dot_stuff(content):
    """What a client sends for content that ends with CRLF: stuffed lines, then the final dot."""
    lines = content.split(b"\r\n")
    assert lines[-1] == b""
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines[:-1]]
    return b"\r\n".join(stuffed) + b"\r\n.\r\n"


class ReceiveTest(unittest.TestCase):
    config = ""
    args = ()

    def setUp(self):
        self.daemon = Daemon(config=self.config, args=self.args).start()
        self.addCleanup(self.daemon.close)
        self.addCleanup(self.assert_daemon_alive)

    def assert_daemon_alive(self):
        # Whatever a test sent, the daemon must still be there afterwards.
        status = self.daemon.process.poll()
        self.assertIsNone(status, "leafmaild exited with %s; log:\n%s" % (status, self.daemon.log_text()))

    def connect(self):
        client = raw_client(self.daemon.port)
        self.addCleanup(client.close)
        return client

    def entries(self):
        return entry_ids(self.daemon.spool)

    def only_entry(self):
        ids = wait_until(lambda: self.entries(), timeout=5)
        self.assertEqual(len(ids), 1, ids)
        return ids[0], read_entry(self.daemon.spool, ids[0])

    def assert_nothing_spooled(self):
        # The refusal reply comes after the writer dropped its file: nothing may linger.
        self.assertEqual(self.entries(), [])
        self.assertEqual(temp_files(self.daemon.spool), [])

    def assert_log(self, pattern, timeout=5):
        line = self.daemon.wait_for_log(pattern, timeout)
        self.assertIsNotNone(line, "no log line matching %r in:\n%s" % (pattern, self.daemon.log_text()))
        return line


class ContentTest(ReceiveTest):
    """Content arrives byte for byte, from three independent clients."""

    def test_smtplib_content_byte_for_byte(self):
        message = sample_message("smtplib")
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=IO_TIMEOUT) as smtp:
            code, features = smtp.ehlo("smtplib.example")
            self.assertEqual(code, 250)
            self.assertTrue(smtp.has_extn("8bitmime"))
            self.assertTrue(smtp.has_extn("pipelining"))
            self.assertTrue(smtp.has_extn("enhancedstatuscodes"))
            self.assertEqual(smtp.esmtp_features.get("size"), str(25 * 1024 * 1024))
            refused = smtp.sendmail("sender@example.org", ["rcpt@example.org", "other@example.net"], message,
                                    mail_options=["BODY=8BITMIME"])
            self.assertEqual(refused, {})
        entry_id, (content, envelope) = self.only_entry()
        self.assertEqual(content_without_received(content), message)
        self.assertIn("sender@example.org", envelope)
        self.assertIn("rcpt@example.org", envelope)
        self.assertIn("other@example.net", envelope)
        self.assertIn(entry_id, envelope)

    def test_raw_content_byte_for_byte_all_octets(self):
        # Every octet except NUL, CR and LF, on lines of a legal length.
        octets = bytes(b for b in range(1, 256) if b not in (10, 13))
        body = b"".join(octets[i:i + 60] + b"\r\n" for i in range(0, len(octets), 60))
        message = b"Subject: octets\r\n\r\n" + body + b".\r\n.\r\n..\r\n"
        c = self.connect()
        c.start_transaction()
        c.send(dot_stuff(message))
        self.assertEqual(c.code(), 250)
        self.assertEqual(c.command(b"QUIT"), 221)
        _, (content, _) = self.only_entry()
        self.assertEqual(content_without_received(content), message)

    def test_quoted_local_part_with_angle_bracket(self):
        # RFC 5321 4.1.2: qtextSMTP includes '>', so "a>b@c"@example.org is one mailbox; the
        # same grammar decides for leafmail-sendmail (test_tools_sendmail.py).
        odd = '"a>b@c"@example.org'
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=IO_TIMEOUT) as smtp:
            smtp.ehlo("smtplib.example")
            self.assertEqual(smtp.sendmail(odd, [odd, "plain@example.org"], sample_message("odd")), {})
            self.assertEqual(smtp.mail("sender@example.org")[0], 250)
            self.assertEqual(smtp.rcpt("a>b@example.org")[0], 501)  # unquoted '>' ends nothing here
            smtp.rset()
        _, (_, envelope) = self.only_entry()
        self.assertIn(odd, envelope)
        self.assertIn("plain@example.org", envelope)

    def test_swaks(self):
        body_file = os.path.join(self.daemon.workdir, "swaks-body")
        message = (b"Subject: from swaks\r\nMessage-ID: <swaks@test.example>\r\n\r\n"
                   b"swaks body line\r\n.dot line\r\n\xe4\xf6\xfc 8-bit\r\n")
        with open(body_file, "wb") as f:
            f.write(message[:-2])  # swaks sends the data, then CRLF.CRLF of its own
        result = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % self.daemon.port, "--helo", "swaks.example",
             "--from", "swaks@example.org", "--to", "one@example.org,two@example.org",
             "--data", body_file, "--timeout", "10"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(result.returncode, 0, result.stdout.decode("utf-8", "replace"))
        _, (content, envelope) = self.only_entry()
        self.assertEqual(content_without_received(content), message)
        self.assertIn("swaks.example", content.split(b"\r\n")[0].decode())
        self.assertIn("swaks@example.org", envelope)
        self.assertIn("two@example.org", envelope)

    def test_curl_upload(self):
        message = (b"Subject: from curl\r\nMessage-ID: <curl@test.example>\r\n\r\n"
                   b"curl line\r\n.leading dot\r\n..two\r\n.\r\nend \xc3\xa9\r\n")
        upload = os.path.join(self.daemon.workdir, "curl-upload")
        with open(upload, "wb") as f:
            f.write(message)
        result = subprocess.run(
            ["curl", "--silent", "--show-error", "--max-time", "20",
             "smtp://127.0.0.1:%d/curl.example" % self.daemon.port,
             "--mail-from", "curl@example.org", "--mail-rcpt", "rcpt@example.org", "--upload-file", upload],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(result.returncode, 0, result.stdout.decode("utf-8", "replace"))
        _, (content, envelope) = self.only_entry()
        self.assertEqual(content_without_received(content), message)
        self.assertIn("curl@example.org", envelope)

    def test_null_reverse_path_and_received_header(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"HELO helo-name.example"), 250)
        self.assertEqual(c.command(b"MAIL FROM:<>"), 250)
        self.assertEqual(c.command(b"RCPT TO:<postmaster@example.org>"), 250)
        self.assertEqual(c.command(b"DATA"), 354)
        c.send(b"Subject: bounce\r\n\r\nbody\r\n.\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250)
        self.assertEqual(c.command(b"QUIT"), 221)
        entry_id, (content, _) = self.only_entry()
        self.assertIn(entry_id, " ".join(text))  # the 250 names the queue id
        received = content[:content.index(b"Subject:")].decode()
        self.assertTrue(received.startswith("Received: from helo-name.example ([127.0.0.1])"), received)
        self.assertIn("by test.leafmail", received)
        self.assertIn("with SMTP", received)  # HELO, not EHLO
        self.assertIn("id " + entry_id, received)
        self.assertRegex(received, r"; \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\r\n$")
        self.assertEqual(content_without_received(content), b"Subject: bounce\r\n\r\nbody\r\n")

    def test_two_messages_one_session_and_log_lines(self):
        c = self.connect()
        c.start_transaction()
        c.send(b"Subject: one\r\n\r\n1\r\n.\r\n")
        self.assertEqual(c.code(), 250)
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org>"), 250)
        self.assertEqual(c.command(b"RCPT TO:<b@example.org>"), 250)
        self.assertEqual(c.command(b"RCPT TO:<c@example.org>"), 250)
        self.assertEqual(c.command(b"DATA"), 354)
        c.send(b"Subject: two\r\n\r\n2\r\n.\r\n")
        self.assertEqual(c.code(), 250)
        self.assertEqual(c.command(b"BOGUS"), 500)
        self.assertEqual(c.command(b"QUIT"), 221)
        self.assertTrue(c.is_closed())
        self.assertEqual(len(wait_until(lambda: len(self.entries()) == 2 and self.entries())), 2)
        connect = self.assert_log(r"event=connect session=(\S+) client=127\.0\.0\.1")
        session = re.search(r"session=(\S+)", connect).group(1)
        self.assert_log(r"event=accepted session=%s id=\S+ from=<sender@example\.org> recipients=1 size=\d+" % session)
        self.assert_log(r"event=accepted session=%s id=\S+ from=<a@example\.org> recipients=2 size=\d+" % session)
        self.assert_log(r"event=reject session=%s reply=.*500" % session)
        self.assert_log(r"event=disconnect session=%s reason=quit messages=2" % session)
        for entry_id in self.entries():
            self.assertIn("id=" + entry_id, self.daemon.log_text())

    def test_basic_commands(self):
        c = self.connect()
        code, greeting = c.reply()
        self.assertEqual(code, 220)
        self.assertIn("test.leafmail", greeting[0])
        self.assertEqual(c.command(b"NOOP"), 250)
        self.assertEqual(c.command(b"EHLO x.example"), 250)
        self.assertEqual(c.command(b"VRFY postmaster"), 252)
        self.assertIn(c.command(b"HELP"), (211, 214))
        self.assertEqual(c.command(b"RSET"), 250)
        self.assertEqual(c.command(b"EXPN list"), 502)
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME"), 250)
        self.assertEqual(c.command(b"RSET"), 250)
        self.assertEqual(c.command(b"RCPT TO:<b@example.org>"), 503)  # RSET ended the transaction
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org> FOO=BAR"), 555)
        self.assertEqual(c.command(b"MAIL FROM:a@example.org"), 501)
        self.assertEqual(c.command(b"QUIT"), 221)
        self.assertTrue(c.is_closed())
        self.assertEqual(self.entries(), [])


class BadInputTest(ReceiveTest):
    """One test per bad input; after each the daemon still serves a good message."""

    config = "max-message-size = 10K\nmax-recipients = 3\n"

    def tearDown(self):
        # The daemon survived whatever the test sent, and still accepts mail.
        self.assert_daemon_alive()
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=IO_TIMEOUT) as smtp:
            smtp.sendmail("after@example.org", ["after@example.org"], b"Subject: after\r\n\r\nstill serving\r\n")

    def test_overlong_command_line(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"EHLO x.example"), 250)
        self.assertEqual(c.command(b"NOOP " + b"x" * 2000), 500)
        # Exactly one reply for the long line: the next command's reply comes next.
        self.assertEqual(c.command(b"NOOP"), 250)
        self.assertEqual(c.command(b"MAIL FROM:<" + b"a" * 1100 + b"@example.org>"), 500)
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org>"), 250)  # no transaction was opened
        # An endless line sent in pieces is refused once and skipped, not buffered.
        for _ in range(50):
            c.send(b"y" * 10000)
        c.send(b"\r\n")
        self.assertEqual(c.code(), 500)
        self.assertEqual(c.command(b"NOOP"), 250)

    def test_overlong_content_line(self):
        c = self.connect()
        c.start_transaction()
        c.send(b"Subject: long\r\n\r\n" + b"z" * 999 + b"\r\nshort\r\n.\r\n")
        self.assertEqual(c.code(), 554)
        self.assertEqual(c.command(b"NOOP"), 250)  # framing stayed in step
        self.assert_nothing_spooled()

    def test_content_line_of_998_is_fine(self):
        c = self.connect()
        c.start_transaction()
        message = b"Subject: limit\r\n\r\n" + b"z" * 998 + b"\r\n"
        c.send(dot_stuff(message))
        self.assertEqual(c.code(), 250)
        _, (content, _) = self.only_entry()
        self.assertEqual(content_without_received(content), message)
        os.unlink(os.path.join(self.daemon.spool, "queue", self.entries()[0]))

    def test_declared_size_over_limit(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        c.send(b"EHLO x.example\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        self.assertIn("SIZE 10240", lines)
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org> SIZE=10241"), 552)
        self.assertEqual(c.command(b"RCPT TO:<b@example.org>"), 503)  # no transaction
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org> SIZE=10240"), 250)
        self.assertEqual(c.command(b"QUIT"), 221)
        self.assert_nothing_spooled()

    def test_declared_size_over_limit_smtplib(self):
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=IO_TIMEOUT) as smtp:
            with self.assertRaises(smtplib.SMTPSenderRefused) as caught:
                # smtplib declares SIZE= itself when the server advertises it.
                smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 200)
            self.assertEqual(caught.exception.smtp_code, 552)
        self.assert_nothing_spooled()

    def test_undeclared_size_over_limit(self):
        c = self.connect()
        c.start_transaction()
        line = b"x" * 78 + b"\r\n"
        c.send(b"Subject: too big\r\n\r\n" + line * 200 + b".\r\n")  # 16 000 octets > 10K
        self.assertEqual(c.code(), 552)
        self.assertEqual(c.command(b"NOOP"), 250)
        self.assert_nothing_spooled()
        self.assert_log(r"event=reject .*552")

    def test_too_many_recipients(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"EHLO x.example"), 250)
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org>"), 250)
        for n in range(3):
            self.assertEqual(c.command(b"RCPT TO:<r%d@example.org>" % n), 250)
        self.assertEqual(c.command(b"RCPT TO:<r3@example.org>"), 452)
        self.assertEqual(c.command(b"RCPT TO:<r4@example.org>"), 452)
        self.assertEqual(c.command(b"DATA"), 354)  # the transaction goes on with three
        c.send(b"Subject: three\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.code(), 250)
        _, (_, envelope) = self.only_entry()
        for n in range(3):
            self.assertIn("r%d@example.org" % n, envelope)
        self.assertNotIn("r3@example.org", envelope)
        os.unlink(os.path.join(self.daemon.spool, "queue", self.entries()[0]))

    def test_bad_command_sequence(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org>"), 503)  # before HELO
        self.assertEqual(c.command(b"HELO x.example"), 250)
        self.assertEqual(c.command(b"RCPT TO:<b@example.org>"), 503)  # before MAIL
        self.assertEqual(c.command(b"DATA"), 503)  # before MAIL
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org>"), 250)
        self.assertEqual(c.command(b"DATA"), 503)  # before RCPT
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org>"), 503)  # nested MAIL
        self.assertEqual(c.command(b"QUIT"), 221)
        self.assert_nothing_spooled()

    def test_unknown_command(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"FROBNICATE now"), 500)
        self.assertEqual(c.command(b"HELO x.example"), 250)
        self.assertEqual(c.command(b"XYZZY"), 500)
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org>"), 250)  # state unharmed
        self.assertEqual(c.command(b"QUIT"), 221)

    def test_nul_in_command(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"HELO x\x00.example"), 500)
        self.assertEqual(c.command(b"NOOP"), 250)
        self.assertEqual(c.command(b"HELO x.example"), 250)
        self.assertEqual(c.command(b"MAIL FROM:<a\x00@example.org>"), 500)
        self.assertEqual(c.command(b"RCPT TO:<b@example.org>"), 503)  # the MAIL was not executed

    def test_nul_in_content(self):
        c = self.connect()
        c.start_transaction()
        c.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
        self.assertEqual(c.code(), 554)
        self.assertEqual(c.command(b"NOOP"), 250)
        self.assert_nothing_spooled()

    def test_bad_line_endings_in_commands(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"HELO x.example"), 250)
        c.send(b"MAIL FROM:<a@example.org>\n")  # bare LF: refused, never executed
        self.assertEqual(c.code(), 500)
        self.assertEqual(c.command(b"RCPT TO:<b@example.org>"), 503)
        c.send(b"NOOP\rMAIL FROM:<a@example.org>\r\n")  # a CR inside a line
        self.assertEqual(c.code(), 500)
        self.assertEqual(c.command(b"RCPT TO:<b@example.org>"), 503)

    def test_pipelined_batch(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        # Everything in one send: replies come back in order, one per command.
        c.send(b"EHLO pipe.example\r\nMAIL FROM:<p@example.org>\r\nRCPT TO:<one@example.org>\r\n"
               b"RCPT TO:<two@example.org>\r\nBOGUS\r\nRCPT TO:<three@example.org>\r\n"
               b"RCPT TO:<four@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(8)], [250, 250, 250, 250, 500, 250, 452, 354])
        # DATA ends the batch (RFC 2920); the content, the dot and the next transaction in one send.
        c.send(b"Subject: piped\r\n\r\none\r\n.\r\nMAIL FROM:<q@example.org>\r\nRCPT TO:<five@example.org>\r\n"
               b"DATA\r\nSubject: second\r\n\r\ntwo\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual([c.code() for _ in range(8)], [250, 250, 250, 354, 250, 250, 250, 221])
        self.assertTrue(c.is_closed())
        ids = wait_until(lambda: len(self.entries()) == 2 and self.entries())
        self.assertEqual(len(ids), 2)
        contents = sorted(content_without_received(read_entry(self.daemon.spool, i)[0]) for i in ids)
        self.assertEqual(contents, [b"Subject: piped\r\n\r\none\r\n", b"Subject: second\r\n\r\ntwo\r\n"])
        for i in ids:
            os.unlink(os.path.join(self.daemon.spool, "queue", i))

    def test_pipelined_batch_split_at_every_byte(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        batch = b"EHLO s.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<t@example.org>\r\nRSET\r\n"
        for b in batch:
            c.send(bytes([b]))
        self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 250])

    def test_disconnect_during_data(self):
        c = self.connect()
        c.start_transaction()
        c.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * 3000)  # past the writer's buffer
        time.sleep(0.2)
        c.close()
        self.assert_log(r"event=disconnect session=\S+ reason=lost-during-data messages=0")
        self.assertTrue(wait_until(lambda: temp_files(self.daemon.spool) == [], timeout=5))
        self.assert_nothing_spooled()

    def test_content_framing_lookalikes_do_not_end_data(self):
        c = self.connect()
        c.start_transaction()
        c.send(b"Subject: smuggle\r\n\r\n"
               b"a\n.\nMAIL FROM:<lf@example.org>\r\n"      # <LF>.<LF>
               b"b\r.\rMAIL FROM:<cr@example.org>\r\n"      # <CR>.<CR>
               b"c\n.\r\nMAIL FROM:<lfcrlf@example.org>\r\n"  # <LF>.<CRLF>
               b"d\r\n.\nMAIL FROM:<crlflf@example.org>\r\n"  # <CRLF>.<LF>
               b"end\r\n")
        # None of those ended the data: no reply yet.
        c.sock.settimeout(1.0)
        with self.assertRaises((socket.timeout, TimeoutError)):
            c.sock.recv(1)
        c.sock.settimeout(IO_TIMEOUT)
        c.send(b".\r\n")
        self.assertEqual(c.code(), 250)
        self.assertEqual(c.command(b"RCPT TO:<x@example.org>"), 503)  # no smuggled MAIL ran
        _, (content, envelope) = self.only_entry()
        # Bare line ends are stored as CRLF (documented policy); the dots stay as content.
        self.assertEqual(content_without_received(content),
                         b"Subject: smuggle\r\n\r\n"
                         b"a\r\n.\r\nMAIL FROM:<lf@example.org>\r\n"
                         b"b\r\n.\r\nMAIL FROM:<cr@example.org>\r\n"
                         b"c\r\n.\r\nMAIL FROM:<lfcrlf@example.org>\r\n"
                         b"d\r\n.\r\nMAIL FROM:<crlflf@example.org>\r\n"
                         b"end\r\n")
        self.assertNotIn("lf@example.org", envelope)
        os.unlink(os.path.join(self.daemon.spool, "queue", self.entries()[0]))


class BadCommandCapTest(ReceiveTest):
    config = "max-bad-commands = 3\n"

    def test_bad_command_cap(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"HELO x.example"), 250)
        self.assertEqual(c.command(b"ONE"), 500)
        self.assertEqual(c.command(b"RCPT TO:<a@example.org>"), 503)
        c.send(b"THREE\r\nNOOP\r\n")
        self.assertEqual(c.code(), 500)
        self.assertEqual(c.code(), 421)  # the cap: 421, then the line after is ignored
        self.assertTrue(c.is_closed())
        self.assert_log(r"event=disconnect .*messages=0")


class AccessTest(unittest.TestCase):
    def refused(self, config):
        with Daemon(config=config) as daemon:
            with raw_client(daemon.port) as c:
                code, _ = c.reply()
                self.assertEqual(code, 554)
                self.assertTrue(c.is_closed())
            line = daemon.wait_for_log(r"event=refused session=\S+ client=127\.0\.0\.1 reason=access-denied")
            self.assertIsNotNone(line, daemon.log_text())
            self.assertEqual(entry_ids(daemon.spool), [])

    def test_not_in_allow_list(self):
        self.refused("allow = 10.0.0.0/8\n")

    def test_deny_wins_over_allow(self):
        self.refused("allow = 127.0.0.0/8\ndeny = 127.0.0.1/32\n")

    def test_allowed(self):
        with Daemon(config="allow = 10.0.0.0/8\nallow = 127.0.0.0/8\ndeny = 127.0.0.2/32\n") as daemon:
            with raw_client(daemon.port) as c:
                self.assertEqual(c.code(), 220)

    @requires(socket.has_ipv6, "no IPv6")
    def test_ipv6_listen(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            require(self, False, "no ::1 on this machine")
        with Daemon(args=["--listen", "[::1]:0"]) as daemon:
            line = daemon.wait_for_log(r"event=listening address=\[::1\]:(\d+)")
            self.assertIsNotNone(line, daemon.log_text())
            port = int(re.search(r"\[::1\]:(\d+)", line).group(1))
            with smtplib.SMTP("::1", port, timeout=IO_TIMEOUT) as smtp:
                smtp.sendmail("v6@example.org", ["r@example.org"], b"Subject: v6\r\n\r\nover IPv6\r\n")
            ids = wait_until(lambda: entry_ids(daemon.spool))
            self.assertEqual(len(ids), 1)
            content, _ = read_entry(daemon.spool, ids[0])
            self.assertIn(b"[IPv6:::1]", content.split(b"\r\n")[0])
            self.assertEqual(content_without_received(content), b"Subject: v6\r\n\r\nover IPv6\r\n")
        # ::1 refused when only IPv4 is allowed.
        with Daemon(config="allow = 127.0.0.0/8\n", args=["--listen", "[::1]:0"]) as daemon:
            line = daemon.wait_for_log(r"event=listening address=\[::1\]:(\d+)")
            port = int(re.search(r"\[::1\]:(\d+)", line).group(1))
            with raw_client(port, host="::1") as c:
                self.assertEqual(c.code(), 554)
                self.assertTrue(c.is_closed())


class IdleTimeoutTest(ReceiveTest):
    config = "idle-timeout = 1\n"

    def test_idle_client_gets_421(self):
        c = self.connect()
        started = time.monotonic()
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"EHLO idle.example"), 250)
        self.assertEqual(c.code(), 421)  # nothing sent: the timeout speaks
        elapsed = time.monotonic() - started
        self.assertTrue(c.is_closed())
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 5)
        self.assert_log(r"event=disconnect session=\S+ reason=timeout")

    def test_idle_during_data(self):
        c = self.connect()
        c.start_transaction()
        c.send(b"Subject: stalled\r\n\r\nhalf")
        self.assertEqual(c.code(), 421)
        self.assertTrue(c.is_closed())
        self.assertTrue(wait_until(lambda: temp_files(self.daemon.spool) == [], timeout=5))
        self.assert_nothing_spooled()

    def test_active_client_is_not_cut(self):
        c = self.connect()
        self.assertEqual(c.code(), 220)
        for _ in range(6):  # 3 s in all, never silent for 1 s
            time.sleep(0.5)
            self.assertEqual(c.command(b"NOOP"), 250)


class ConnectionLimitTest(ReceiveTest):
    config = "max-connections = 2\n"

    def test_third_connection_gets_421(self):
        first, second = self.connect(), self.connect()
        self.assertEqual(first.code(), 220)
        self.assertEqual(second.code(), 220)
        third = self.connect()
        self.assertEqual(third.code(), 421)
        self.assertTrue(third.is_closed())
        self.assert_log(r"event=refused .*reason=too-many-connections")
        self.assertEqual(first.command(b"QUIT"), 221)
        self.assertTrue(first.is_closed())
        self.assert_log(r"event=disconnect .*reason=quit")
        fourth = self.connect()
        self.assertEqual(fourth.code(), 220)  # a slot is free again
        self.assertEqual(second.command(b"NOOP"), 250)


class InetdTest(unittest.TestCase):
    def test_inetd_session_over_socketpair(self):
        with tempfile.TemporaryDirectory(prefix="leafmail-it-") as workdir:
            spool = os.path.join(workdir, "spool")
            config = os.path.join(workdir, "leafmail.conf")
            open(config, "w").close()
            ours, theirs = socket.socketpair()
            process = subprocess.Popen([LEAFMAILD, "--inetd", "--config", config, "--spool", spool,
                                        "--log", "stderr", "--hostname", "inetd.leafmail"],
                                       stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=subprocess.PIPE)
            theirs.close()
            try:
                c = SmtpClient.over_socket(ours, IO_TIMEOUT)
                code, greeting = c.reply()
                self.assertEqual(code, 220)
                self.assertIn("inetd.leafmail", greeting[0])
                message = sample_message("inetd")
                self.assertEqual(c.command(b"EHLO local.example"), 250)
                self.assertEqual(c.command(b"MAIL FROM:<inetd@example.org>"), 250)
                self.assertEqual(c.command(b"RCPT TO:<r@example.org>"), 250)
                self.assertEqual(c.command(b"DATA"), 354)
                c.send(dot_stuff(message))
                self.assertEqual(c.code(), 250)
                self.assertEqual(c.command(b"QUIT"), 221)
                self.assertTrue(c.is_closed())
                self.assertEqual(process.wait(10), 0)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
                ours.close()
            log = process.stderr.read().decode("utf-8", "replace")
            ids = entry_ids(spool)
            self.assertEqual(len(ids), 1, log)
            content, _ = read_entry(spool, ids[0])
            self.assertEqual(content_without_received(content), message)
            self.assertIn("event=accepted", log)
            self.assertIn("event=disconnect", log)

    def test_inetd_over_pipes_client_leaves(self):
        with tempfile.TemporaryDirectory(prefix="leafmail-it-") as workdir:
            spool = os.path.join(workdir, "spool")
            config = os.path.join(workdir, "leafmail.conf")
            open(config, "w").close()
            process = subprocess.Popen([LEAFMAILD, "--inetd", "--config", config, "--spool", spool,
                                        "--log", "stderr", "--hostname", "inetd.leafmail"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                out, err = process.communicate(
                    b"HELO p.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                    b"Subject: pipe\r\n\r\nvia pipes\r\n.\r\nQUIT\r\n", timeout=10)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
            self.assertEqual(process.returncode, 0, err)
            codes = [int(line[:3]) for line in out.split(b"\r\n") if line]
            self.assertEqual(codes, [220, 250, 250, 250, 354, 250, 221], out)
            ids = entry_ids(spool)
            self.assertEqual(len(ids), 1)
            content, _ = read_entry(spool, ids[0])
            self.assertEqual(content_without_received(content), b"Subject: pipe\r\n\r\nvia pipes\r\n")

    def inetd_over_tcp(self, config):
        """leafmaild --inetd on an accepted TCP socket, as inetd runs it; returns (client, process)."""
        workdir = tempfile.TemporaryDirectory(prefix="leafmail-it-")
        self.addCleanup(workdir.cleanup)
        config_path = os.path.join(workdir.name, "leafmail.conf")
        with open(config_path, "w") as f:
            f.write(config)
        self.spool = os.path.join(workdir.name, "spool")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = raw_client(listener.getsockname()[1])
        self.addCleanup(client.close)
        accepted, _ = listener.accept()
        listener.close()
        process = subprocess.Popen([LEAFMAILD, "--inetd", "--config", config_path, "--spool", self.spool,
                                    "--log", "stderr", "--hostname", "inetd.leafmail"],
                                   stdin=accepted.fileno(), stdout=accepted.fileno(), stderr=subprocess.PIPE)
        accepted.close()

        def reap():
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=5)
        self.addCleanup(reap)
        return client, process

    def test_inetd_over_tcp_uses_peer_address(self):
        c, process = self.inetd_over_tcp("")
        c.start_transaction()
        c.send(b"Subject: tcp\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.code(), 250)
        self.assertEqual(c.command(b"QUIT"), 221)
        self.assertEqual(process.wait(10), 0)
        ids = entry_ids(self.spool)
        self.assertEqual(len(ids), 1)
        content, _ = read_entry(self.spool, ids[0])
        self.assertIn(b"([127.0.0.1])", content.split(b"\r\n")[0])

    def test_inetd_over_tcp_applies_access_control(self):
        c, process = self.inetd_over_tcp("allow = 10.0.0.0/8\n")
        self.assertEqual(c.code(), 554)
        self.assertTrue(c.is_closed())
        self.assertEqual(process.wait(10), 0)
        self.assertIn(b"reason=access-denied", process.stderr.read())

    def test_inetd_peer_closed_output(self):
        # The peer went away before our greeting: an error for this session, not a SIGPIPE death.
        with tempfile.TemporaryDirectory(prefix="leafmail-it-") as workdir:
            spool = os.path.join(workdir, "spool")
            config = os.path.join(workdir, "leafmail.conf")
            open(config, "w").close()
            reader, writer = os.pipe()
            os.close(reader)
            try:
                process = subprocess.Popen([LEAFMAILD, "--inetd", "--config", config, "--spool", spool,
                                            "--log", "stderr"],
                                           stdin=subprocess.PIPE, stdout=writer, stderr=subprocess.PIPE)
            finally:
                os.close(writer)
            try:
                _, err = process.communicate(b"HELO p.example\r\nQUIT\r\n", timeout=10)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
            self.assertGreaterEqual(process.returncode, 0, "killed by signal %d" % -process.returncode)
            self.assertIn(b"event=disconnect", err)
            self.assertEqual(entry_ids(spool), [])


if __name__ == "__main__":
    unittest.main()
