"""What leafmail tells a person (issue 11, "never hide why"): peer text is shown escaped and
long replies wrapped (a real smtplib client and the scripted smarthost put escape sequences in
headers and replies), the Received: line stays a valid header whatever HELO a real client
sends, and configuration mistakes are named with their line, their file and their fix."""

import email.parser
import email.policy
import json
import os
import re
import smtplib
import stat
import subprocess

from harness import LEAFMAIL_FLUSH, LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, Daemon, entry_ids, read_entry
from scripted_smarthost import ScriptedSmarthost
from test_flush import SENDER, FlushTestCase, message

EX_CONFIG = 78

# What a hostile sender and a hostile (or broken) smarthost write: OSC 0 sets the window
# title, CSI 2J clears the screen, CSI H homes the cursor, U+009B is the 8-bit CSI.
OSC_TITLE = "\x1b]0;owned\x07"
CSI_CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\u009b31m"
LONG_REPLY = ("450 4.2.0 <bob@remote.test>: Recipient address rejected: " + OSC_TITLE +
              " Greylisted, see https://postgrey.example.net/help/remote.test.html and come back "
              "in five minutes " + CSI_CLEAR + C1_CSI + " (policy-greylist-retry-later)")


def raw_controls(data):
    """The terminal controls in data (bytes): C0 but tab and newline, DEL, C1 as UTF-8, and
    octets that are not UTF-8 (a raw 8-bit C1 among them)."""
    text = data.decode("utf-8", "surrogateescape")
    return [c for c in text if (ord(c) < 0x20 and c not in "\t\n") or 0x7f <= ord(c) < 0xa0
            or 0xdc80 <= ord(c) <= 0xdcff]


