"""Delivery that tells the truth (issue 11): leafmail-flush against aiosmtpd (smarthost.py) and
the scripted smarthost (scripted_smarthost.py) for the replies aiosmtpd cannot give. Only a 250
to the final dot delivers; a connection that ends after the dot leaves the message unconfirmed
and pending; 452 "too many recipients" and max-recipients-per-transaction split a message into
several transactions of one run; every failure after the greeting ends with QUIT, and TLS with
close_notify. Messages are queued through the real leafmaild; every wait is bounded."""

import json
import os
import quopri
import re
import subprocess
import unittest

from harness import LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, entry_ids, read_entry
from test_flush import FlushTestCase, message
from test_hardening_flush import HardeningFlushCase, PASSWORD, USER


def read_quit_then_close(connection):
    """A peer silent on the final dot that answers only the QUIT pipelined behind it."""
    line = connection.read_line()
    connection.commands.append((line.decode("utf-8", "replace"), connection.tls))
    if line.upper() == b"QUIT":
        connection.reply("221 2.0.0 bye")


def wait_for_command_then_close(connection):
    """Stays silent (the client times out), records what the client sends next."""
    try:
        line = connection.read_line()
        connection.commands.append((line.decode("utf-8", "replace"), connection.tls))
        if line.upper() == b"QUIT":
            connection.reply("221 2.0.0 bye")
    except (ConnectionError, OSError):
        pass


