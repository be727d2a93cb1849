"""Hardening of the sending side (issue 6): leafmail-flush killed with SIGKILL at random moments,
a smarthost that lies, stalls, dribbles and resets at every step (scripted_smarthost.py), SMTP
smuggling end to end through leafmaild and leafmail-flush into three different receivers, and
secrets that must never leave the process. Messages are queued through the real leafmaild
(harness.py); every loop is bounded in count and time; only processes started here are killed.

Figures (cycles, messages acked, lost, duplicates) are printed on stderr with the prefix
"hardening-flush:" so CI logs keep them."""

import base64
import os
import random
import re
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

from harness import LEAFMAIL_FLUSH, Daemon, entry_ids, read_entry, require, wait_until
from scripted_smarthost import ScriptedSmarthost
from test_flush import FlushTestCase, message, run_process

USER = "relay-user"
PASSWORD = "Pw-7f3c9e1a-never-logged"
# Short limits so that a misbehaving smarthost costs seconds, not minutes.
TIMEOUT = 2
DATA_TIMEOUT = 3
# A flush facing one fault must end well inside this (timeouts above plus start-up).
FAULT_BOUND = 12.0


def figures(text):
    print("hardening-flush: " + text, file=sys.stderr, flush=True)


def make_expired_certificates(ca, directory):
    """Server certificates for `localhost` signed by the test CA but expired (2020) and not
    yet valid (2090), made with `openssl ca` and explicit -startdate/-enddate."""
    database = os.path.join(directory, "index.txt")
    open(database, "w").close()
    with open(os.path.join(directory, "serial"), "w") as f:
        f.write("1000\n")
    config = os.path.join(directory, "ca.cnf")
    with open(config, "w") as f:
        f.write("[ ca ]\ndefault_ca = test_ca\n[ test_ca ]\n"
                "database = %s\nnew_certs_dir = %s\nserial = %s\n"
                "default_md = sha256\npolicy = any\nunique_subject = no\n"
                "[ any ]\ncommonName = supplied\n" % (database, directory, os.path.join(directory, "serial")))
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    csr = os.path.join(directory, "server.csr")
    subprocess.run(["openssl", "req", "-new", "-key", ca.key, "-out", csr, "-subj", "/CN=localhost"],
                   check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    made = {}
    for name, start, end in (("expired", "20200101000000Z", "20200201000000Z"),
                             ("future", "20900101000000Z", "20900201000000Z")):
        path = os.path.join(directory, name + ".pem")
        subprocess.run(["openssl", "ca", "-batch", "-config", config, "-cert", ca.ca_cert,
                        "-keyfile", ca.ca_key, "-in", csr, "-out", path, "-notext",
                        "-startdate", start, "-enddate", end, "-extfile", ext],
                       check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        made[name] = path
    return made


def server_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class HardeningFlushCase(FlushTestCase):
    """FlushTestCase (test_flush.py) plus a scripted smarthost and the fault assertions."""

    def scripted(self, **kwargs):
        server = ScriptedSmarthost(**kwargs).start()
        self.addCleanup(server.stop)
        return server

    def starttls_server(self, **kwargs):
        return self.scripted(tls_context=self.ca.server_context(), users={USER: PASSWORD}, **kwargs)

    def flush_to(self, server, tls="none", *extra, timeout=60.0):
        args = ["--tls", tls, "--timeout", str(TIMEOUT), "--data-timeout", str(DATA_TIMEOUT),
                "--connect-timeout", str(TIMEOUT)]
        password = None
        if tls != "none":
            args += ["--ca-file", self.ca.ca_cert, "--auth-user", USER]
            password = PASSWORD
        host = "localhost" if tls != "none" else "127.0.0.1"
        return self.flush(*(args + list(extra)), smarthost="%s:%d" % (host, server.port),
                          password=password, timeout=timeout)

    def queue_one(self, subject, body=b"Hello.\r\n"):
        content = self.queue(message(subject, body))
        ids = entry_ids(self.spool)
        return ids[-1], content

    def clear_queue(self):
        """Starts a subtest on an empty queue even when the one before failed half-way."""
        directory = os.path.join(self.spool, "queue")
        for name in os.listdir(directory):
            os.remove(os.path.join(directory, name))

    def assert_deferred(self, result, entry, content, what, bound=FAULT_BOUND, deferred=1):
        """Exit 75 in bounded time; the entry is still queued, its content untouched."""
        rc, out, err, seconds, _ = result
        self.assertEqual(rc, 75, "%s: %s" % (what, err))
        self.assertLess(seconds, bound, "%s took %.1f s" % (what, seconds))
        self.assert_summary(out, 0, deferred, 0)
        self.assertIn(entry, entry_ids(self.spool), what)
        self.assertEqual(read_entry(self.spool, entry)[0], content, what)
        self.assertEqual(entry_ids(self.spool, "failed"), [], what)
        # Either the connection failed (and says why) or the smarthost's answer deferred it.
        self.assertRegex(err, r"event=connection-failed .*reason=|event=deferred id=%s" % entry, what)

    def assert_delivered_once(self, server, content, what, tls="none"):
        """The next flush, on a well-behaved connection, delivers it exactly once."""
        before = len(server.messages)
        rc, out, err, _, _ = self.flush_to(server, tls)
        self.assertEqual(rc, 0, "%s: %s" % (what, err))
        got = [m.content for m in server.messages[before:]]
        self.assertEqual(got, [content], what)
        self.assertEqual(entry_ids(self.spool), [], what)


class KillDuringFlush(HardeningFlushCase):
    MESSAGES = 80
    CYCLES = 20

    def test_kill_9_at_random_moments_loses_nothing(self):
        seed = int(os.environ.get("LEAFMAIL_KILL_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        server = self.smarthost(tls="none")
        server.behaviour.stall_after_data = 0.03  # a slow smarthost: kills land in every step
        sent = {}
        for i in range(self.MESSAGES):
            mid = "<kill-%d-%s@client.test>" % (i, uuid.uuid4().hex)
            # Every seventh is large, so some kills land in the middle of content.
            body = (b"%d " % i + b"k" * 70 + b"\r\n") * (3000 if i % 7 == 0 else 3)
            self.queue(message("kill %d" % i, body, b"Message-ID: " + mid.encode() + b"\r\n"))
            sent[mid] = i
        self.assertEqual(len(entry_ids(self.spool)), self.MESSAGES)
        command = [LEAFMAIL_FLUSH, "--config", self.flush_config, "--spool", self.spool, "--log", "stderr",
                   "--tls", "none", "--smarthost", "127.0.0.1:%d" % server.port, "--lock-timeout", "10"]
        deadline = time.monotonic() + 90
        cycles = 0
        killed_running = 0
        while cycles < self.CYCLES and time.monotonic() < deadline:
            before = len(server.messages)
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            if cycles % 2:
                # A random moment after start: connect, greeting, EHLO, or in a transaction.
                time.sleep(rng.uniform(0.01, 0.6))
            else:
                # A few messages in, then a little later: around a final dot and its record.
                target = before + rng.randint(1, 4)
                wait_until(lambda: len(server.messages) >= target, timeout=10, interval=0.002)
                time.sleep(rng.uniform(0, 0.04))
            if process.poll() is None:
                killed_running += 1
            process.send_signal(signal.SIGKILL)  # our own child, by its pid
            process.wait(10)
            cycles += 1
            # No reader ever sees a half-written entry: every queued entry parses whole.
            for entry in entry_ids(self.spool):
                read_entry(self.spool, entry)
        self.assertGreaterEqual(cycles, 10)
        mid_re = re.compile(rb"^Message-ID: (<[^>]+>)\r$", re.M)
        during = len(server.messages)
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        received = []
        for m in server.messages:
            found = mid_re.search(m.content)
            self.assertIsNotNone(found, m.content[:300])
            received.append(found.group(1).decode())
        unknown = set(received) - set(sent)
        lost = set(sent) - set(received)
        duplicates = len(received) - len(set(received))
        figures("kill -9 flush: seed=%d cycles=%d killed-while-running=%d messages=%d received-before-final=%d "
                "received=%d lost=%d duplicates=%d unknown=%d"
                % (seed, cycles, killed_running, len(sent), during, len(received), len(lost), duplicates,
                   len(unknown)))
        self.assertEqual(unknown, set())
        self.assertEqual(lost, set())
        # At-least-once: a kill can repeat at most the one message whose final dot was in
        # flight (one connection, no PIPELINING at aiosmtpd).
        self.assertLessEqual(duplicates, cycles)
        self.assertTrue(all(m.mail_from != "<>" for m in server.messages), "no bounce expected")
        self.assertEqual(entry_ids(self.spool), [])
        self.assertEqual(entry_ids(self.spool, "failed"), [])
        self.assertEqual(os.listdir(os.path.join(self.spool, "tmp")), [])


class Misbehaviour(HardeningFlushCase):
    """Each fault ends in a defined state within the configured timeouts, and the message goes
    out exactly once on the next, well-behaved connection."""

    STEPS_WITH_TLS = ("greeting", "ehlo", "starttls", "tls", "auth", "mail", "rcpt", "data", "content", "dot")

    def run_fault(self, what, server, tls="none", bound=FAULT_BOUND, recorded=False):
        self.clear_queue()
        entry, content = self.queue_one(what)
        result = self.flush_to(server, tls)
        self.assert_deferred(result, entry, content, what, bound)
        envelope = read_entry(self.spool, entry)[1]
        if recorded:
            # The attempt reached the recipient: it is recorded in the entry's state.
            self.assertTrue(os.path.exists(os.path.join(self.spool, "queue", entry + ".env")), what)
            # spool-format: address, state (0 pending), attempts, last attempt, last reply.
            self.assertRegex(envelope, r"bob@remote\.test 0 [1-9]\d* \d+ [1-9]\d* [2-5]\d\d", what)
        self.assert_delivered_once(server, content, what, tls)
        return result

    def test_connection_reset_and_close_at_every_step(self):
        for action in ("reset", "close"):
            for step in self.STEPS_WITH_TLS:
                with self.subTest(step=step, action=action):
                    server = self.starttls_server(faults={step: action})
                    self.run_fault("%s at %s" % (action, step), server, tls="starttls",
                                   recorded=step in ("mail", "rcpt", "data", "content", "dot"))
                    self.assertEqual(server.faults_done, 1)
                    self.assertEqual(server.errors, [])

    def test_stall_at_every_step_times_out(self):
        for step in self.STEPS_WITH_TLS:
            with self.subTest(step=step):
                server = self.starttls_server(faults={step: "stall"})
                _, _, err, seconds, _ = self.run_fault("stall at %s" % step, server, tls="starttls",
                                                       bound=DATA_TIMEOUT + 6)
                self.assertIn("timeout", err)
                self.assertGreaterEqual(seconds, TIMEOUT - 0.5)

    def test_data_accepted_then_no_reply_to_final_dot(self):
        server = self.scripted(faults={"dot": "stall"})
        entry, content = self.queue_one("no final reply")
        rc, out, err, seconds, _ = self.flush_to(server)
        self.assert_deferred((rc, out, err, seconds, 0), entry, content, "no final reply")
        self.assertGreaterEqual(seconds, DATA_TIMEOUT - 0.5)
        self.assertRegex(err, r"timeout waiting for the reply to the end of data")
        self.assertIn("timeout", read_entry(self.spool, entry)[1])  # the attempt is recorded
        self.assert_delivered_once(server, content, "no final reply")

    def test_replies_split_at_odd_places_with_multiline_greeting_and_ehlo(self):
        greeting = ["220-scripted.test first line of a long greeting",
                    "220-second line",
                    "220 third line"]
        for split in ("bytewise", "odd"):
            for tls in ("none", "starttls"):
                with self.subTest(split=split, tls=tls):
                    self.clear_queue()
                    kwargs = dict(split=split, greeting=greeting,
                                  ehlo_extra=["PIPELINING-NOT", "X-LONG " + "y" * 300, "HELP"])
                    server = (self.starttls_server(**kwargs) if tls == "starttls" else self.scripted(**kwargs))
                    contents = [self.queue_one("split %s %s %d" % (split, tls, i))[1] for i in range(3)]
                    rc, out, err, _, _ = self.flush_to(server, tls, timeout=60)
                    self.assertEqual(rc, 0, err)
                    self.assertEqual([m.content for m in server.messages], contents)
                    self.assertEqual(entry_ids(self.spool), [])

    def test_dribbling_smarthost_is_cut_at_the_timeout(self):
        # One byte every 0.25 s: each read arrives in time, but the greeting as a whole takes
        # far longer than the reply timeout; a tarpit must not hold the flush for minutes.
        greeting = ["220-" + "d" * 60] * 3 + ["220 end"]
        server = self.scripted(split="bytewise", split_delay=0.25, greeting=greeting)
        entry, content = self.queue_one("dribble")
        result = self.flush_to(server, timeout=120)
        self.assert_deferred(result, entry, content, "dribble", bound=TIMEOUT + 6)
        self.assertIn("timeout", result[2])

    def test_garbage_replies(self):
        cases = [
            ("greeting", "reply:hello, not SMTP\r\n"),
            ("greeting", "reply:2200 four digits\r\n"),
            ("greeting", "reply:220x no separator\r\n"),
            ("greeting", "reply:620 class six\r\n"),
            ("greeting", "reply:120 class one\r\n"),
            ("greeting", "reply:\x00\x01\x02\xff\r\n"),
            ("greeting", "reply:220-multi\r\n250 code changed inside\r\n"),
            ("greeting", "reply:554 5.3.2 go away\r\n"),
            ("ehlo", "reply:250-ok\r\n25O letter O\r\n"),
            ("ehlo", "reply:\r\n"),
            ("mail", "reply:25\r\n"),
            ("mail", "answer:354 start mail input"),
            ("rcpt", "answer:354 start mail input"),
            ("rcpt", "reply:250 ok\r\n250 one reply too many\r\n"),
            ("data", "answer:250 2.0.0 no content wanted"),
            ("data", "answer:220 hello again"),
            ("dot", "answer:354 more please"),
            ("dot", "answer:2x0 garbled"),
            ("dot", "reply:hello\r\n"),
        ]
        for k, (step, action) in enumerate(cases):
            with self.subTest(step=step, action=action):
                server = self.scripted(faults={step: action})
                self.run_fault("garbage case %d at %s" % (k, step), server,
                               recorded=step in ("mail", "rcpt", "data", "dot"))

    def test_overlong_replies_bounded_memory(self):
        many_lines = "reply:" + "250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n" * 20000
        for step, action in (("greeting", "long"), ("ehlo", "long"), ("dot", "long"), ("ehlo", many_lines)):
            with self.subTest(step=step, action=action[:10]):
                server = self.scripted(faults={step: action})
                _, _, err, _, peak_kib = self.run_fault("overlong at %s" % step, server,
                                                        recorded=step == "dot")
                # AddressSanitizer's shadow memory alone costs more than the whole plain flush.
                limit_mib = 160 if os.environ.get("LEAFMAIL_SANITIZED") else 32
                self.assertLess(peak_kib, limit_mib * 1024, "peak RSS %d KiB" % peak_kib)
                self.assertRegex(err, r"too long|too many")

    def test_tls_handshake_failures(self):
        def close_mid_handshake(c):
            c.sock.recv(5)  # the start of the ClientHello
            c.close()

        def plaintext_in_handshake(c):
            c.send(b"220 this is not TLS at all\r\n" * 4)
            c.server.sleep(c.server.stall_seconds)

        cases = [("close", "close"), ("reset", "reset"), ("close mid-handshake", close_mid_handshake),
                 ("plaintext", plaintext_in_handshake),
                 ("TLS alert", "reply:\x15\x03\x03\x00\x02\x02\x28")]  # fatal handshake_failure
        for name, action in cases:
            with self.subTest(action=name):
                server = self.starttls_server(faults={"tls": action})
                _, _, err, _, _ = self.run_fault("tls %s" % name, server, tls="starttls")
                self.assertIn("TLS", err)
                self.assertEqual(server.mail_commands(in_clear_only=True), [])

    def test_implicit_tls_against_plaintext_server(self):
        server = self.scripted()
        entry, content = self.queue_one("implicit vs plaintext")
        result = self.flush("--tls", "tls", "--ca-file", self.ca.ca_cert, "--timeout", str(TIMEOUT),
                            "--connect-timeout", str(TIMEOUT), smarthost="localhost:%d" % server.port)
        self.assert_deferred(result, entry, content, "implicit vs plaintext")
        self.assertEqual(server.mail_commands(), [])

    def test_expired_and_not_yet_valid_certificates_refused(self):
        with tempfile.TemporaryDirectory(prefix="leafmail-expired-") as d:
            certs = make_expired_certificates(self.ca, d)
            for k, (name, reason) in enumerate((("expired", "expired"), ("future", "not yet valid"))):
                with self.subTest(certificate=name):
                    server = self.scripted(tls_context=server_context(certs[name], self.ca.key),
                                           users={USER: PASSWORD})
                    entry, content = self.queue_one("certificate %s" % name)
                    result = self.flush_to(server, "starttls")
                    self.assert_deferred(result, entry, content, name, deferred=k + 1)
                    self.assertIn("certificate", result[2])
                    self.assertIn(reason, result[2])
                    self.assertEqual(server.mail_commands(), [])
                    self.assertEqual(server.auth_seen, [])
                    server.stop()
            # And the same certificate is fine once verification is off, as configured.
            server = self.scripted(tls_context=server_context(certs["expired"], self.ca.key))
            rc, out, err, _, _ = self.flush("--tls", "starttls", "--tls-verify", "no", "--timeout", str(TIMEOUT),
                                            smarthost="localhost:%d" % server.port)
            self.assertEqual(rc, 0, err)
            self.assertEqual(len(server.messages), 2)


class Smuggling(HardeningFlushCase):
    """SMTP smuggling (CVE-2023-51764/5/6) end to end: a client of leafmaild hides a second
    transaction behind a non-standard end of data; whatever the receiver behind leafmail-flush
    takes for the end of data, exactly one message arrives per message sent, bytes intact."""

    SEQUENCES = {"LF.LF": b"\n.\n", "CR.CR": b"\r.\r", "LF.CRLF": b"\n.\r\n", "CRLF.LF": b"\r\n.\n",
                 "LF..LF": b"\n..\n", "CR.LF": b"\r.\n"}

    def smuggle(self, name, sequence):
        """Sends one message over a raw socket (smtplib would rewrite the line ends)."""
        fake = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@remote.test>\r\nDATA\r\n"
                b"From: <ceo@client.test>\r\nSubject: smuggled " + name.encode() + b"\r\n\r\nPay now.\r\n")
        content = (b"From: <alice@client.test>\r\nTo: <bob@remote.test>\r\nSubject: carrier " +
                   name.encode() + b"\r\n\r\nHello." + sequence + fake + b"end of carrier\r\n")
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10) as s:
            f = s.makefile("rb")

            def reply():
                lines = []
                while True:
                    line = f.readline()
                    lines.append(line)
                    if len(line) < 4 or line[3:4] != b"-":
                        return b"".join(lines)

            self.assertTrue(reply().startswith(b"220"))
            for command in (b"EHLO client.test", b"MAIL FROM:<alice@client.test>", b"RCPT TO:<bob@remote.test>"):
                s.sendall(command + b"\r\n")
                self.assertTrue(reply().startswith(b"25"), command)
            s.sendall(b"DATA\r\n")
            self.assertTrue(reply().startswith(b"354"))
            s.sendall(content + b".\r\n")
            final = reply()
            s.sendall(b"QUIT\r\n")
            reply()
        return final

    def queue_smuggling(self):
        spooled = {}
        for name, sequence in self.SEQUENCES.items():
            final = self.smuggle(name, sequence)
            self.assertTrue(final.startswith(b"250"), (name, final))
        for entry in entry_ids(self.spool):
            content = read_entry(self.spool, entry)[0]
            name = re.search(rb"Subject: carrier (\S+)", content).group(1).decode()
            # Stored whole: the fake transaction is content of the carrier.
            self.assertIn(b"MAIL FROM:<evil@attacker.test>", content, name)
            spooled[name] = content
        self.assertEqual(sorted(spooled), sorted(self.SEQUENCES))
        return spooled

    def check_arrivals(self, messages, spooled, receiver, exact=True):
        figures("smuggling into %s: sent=%d arrived=%d" % (receiver, len(spooled), len(messages)))
        self.assertEqual(len(messages), len(spooled), receiver)
        for mail_from, rcpts, content in messages:
            self.assertEqual(mail_from, "alice@client.test", receiver)
            self.assertEqual(rcpts, ["bob@remote.test"], receiver)
            name = re.search(rb"Subject: carrier (\S+)", content).group(1).decode()
            if exact:
                self.assertEqual(content, spooled[name], (receiver, name))
            else:
                self.assertTrue(content.endswith(spooled[name]), (receiver, name))

    def test_into_aiosmtpd(self):
        spooled = self.queue_smuggling()
        server = self.smarthost(tls="none")
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.check_arrivals([(m.mail_from, m.rcpt_tos, m.content) for m in server.messages], spooled, "aiosmtpd")

    def test_into_a_lenient_receiver(self):
        # A receiver that ends the data at any of <LF>.<LF>, <CR>.<CR>, <LF>.<CRLF>, <CRLF>.<LF>
        # (the vulnerable side of the smuggling research): our wire form must give it nothing
        # to split at.
        spooled = self.queue_smuggling()
        server = self.scripted(lenient_data_end=True)
        rc, out, err, _, _ = self.flush_to(server)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(server.mail_commands()), len(spooled))
        self.check_arrivals([(m.mail_from, m.rcpt_tos, m.content) for m in server.messages], spooled, "lenient")

    def test_bare_cr_injected_locally_into_a_lenient_receiver(self):
        # leafmaild stores CRLF only, but leafmail-sendmail keeps a bare CR inside a line: the
        # relay must not hand "<CR>.<CR>" to a receiver that takes a bare CR for a line end.
        from harness import LEAFMAIL_SENDMAIL
        if not os.path.isfile(LEAFMAIL_SENDMAIL):
            require(self, False, "LEAFMAIL_SENDMAIL not built")
        config = os.path.join(self.daemon.workdir, "sendmail.conf")
        with open(config, "w") as f:
            f.write("spool = %s\nhostname = test.leafmail\ndomain = client.test\n" % self.spool)
        fake = b"MAIL FROM:<evil@attacker.test>\nRCPT TO:<victim@remote.test>\nDATA\nSubject: smuggled\n\nPay.\n"
        body = (b"From: <alice@client.test>\nTo: <bob@remote.test>\nSubject: carrier local\n\n"
                b"Hello.\r.\r" + fake + b"end\r.\r\n")
        result = subprocess.run([LEAFMAIL_SENDMAIL, "-C", config, "-i", "-f", "alice@client.test",
                                 "bob@remote.test"], input=body, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        (entry,) = entry_ids(self.spool)
        spooled = read_entry(self.spool, entry)[0]
        server = self.scripted(lenient_data_end=True)
        rc, out, err, _, _ = self.flush_to(server)
        self.assertEqual(rc, 0, err)
        figures("bare CR from leafmail-sendmail into lenient: spooled-has-CR.CR=%s arrived=%d"
                % (b"\r.\r" in spooled, len(server.messages)))
        self.assertEqual(len(server.mail_commands()), 1)
        self.assertEqual([(m.mail_from, m.rcpt_tos) for m in server.messages],
                         [("alice@client.test", ["bob@remote.test"])])
        # A dot after a bare line end is doubled on the wire (the one visible change).
        self.assertEqual(server.messages[0].content.replace(b"\r..", b"\r."), spooled)

    def test_into_leafmaild_with_pipelining(self):
        spooled = self.queue_smuggling()
        with Daemon() as sink:
            rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % sink.port)
            self.assertEqual(rc, 0, err)
            ids = wait_until(lambda: len(entry_ids(sink.spool)) >= len(spooled) and entry_ids(sink.spool), 10)
            time.sleep(0.3)  # a split-off second message would show up right behind
            ids = entry_ids(sink.spool)
            arrived = []
            for i in ids:
                content, envelope = read_entry(sink.spool, i)
                self.assertNotIn("evil@attacker.test", envelope)
                self.assertNotIn("victim@remote.test", envelope)
                arrived.append(("alice@client.test" if "alice@client.test" in envelope else envelope,
                                ["bob@remote.test"] if "bob@remote.test" in envelope else [envelope], content))
            self.check_arrivals(arrived, spooled, "leafmaild", exact=False)


class Secrets(HardeningFlushCase):
    """The AUTH password never leaves the process except towards the smarthost under TLS."""

    def secret_forms(self):
        forms = [PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
                 base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode()]
        # Also the base64 forms at the two other alignments, as part of a longer payload.
        forms += [base64.b64encode(b"x" + PASSWORD.encode()).decode()[4:-4],
                  base64.b64encode(b"xx" + PASSWORD.encode()).decode()[4:-4]]
        return forms

    def assert_no_secret(self, text, where):
        for form in self.secret_forms():
            self.assertNotIn(form, text, "secret in %s" % where)

    def assert_spool_clean(self):
        for root, _, files in os.walk(self.daemon.workdir):
            for name in files:
                path = os.path.join(root, name)
                if name == "password":
                    continue  # the password file itself
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue  # leafmaild's handover socket: nothing is stored in it
                with open(path, "rb") as f:
                    data = f.read().decode("latin-1")
                self.assert_no_secret(data, path)

    def test_auth_secret_not_in_logs_verbose_or_spool(self):
        # PLAIN with a server that ignores the initial response (the payload is sent again),
        # LOGIN, and a 4xx recipient so that the entry's state is written to the spool.
        for mechanism in ("PLAIN", "LOGIN"):
            with self.subTest(mechanism=mechanism):
                self.clear_queue()
                server = self.starttls_server(
                    faults={"rcpt": "answer:451 4.2.0 later"}, faulty_connections=100,
                    auth_mechanisms=mechanism, plain_continuation=mechanism == "PLAIN")
                entry, _ = self.queue_one("secret %s" % mechanism)
                rc, out, err, _, _ = self.flush_to(server, "starttls", "--verbose")
                self.assertEqual(rc, 75, err)
                self.assertEqual([(m, u, ok, tls) for m, u, ok, tls in server.auth_seen],
                                 [(mechanism, USER, True, True)])
                self.assertIn("C: AUTH %s" % mechanism, err)
                self.assertIn("********", err)
                self.assert_no_secret(out + err, "stdout/stderr --verbose")
                self.assertIn("451 4.2.0 later", read_entry(self.spool, entry)[1])
                self.assert_spool_clean()

    def test_auth_secret_not_in_syslog(self):
        # glibc's syslog() writes to /dev/log; in a private mount namespace of the child
        # only, /dev/log is our datagram socket. Skipped where namespaces are not allowed.
        probe = subprocess.run(["unshare", "-m", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode != 0 or os.geteuid() != 0:
            require(self, False, "no mount namespace here")
        server = self.starttls_server()
        self.queue_one("syslog")
        workdir = self.daemon.workdir
        socket_path = os.path.join(workdir, "log.sock")
        log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        log.bind(socket_path)
        log.settimeout(0.2)
        self.addCleanup(log.close)
        password_file = os.path.join(workdir, "password")
        with open(password_file, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(password_file, 0o600)
        olddev = os.path.join(workdir, "olddev")
        os.mkdir(olddev)
        flush = [LEAFMAIL_FLUSH, "--config", self.flush_config, "--spool", self.spool, "--log", "syslog",
                 "--verbose", "--tls", "starttls", "--ca-file", self.ca.ca_cert, "--auth-user", USER,
                 "--auth-password-file", password_file, "--timeout", str(TIMEOUT),
                 "--smarthost", "localhost:%d" % server.port]
        script = ("mount --make-rprivate / && mount --bind /dev \"$1\" && mount -t tmpfs tmpfs /dev && "
                  "for d in null zero urandom random; do touch /dev/$d && mount --bind \"$1/$d\" /dev/$d; done && "
                  "touch /dev/log && mount --bind \"$2\" /dev/log && shift 2 && exec \"$@\"")
        lines = []
        done = threading.Event()

        def drain():  # a datagram socket's queue is short: read while the flush runs
            while not done.is_set():
                try:
                    lines.append(log.recv(65536).decode("utf-8", "replace"))
                except socket.timeout:
                    continue
                except OSError:
                    return

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        rc, out, err, _, _ = run_process(["unshare", "-m", "sh", "-c", script, "sh", olddev, socket_path] + flush, 60)
        time.sleep(0.5)
        done.set()
        reader.join(5)
        self.assertEqual(rc, 0, err)
        text = "\n".join(lines)
        figures("syslog lines captured: %d" % len(lines))
        self.assertTrue(any("C: AUTH PLAIN" in l for l in lines), text[:2000])
        self.assertTrue(any("event=delivered" in l for l in lines), text[:2000])
        self.assert_no_secret(text + out + err, "syslog")
        self.assertEqual(len(server.messages), 1)

    def test_starttls_never_downgrades(self):
        def inject_after_220(c):
            # CVE-2011-0411 from the server side: a reply queued behind the 220, in plaintext.
            c.send(b"220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n")
            c.server.sleep(c.server.stall_seconds)

        cases = [
            ("not offered", dict(tls_context=None)),
            ("refused 454", dict(faults={"starttls": "answer:454 4.7.0 TLS not available"})),
            ("refused 502", dict(faults={"starttls": "answer:502 5.5.1 no"})),
            ("injected after 220", dict(faults={"starttls": inject_after_220})),
            ("plaintext in handshake", dict(faults={"tls": "reply:250 2.0.0 plaintext instead\r\n"})),
        ]
        for what, kwargs in cases:
            with self.subTest(what):
                self.clear_queue()
                options = dict(tls_context=self.ca.server_context(), users={USER: PASSWORD})
                options.update(kwargs)
                server = self.scripted(**options)
                entry, content = self.queue_one("downgrade %s" % what)
                result = self.flush_to(server, "starttls")
                self.assert_deferred(result, entry, content, what)
                self.assertEqual(server.mail_commands(), [], what)
                self.assertEqual(server.auth_seen, [], what)
                self.assertFalse([cmd for c in server.connections for cmd, tls in c.commands
                                  if cmd.upper().startswith(("AUTH", "RCPT", "DATA"))], what)
                server.stop()


if __name__ == "__main__":
    unittest.main()