class PeerControlsShownEscaped(FlushTestCase):
    def run_list(self, *args):
        result = subprocess.run([LEAFMAIL_LIST, "--spool", self.spool, "--config", self.flush_config] +
                                list(args), capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_escape_sequences_from_a_client_and_a_smarthost_never_reach_the_terminal(self):
        # smtplib sends the header as it is: ESC, BEL and the UTF-8 C1 octets included.
        headers = ("X-Title: " + OSC_TITLE + "\r\nX-Clear: " + CSI_CLEAR + C1_CSI + "\r\n").encode()
        self.queue(message("hello " + OSC_TITLE, extra_headers=headers))
        [entry] = entry_ids(self.spool)
        server = ScriptedSmarthost(faults={"rcpt": "answer:" + LONG_REPLY}, faulty_connections=100).start()
        self.addCleanup(server.stop)
        rc, out, err, _, _ = self.flush("--tls", "none", "--verbose", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 75, err)
        # The verbose dialogue and the log quote the smarthost's reply: escaped.
        self.assertIn("\\x1b]0;owned\\x07", err)
        self.assertEqual(raw_controls(err.encode()), [], err)

        listing = self.run_list()
        details = self.run_list(entry)
        for name, text in (("listing", listing), ("details", details)):
            self.assertEqual(raw_controls(text), [], "%s: %r" % (name, text))
        self.assertIn(b"X-Title: \\x1b]0;owned\\x07", details)
        self.assertIn(b"X-Clear: \\x1b[2J\\x1b[H\\xc2\\x9b31m", details)
        self.assertIn(b"Subject: hello \\x1b]0;owned\\x07", details)

        # Wrapped, not cut: every word of the reply is in the listing, on lines of 80 columns.
        self.assertNotIn(b"...", listing)
        reply_lines = [line[13:] for line in listing.decode().split("\n") if line.startswith(" " * 13)]
        self.assertGreater(len(reply_lines), 1, listing)
        self.assertTrue(all(len(line) <= 80 for line in listing.decode().split("\n")), listing)
        shown = LONG_REPLY.replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\u009b", "\\xc2\\x9b")
        self.assertEqual(" ".join(reply_lines), shown)

        # The detail view shows it on one line and --json keeps the smarthost's text whole.
        self.assertIn(b"reply      " + shown.encode() + b"\n", details)
        [listed] = self.list_json()
        self.assertEqual(listed["recipients"][0]["last_reply"], LONG_REPLY)

        # --dry-run lists the entry from the spool without raw bytes either.
        rc, out, err, _, _ = self.flush("--tls", "none", "--dry-run", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertIn(entry, out)
        self.assertEqual(raw_controls((out + err).encode()), [])

    def list_json(self):
        return json.loads(self.run_list("--json"))

    def test_a_bounce_names_an_address_smarthost_as_an_address_literal(self):
        self.queue(message("refused"))
        server = ScriptedSmarthost(faults={"rcpt": "answer:550 5.1.1 no such user"},
                                   faulty_connections=100).start()
        self.addCleanup(server.stop)
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        # The bounce to our sender is queued, or already refused by the same smarthost.
        bounces = [read_entry(self.spool, i, area)[0] for area in ("queue", "failed")
                   for i in entry_ids(self.spool, area)]
        bounces = [b for b in bounces if b"Remote-MTA:" in b]
        self.assertEqual(len(bounces), 1, (rc, out, err))
        # RFC 3464 2.3.5 with RFC 5321 4.1.3: "dns" names a host; an address is a literal.
        self.assertIn(b"Remote-MTA: dns; [127.0.0.1]\r\n", bounces[0])


class HeloNames(FlushTestCase):
    def ehlo(self, name):
        """EHLO name (bytes) from smtplib; returns the reply code (and closes)."""
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.command_encoding = "latin-1"  # smtplib would refuse to send 8-bit itself
            code, _ = client.ehlo(name.decode("latin-1"))
            return code

    def test_eight_bit_and_overlong_helo_are_refused_with_501(self):
        # RFC 5321 4.1.1.1 (a Domain or an address literal) and 4.5.3.1.2 (255 octets).
        self.assertEqual(self.ehlo("m\xfcller.example".encode("latin-1")), 501)
        self.assertEqual(self.ehlo("m\u00fcller.example".encode("utf-8")), 501)
        self.assertEqual(self.ehlo(b"a" * 990), 501)
        self.assertEqual(self.ehlo(b"a" * 256), 501)
        self.assertEqual(entry_ids(self.spool), [])

    def test_the_longest_helo_gives_a_received_line_that_parses(self):
        helo = "h" * 251 + ".net"
        recipient = "r" * 64 + "@" + ("d" * 60 + ".") * 2 + "remote.test"  # RFC 5321 4.5.3.1
        with smtplib.SMTP("127.0.0.1", self.daemon.port, local_hostname=helo, timeout=30) as client:
            client.sendmail(SENDER, [recipient], message("long helo"))
        [entry] = entry_ids(self.spool)
        content = read_entry(self.spool, entry)[0]
        header = content[:content.index(b"\r\n\r\n") + 2]
        lines = header.split(b"\r\n")[:-1]
        self.assertTrue(all(len(line) <= 998 for line in lines), [len(line) for line in lines])
        # A field starts each unfolded line; the others are continuations (RFC 5322 2.2).
        for line in lines:
            self.assertRegex(line, rb"^([!-9;-~]+:|[ \t])", line[:80])
        parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(content)
        self.assertEqual(parsed.defects, [])
        received = parsed["Received"]
        self.assertIn("from " + helo, received)
        self.assertIn("for <" + recipient + ">;", received)
        self.assertEqual(parsed["Subject"], "long helo")


class ConfigurationDiagnostics(FlushTestCase):
    def write_config(self, text):
        path = os.path.join(self.daemon.workdir, "diag.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_tool(self, command):
        return subprocess.run(command, capture_output=True, timeout=60, text=True)

    def test_a_line_without_equals_and_a_duplicate_key_name_their_own_line(self):
        path = self.write_config("spool = %s\n# relay\nsmarthost 127.0.0.1:25\n" % self.spool)
        result = self.run_tool([LEAFMAIL_LIST, "--config", path])
        self.assertEqual(result.returncode, EX_CONFIG, result.stderr)
        self.assertIn("%s:3: expected 'key = value', not 'smarthost 127.0.0.1:25'" % path, result.stderr)

        path = self.write_config("spool = %s\nsmarthost = a.example\n\ntls = none\nsmarthost = b.example\n" % self.spool)
        result = self.run_tool([LEAFMAIL_LIST, "--config", path])
        self.assertEqual(result.returncode, EX_CONFIG, result.stderr)
        self.assertIn("%s:5: 'smarthost' is set twice (first on line 2)" % path, result.stderr)

    def test_a_missing_ca_file_is_named_at_check_dry_run_and_flush(self):
        self.queue(message("ca"))
        missing = os.path.join(self.daemon.workdir, "no-such-ca.pem")
        for mode in ("--check", "--dry-run", None):
            args = ["--tls", "starttls", "--ca-file", missing] + ([mode] if mode else [])
            rc, out, err, _, _ = self.flush(*args, smarthost="localhost:25")
            self.assertEqual(rc, EX_CONFIG, "%s: %s" % (mode, err))
            self.assertIn("cannot read ca-file %s: No such file or directory" % missing, err, mode)
            self.assertNotIn("asio.ssl", err, mode)
        self.assertEqual(len(entry_ids(self.spool)), 1)

    def test_dry_run_checks_the_password_file(self):
        self.queue(message("password"))
        path = os.path.join(self.daemon.workdir, "password")
        args = ["--tls", "starttls", "--ca-file", self.ca.ca_cert, "--auth-user", "u",
                "--auth-password-file", path, "--dry-run"]
        cases = (("missing", None, None, "No such file or directory"),
                 ("readable by others", b"secret\n", 0o644, "group or others"),
                 ("empty", b"", 0o600, "empty"))
        for what, content, mode, expected in cases:
            if os.path.exists(path):
                os.remove(path)
            if content is not None:
                with open(path, "wb") as f:
                    f.write(content)
                os.chmod(path, mode)
            rc, out, err, _, _ = self.flush(*args, smarthost="localhost:25")
            self.assertEqual(rc, EX_CONFIG, "%s: %s" % (what, err))
            self.assertIn("auth-password-file %s: " % path, err, what)
            self.assertIn(expected, err, what)
        with open(path, "wb") as f:
            f.write(b"secret\n")
        os.chmod(path, 0o600)
        rc, out, err, _, _ = self.flush(*args, smarthost="localhost:25")
        self.assertEqual(rc, 0, err)
        self.assertIn("from=<%s>" % SENDER, out)

    def test_a_missing_spool_is_78_with_a_hint_in_every_tool(self):
        missing = os.path.join(self.daemon.workdir, "no-spool")
        path = self.write_config("spool = %s\nsmarthost = 127.0.0.1:25\ntls = none\n" % missing)
        hint = "no spool at %s (leafmaild creates it" % missing
        for name, command, stdin in (
                ("leafmail-flush", [LEAFMAIL_FLUSH, "--config", path], None),
                ("leafmail-list", [LEAFMAIL_LIST, "--config", path], None),
                ("leafmail-sendmail", [LEAFMAIL_SENDMAIL, "-C", path, "bob@remote.test"], "Subject: x\n\nx\n")):
            result = subprocess.run(command, capture_output=True, timeout=60, text=True, input=stdin)
            self.assertEqual(result.returncode, EX_CONFIG, "%s: %s" % (name, result.stderr))
            self.assertIn(hint, result.stderr, name)
        # A directory made by hand but never set up is no spool either (was 75, "try later").
        os.mkdir(missing)
        result = self.run_tool([LEAFMAIL_FLUSH, "--config", path])
        self.assertEqual(result.returncode, EX_CONFIG, result.stderr)
        self.assertIn(hint, result.stderr)

    def test_leafmaild_creates_a_missing_spool_with_its_parents(self):
        spool = os.path.join(self.daemon.workdir, "fresh", "clone", ".build", "demo-spool")
        daemon = Daemon()
        daemon.spool = spool
        self.addCleanup(daemon.close)
        daemon.start()
        for area in ("tmp", "queue", "hold", "failed", "corrupt"):
            self.assertTrue(stat.S_ISDIR(os.lstat(os.path.join(spool, area)).st_mode), area)
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.sendmail(SENDER, ["bob@remote.test"], message("fresh"))
        self.assertEqual(len(entry_ids(spool)), 1)