class TheFinalDot(HardeningFlushCase):
    def list_spool(self, *args):
        result = subprocess.run([LEAFMAIL_LIST, "--config", self.flush_config, "--spool",
                                 self.spool] + list(args), capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def assert_listed_unconfirmed(self, unconfirmed):
        """leafmail-list shows whether the message may already have reached bob."""
        state = "pending (unconfirmed)" if unconfirmed else "pending   "
        self.assertIn("  %s <bob@remote.test>\n" % state, self.list_spool())
        entries = json.loads(self.list_spool("--json"))
        self.assertEqual(len(entries), 1)
        recipient = entries[0]["recipients"][0]
        self.assertEqual((recipient["state"], recipient["unconfirmed"]), ("pending", unconfirmed))

    def test_a_221_to_the_pipelined_quit_is_not_a_delivery(self):
        entry, _ = self.queue_one("silent on the dot")
        server = self.scripted(ehlo_extra=["PIPELINING"], faults={"dot": read_quit_then_close})
        status, out, err, _, _ = self.flush_to(server)
        self.assertEqual(status, 75, err)
        self.assertEqual(server.messages, [])  # the content arrived, no 250 came for it
        self.assertIn(entry, entry_ids(self.spool), "taken as delivered on a 221")
        self.assertIn("event=unconfirmed", err)
        _, envelope = read_entry(self.spool, entry)
        self.assertIn("unexpected reply to the end of data", envelope)
        self.assertRegex(out, r"sent 0, deferred 1, failed 0, unconfirmed 1 in")
        self.assert_listed_unconfirmed(True)
        # Next time the smarthost answers: sent once more (at-least-once), then gone.
        status, out, err, _, _ = self.flush_to(server)
        self.assertEqual(status, 0, err)
        self.assertEqual(len(server.messages), 1)
        self.assertEqual(entry_ids(self.spool), [])

    def test_connection_closed_after_the_dot_is_unconfirmed(self):
        entry, _ = self.queue_one("closed after the dot")
        server = self.scripted(ehlo_extra=["PIPELINING"], faults={"dot": "close"})
        status, out, err, _, _ = self.flush_to(server)
        self.assertEqual(status, 75, err)
        self.assertIn(entry, entry_ids(self.spool))
        self.assertIn("event=unconfirmed", err)
        self.assertRegex(out, r"sent 0, deferred 1, failed 0, unconfirmed 1 in")
        self.assertRegex(err, r"event=summary .* unconfirmed=1")  # the same for syslog readers
        self.assert_listed_unconfirmed(True)
        # A lost connection before the dot tells nothing: still unconfirmed, not counted anew.
        closing = self.scripted(faults={"mail": "close"})
        status, out, err, _, _ = self.flush_to(closing)
        self.assertEqual(status, 75, err)
        self.assertRegex(out, r"sent 0, deferred 1, failed 0 in")
        self.assert_listed_unconfirmed(True)
        # The smarthost's own answer (450 at RCPT) clears it; the message stays pending.
        busy = self.scripted(faults={"rcpt": "answer:450 4.2.1 mailbox busy"})
        status, out, err, _, _ = self.flush_to(busy)
        self.assertEqual(status, 75, err)
        self.assertEqual(busy.messages, [])
        self.assert_listed_unconfirmed(False)


class TooManyRecipients(FlushTestCase):
    daemon_config = "max-recipients = 1000\n"

    def queue_many(self, count):
        recipients = ["r%04d@remote.test" % i for i in range(count)]
        self.queue(message("many recipients"), recipients=recipients)
        return recipients

    def test_452_splits_into_transactions_of_one_run(self):
        recipients = self.queue_many(1000)
        server = self.smarthost()
        server.behaviour.max_recipients = 100
        # leafmail's own limit out of the way: the smarthost's 452 does the splitting.
        status, out, err, _, _ = self.flush("--tls", "none", "--max-recipients-per-transaction",
                                            "1000", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(status, 0, err)
        self.assertEqual(len(server.messages), 10)
        got = [r for m in server.messages for r in m.rcpt_tos]
        self.assertEqual(sorted(got), recipients)  # each exactly once
        self.assertEqual(server.sessions, 1)
        self.assertEqual(entry_ids(self.spool), [])
        self.assertRegex(out, r"sent 1, deferred 0, failed 0 in")

    def test_max_recipients_per_transaction_splits_first(self):
        recipients = self.queue_many(250)
        server = self.smarthost()
        server.behaviour.max_recipients = 100
        status, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(status, 0, err)
        self.assertEqual([len(m.rcpt_tos) for m in server.messages], [100, 100, 50])
        self.assertEqual(sorted(r for m in server.messages for r in m.rcpt_tos), recipients)
        self.assertNotIn("452", err)  # the smarthost never had to refuse one


class QuitBeforeClosing(HardeningFlushCase):
    def last_command(self, server):
        commands = [cmd for c in server.connections for cmd, _ in c.commands]
        return commands[-1] if commands else None

    def test_bad_password(self):
        self.queue_one("bad password")
        server = self.scripted(tls_context=self.ca.server_context(), users={USER: "other"})
        status, _, err, _, _ = self.flush_to(server, "starttls")
        self.assertEqual(status, 75, err)
        self.assertEqual(self.last_command(server), "QUIT")
        self.assertIn("close_notify", server.connections[0].events)

    def test_starttls_refused(self):
        self.queue_one("starttls refused")
        server = self.starttls_server(faults={"starttls": "answer:454 4.7.0 TLS not available"})
        status, _, err, _, _ = self.flush_to(server, "starttls")
        self.assertEqual(status, 75, err)
        self.assertEqual(self.last_command(server), "QUIT")

    def test_421_greeting(self):
        self.queue_one("busy")
        server = self.scripted(greeting=("421 4.3.2 busy, try later",))
        status, _, err, _, _ = self.flush_to(server)
        self.assertEqual(status, 75, err)
        self.assertEqual(self.last_command(server), "QUIT")

    def test_421_in_the_session(self):
        self.queue_one("421 at mail")
        server = self.scripted(faults={"mail": "answer:421 4.3.2 shutting down"})
        status, _, err, _, _ = self.flush_to(server)
        self.assertEqual(status, 75, err)
        self.assertEqual(self.last_command(server), "QUIT")

    def test_our_timeout_after_a_reply(self):
        entry, _ = self.queue_one("timeout at rcpt")
        server = self.scripted(faults={"rcpt": wait_for_command_then_close})
        status, _, err, seconds, _ = self.flush_to(server)
        self.assertEqual(status, 75, err)
        self.assertEqual(self.last_command(server), "QUIT")
        self.assertIn(entry, entry_ids(self.spool))

    def test_clean_end_under_tls_sends_close_notify(self):
        self.queue_one("delivered under tls")
        server = self.starttls_server()
        status, _, err, _, _ = self.flush_to(server, "starttls")
        self.assertEqual(status, 0, err)
        self.assertEqual(len(server.messages), 1)
        self.assertIn("close_notify", server.connections[0].events)


class AuthenticationNotConfigured(HardeningFlushCase):
    """The smarthost wants AUTH and leafmail has no auth-user: our configuration's fault."""

    def assert_everything_deferred(self, entries, status, out, err):
        self.assertEqual(status, 75, err)
        self.assertEqual(sorted(entry_ids(self.spool)), sorted(entries))  # no bounce queued
        self.assertEqual(os.listdir(os.path.join(self.spool, "failed")), [])
        self.assertRegex(out, r"sent 0, deferred 2, failed 0")
        hints = [l for l in err.splitlines() if "event=authentication-required" in l]
        self.assertEqual(len(hints), 1, err)
        self.assertIn("auth-user", hints[0])

    def test_530_at_mail_from_aiosmtpd(self):
        # aiosmtpd with auth_required answers MAIL with 530 5.7.0, as Exim does.
        entries = [self.queue_one("one")[0], self.queue_one("two")[0]]
        server = self.smarthost(tls="implicit", users={USER: PASSWORD})
        status, out, err, _, _ = self.flush(
            "--tls", "tls", "--ca-file", self.ca.ca_cert, smarthost="localhost:%d" % server.port)
        self.assert_everything_deferred(entries, status, out, err)
        self.assertEqual(server.messages, [])

    def test_554_access_denied_at_rcpt_as_postfix_says_it(self):
        entries = [self.queue_one("one")[0], self.queue_one("two")[0]]
        server = self.scripted(tls_context=self.ca.server_context(), users={USER: PASSWORD},
                               faults={"mail": "answer:250 2.1.0 Ok",
                                       "rcpt": "answer:554 5.7.1 <bob@remote.test>: Relay "
                                               "access denied"},
                               faulty_connections=10)
        status, out, err, _, _ = self.flush(
            "--tls", "starttls", "--ca-file", self.ca.ca_cert, "--timeout", "5",
            smarthost="localhost:%d" % server.port)
        self.assert_everything_deferred(entries, status, out, err)
        self.assertEqual(len(server.connections), 1)  # stops, does not try each message
        commands = [cmd for cmd, _ in server.connections[0].commands]
        self.assertEqual(commands[-1], "QUIT")


def lines_of(content):
    return content.split(b"\r\n")


class WhatLeavesLeafmail(HardeningFlushCase):
    """RFC 6152 section 3 and RFC 5321 section 4.5.3.1.6 at the smarthost's end."""

    def test_8bit_mime_part_becomes_quoted_printable_without_8bitmime(self):
        text = "Gr\u00fc\u00dfe aus K\u00f6ln, = sign and trailing space \r\n".encode() * 3
        content = (b"From: <alice@client.test>\r\nTo: <bob@remote.test>\r\nSubject: 8bit\r\n"
                   b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
                   b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text +
                   b"--b1\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b1--\r\n")
        self.queue(content)
        server = self.scripted(eight_bit_mime=False)
        status, _, err, _, _ = self.flush_to(server)
        self.assertEqual(status, 0, err)
        got = server.messages[0].content
        self.assertTrue(all(b < 128 for b in got), got)  # 7-bit on the wire
        self.assertNotIn("BODY=", " ".join(server.mail_commands()))
        self.assertIn(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n", got)
        encoded = got.split(b"quoted-printable\r\n\r\n")[1].split(b"--b1\r\n")[0]
        self.assertEqual(quopri.decodestring(encoded.replace(b"\r\n", b"\n")),
                         text.replace(b"\r\n", b"\n"))
        self.assertIn(b"\r\nAAEC\r\n--b1--\r\n", got)

    def test_8bit_mime_part_unchanged_with_8bitmime(self):
        body = "K\u00f6ln\r\n".encode()
        content = (b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
        stored = self.queue(content)
        server = self.scripted()
        status, _, err, _, _ = self.flush_to(server)
        self.assertEqual(status, 0, err)
        self.assertEqual(server.messages[0].content, stored)
        self.assertIn("BODY=8BITMIME", " ".join(server.mail_commands()))

    def test_non_mime_8bit_message_is_sent_with_a_warning(self):
        stored = self.queue(b"Subject: cron\r\n\r\nK\xc3\xb6ln\r\n")
        server = self.scripted(eight_bit_mime=False)
        status, _, err, _, _ = self.flush_to(server)
        self.assertEqual(status, 0, err)
        self.assertEqual(server.messages[0].content, stored)
        self.assertIn("event=eight-bit-unconverted", err)

    def test_a_5000_octet_line_from_sendmail_leaves_broken_at_998(self):
        config = os.path.join(self.daemon.workdir, "sendmail.conf")
        with open(config, "w") as f:
            f.write("spool = %s\nhostname = client.test\n" % self.spool)
        long_line = b"y" * 5000
        result = subprocess.run([LEAFMAIL_SENDMAIL, "-C", config, "-f", "alice@client.test",
                                 "bob@remote.test"], input=b"Subject: cron\n\n" + long_line + b"\n",
                                capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        server = self.smarthost()  # aiosmtpd
        status, _, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(status, 0, err)
        got = server.messages[0].content
        self.assertLessEqual(max(len(l) for l in lines_of(got)), 998)
        # Postfix's way (smtp_line_length_limit): CRLF SPACE inserted; nothing lost.
        self.assertIn(long_line, got.replace(b"\r\n ", b""))


if __name__ == "__main__":
    unittest.main()
