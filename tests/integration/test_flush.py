"""leafmail-flush against a real, independent smarthost (aiosmtpd, see smarthost.py) on a free
loopback port: messages are queued through the real leafmaild (harness.py), then flushed.
Each test checks the exit status, what the smarthost received byte for byte, and the spool.
A second leafmaild as the smarthost exercises PIPELINING, which aiosmtpd does not offer."""

import json
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import threading
import time
import unittest

from harness import LEAFMAIL_FLUSH, LEAFMAIL_LIST, Daemon, entry_ids, read_entry, sanitizer_without_quarantine, wait_until
from smarthost import SilentServer, Smarthost, TestCA, free_port

FLUSH_TIMEOUT = 120.0
SENDER = "alice@client.test"


def message(subject, body=b"Hello.\r\n", extra_headers=b""):
    return (b"From: <alice@client.test>\r\nTo: <bob@remote.test>\r\nSubject: " + subject.encode() +
            b"\r\n" + extra_headers + b"\r\n" + body)


def peak_rss_kib(pid):
    """VmHWM of a running process (KiB), 0 once it is gone. Read from /proc rather than
    wait4()'s ru_maxrss, which also counts the forked test process before the exec."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_process(command, timeout=FLUSH_TIMEOUT):
    """Runs command to its end; returns (exit status, stdout, stderr, seconds, peak RSS KiB)."""
    started = time.monotonic()
    peak = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = started + timeout
        while process.poll() is None:
            peak = max(peak, peak_rss_kib(process.pid))  # a zombie keeps no status lines
            if time.monotonic() > deadline:
                process.kill()
                process.wait(10)
                break
            time.sleep(0.01)
        out.seek(0)
        err.seek(0)
        return (process.returncode, out.read().decode("utf-8", "replace"),
                err.read().decode("utf-8", "replace"), time.monotonic() - started, peak)


class FlushTestCase(unittest.TestCase):
    ca = None
    ca_dir = None
    daemon_config = ""

    @classmethod
    def setUpClass(cls):
        cls.ca_dir = tempfile.TemporaryDirectory(prefix="leafmail-ca-")
        cls.ca = TestCA(cls.ca_dir.name)

    @classmethod
    def tearDownClass(cls):
        cls.ca_dir.cleanup()

    def setUp(self):
        self.daemon = Daemon(config=self.daemon_config).start()
        self.addCleanup(self.daemon.close)
        self.spool = self.daemon.spool
        self.flush_config = os.path.join(self.daemon.workdir, "flush.conf")
        with open(self.flush_config, "w") as f:
            f.write("")
        self.servers = []

    def smarthost(self, **kwargs):
        server = Smarthost(ca=self.ca, **kwargs).start()
        self.addCleanup(server.stop)
        return server

    def queue(self, content, recipients=("bob@remote.test",), sender=SENDER):
        """Hands one message to leafmaild; returns the spool's content for it."""
        before = set(entry_ids(self.spool))
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.sendmail(sender, list(recipients), content)
        new = wait_until(lambda: set(entry_ids(self.spool)) - before, timeout=10)
        self.assertEqual(len(new), 1)
        return read_entry(self.spool, new.pop())[0]

    def flush(self, *args, smarthost=None, password=None, timeout=FLUSH_TIMEOUT):
        command = [LEAFMAIL_FLUSH, "--config", self.flush_config, "--spool", self.spool,
                   "--log", "stderr", "--hostname", "flush.test"]
        if smarthost:
            command += ["--smarthost", smarthost]
        if password is not None:
            path = os.path.join(self.daemon.workdir, "password")
            with open(path, "w") as f:
                f.write(password + "\n")
            os.chmod(path, 0o600)
            command += ["--auth-password-file", path]
        return run_process(command + list(args), timeout)

    def spool_files(self, area="queue"):
        directory = os.path.join(self.spool, area)
        result = {}
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), "rb") as f:
                result[name] = f.read()
        return result

    def listed(self):
        """leafmail-list --json of the spool: one object per entry."""
        result = subprocess.run([LEAFMAIL_LIST, "--config", self.flush_config, "--spool",
                                 self.spool, "--json"], capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def assert_attempt_recorded(self, before, reason):
        """A failure before MAIL (issue 11): every entry's file is as it was, and each records
        one attempt whose last reply is the reason (a regular expression)."""
        after = self.spool_files()
        self.assertEqual({n: c for n, c in after.items() if not n.endswith(".env")},
                         {n: c for n, c in before.items() if not n.endswith(".env")})
        entries = self.listed()
        self.assertEqual(len(entries), len([n for n in before if not n.endswith(".env")]))
        for entry in entries:
            for r in entry["recipients"]:
                self.assertEqual(r["state"], "pending")
                self.assertEqual(r["attempts"], 1, entry)
                self.assertRegex(r["last_reply"], reason)

    def assert_summary(self, stdout, sent, deferred, failed):
        # ", unconfirmed N" counts deferred entries whose final dot went unanswered.
        self.assertRegex(stdout, r"sent %d, deferred %d, failed %d(, unconfirmed [0-9]+)? in [0-9.]+ s"
                         % (sent, deferred, failed))


class PlainRelay(FlushTestCase):
    daemon_config = "max-message-size = 64M\n"

    def test_empty_spool_exits_0_without_connecting(self):
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % free_port())
        self.assertEqual(rc, 0, err)
        self.assert_summary(out, 0, 0, 0)

    def test_messages_arrive_byte_for_byte_in_order(self):
        server = self.smarthost(tls="none")
        bodies = [
            b"plain ascii\r\n",
            b".leading dot\r\n..two dots\r\n.\r\nafter a lone dot line\r\n",
            "8-bit: caf\u00e9 \u00fcber \u65e5\u672c\r\n".encode("utf-8"),
            b"line\r\n" * 3000,
        ]
        spooled = [self.queue(message("m%d" % i, body)) for i, body in enumerate(bodies)]
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assert_summary(out, 4, 0, 0)
        self.assertEqual([m.content for m in server.messages], spooled)  # arrival order, exact bytes
        for m in server.messages:
            self.assertEqual(m.mail_from, SENDER)
            self.assertEqual(m.rcpt_tos, ["bob@remote.test"])
        self.assertIn("BODY=8BITMIME", server.messages[2].mail_options)
        self.assertNotIn("BODY=8BITMIME", server.messages[0].mail_options)
        self.assertEqual(entry_ids(self.spool), [])
        self.assertRegex(err, r"event=delivered id=\S+ to=<bob@remote.test>")

    def test_50_mib_message_streams_with_bounded_memory(self):
        server = self.smarthost(tls="none", size_limit=60 * 1024 * 1024)
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!\r\n"
        body = line * (50 * 1024 * 1024 // len(line))
        spooled = self.queue(message("big", body))
        with sanitizer_without_quarantine():
            rc, out, err, _, peak_kib = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(server.messages), 1)
        self.assertEqual(server.messages[0].content, spooled)
        # AddressSanitizer's shadow memory alone costs more than the whole plain flush.
        limit_mib = 160 if os.environ.get("LEAFMAIL_SANITIZED") else 32
        self.assertLess(peak_kib, limit_mib * 1024, "peak RSS of leafmail-flush %d KiB" % peak_kib)

    def test_helo_is_a_dotted_name_or_one_warning(self):
        server = self.smarthost(tls="none")
        names = {}
        for hostname, domain in (("laptop", "example.org"), ("laptop.example.net", "example.org"),
                                 ("laptop", "laptop")):
            self.queue(message("helo " + hostname))
            command = [LEAFMAIL_FLUSH, "--config", self.flush_config, "--spool", self.spool, "--log", "stderr",
                       "--hostname", hostname, "--domain", domain, "--tls", "none",
                       "--smarthost", "127.0.0.1:%d" % server.port]
            rc, out, err, _, _ = run_process(command)
            self.assertEqual(rc, 0, err)
            names[hostname, domain] = (server.messages[-1].helo, err.count("event=helo-not-qualified"))
        self.assertEqual(names[("laptop", "example.org")], ("laptop.example.org", 0))
        self.assertEqual(names[("laptop.example.net", "example.org")], ("laptop.example.net", 0))
        self.assertEqual(names[("laptop", "laptop")], ("laptop", 1))  # no dotted name: one warning

    def test_per_recipient_4xx_and_5xx_then_bounce(self):
        server = self.smarthost(tls="none")
        server.behaviour.rcpt_replies = {"later@remote.test": "450 4.2.0 mailbox busy",
                                         "nobody@remote.test": "550 5.1.1 no such user"}
        self.queue(message("mixed"), ["ok@remote.test", "later@remote.test", "nobody@remote.test"])
        entry = entry_ids(self.spool)[0]
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 75, err)
        # The message went to ok@ once; the bounce for nobody@ went to the sender.
        delivered = [m for m in server.messages if m.mail_from == SENDER]
        self.assertEqual([m.rcpt_tos for m in delivered], [["ok@remote.test"]])
        bounces = [m for m in server.messages if m.mail_from == "<>"]
        self.assertEqual(len(bounces), 1)
        self.assertEqual(bounces[0].rcpt_tos, [SENDER])
        dsn = bounces[0].content.decode("utf-8", "replace")
        self.assertIn("multipart/report; report-type=delivery-status", dsn)
        self.assertIn("Final-Recipient: rfc822; nobody@remote.test", dsn)
        self.assertIn("Status: 5.1.1", dsn)
        self.assertIn("Diagnostic-Code: smtp; 550 5.1.1 no such user", dsn)
        self.assertIn("Subject: mixed", dsn)  # the original headers
        self.assertNotIn("later@remote.test", dsn.split("text/rfc822-headers")[0].split("delivery-status")[-1])
        # The entry stays, with the 4xx recorded; the next flush finishes it.
        self.assertEqual(entry_ids(self.spool), [entry])
        envelope = read_entry(self.spool, entry)[1]
        self.assertIn("450 4.2.0 mailbox busy", envelope)
        server.behaviour.rcpt_replies = {}
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assert_summary(out, 0, 0, 1)
        delivered = [m.rcpt_tos for m in server.messages if m.mail_from == SENDER]
        self.assertEqual(delivered, [["ok@remote.test"], ["later@remote.test"]])
        self.assertEqual(entry_ids(self.spool), [])
        self.assertEqual(entry_ids(self.spool, "failed"), [entry])  # kept for inspection

    def test_5xx_after_data_fails_and_bounces(self):
        server = self.smarthost(tls="none")
        server.behaviour.data_reply = "554 5.6.0 content rejected"
        server.behaviour.data_reply_for = "Subject: rejected"
        self.queue(message("rejected"))
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(server.refused), 1)
        self.assertEqual(len(server.messages), 1)
        self.assertEqual(server.messages[0].mail_from, "<>")
        self.assertIn(b"554 5.6.0 content rejected", server.messages[0].content)
        self.assertEqual(len(entry_ids(self.spool, "failed")), 1)
        self.assert_summary(out, 1, 0, 1)  # the bounce was sent

    def test_no_bounce_for_a_bounce(self):
        server = self.smarthost(tls="none")
        server.behaviour.rcpt_replies = {"gone@remote.test": "550 5.1.1 gone"}
        self.queue(message("null sender"), ["gone@remote.test"], sender="")
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual(server.messages, [])
        self.assertEqual(len(entry_ids(self.spool, "failed")), 1)
        self.assertNotIn("event=bounce", err)

    def test_size_limit_fails_without_sending(self):
        server = self.smarthost(tls="none", size_limit=2000)
        self.queue(message("too big", (b"y" * 70 + b"\r\n") * 50))
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual([m.mail_from for m in server.messages], ["<>"])  # only the bounce
        self.assertIn(b"Status: 5.3.4", server.messages[0].content)
        self.assertEqual(server.refused, [])

    def test_connection_dropped_in_data_keeps_the_message(self):
        server = self.smarthost(tls="none")
        server.behaviour.drop_in_data_after = 100
        spooled = self.queue(message("dropped", (b"z" * 70 + b"\r\n") * 100))
        before = self.spool_files()
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 75, err)
        self.assertEqual(server.dropped, 1)
        self.assertEqual(server.messages, [])
        after = self.spool_files()
        self.assertEqual(set(before), set(after) - {n for n in after if n.endswith(".env")})
        server.behaviour.drop_in_data_after = None
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual([m.content for m in server.messages], [spooled])  # once, whole

    def test_stalled_smarthost_times_out(self):
        server = self.smarthost(tls="none")
        server.behaviour.stall_after_data = 30
        self.queue(message("stall"))
        rc, out, err, seconds, _ = self.flush("--tls", "none", "--data-timeout", "2",
                                              smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 75, err)
        self.assertLess(seconds, 20)
        self.assertIn("timeout", err)
        self.assertEqual(len(entry_ids(self.spool)), 1)

    def test_silent_smarthost_times_out(self):
        self.queue(message("silent"))
        with SilentServer() as silent:
            rc, out, err, seconds, _ = self.flush("--tls", "none", "--timeout", "2",
                                                  smarthost="127.0.0.1:%d" % silent.port)
        self.assertEqual(rc, 75, err)
        self.assertLess(seconds, 20)
        self.assertEqual(len(entry_ids(self.spool)), 1)

    def test_smarthost_down_exits_75_quickly_and_each_entry_says_why(self):
        self.queue(message("down 1"))
        self.queue(message("down 2"))
        before = self.spool_files()
        rc, out, err, seconds, _ = self.flush("--tls", "none", "--connect-timeout", "5",
                                              smarthost="127.0.0.1:%d" % free_port())
        self.assertEqual(rc, 75, err)
        self.assertLess(seconds, 5)
        self.assert_summary(out, 0, 2, 0)
        self.assert_attempt_recorded(before, r"^451 4\.4\.1 cannot connect to .*refused")

    def test_expiry_bounces_and_moves_to_failed(self):
        server = self.smarthost(tls="none")
        self.queue(message("old"))
        time.sleep(2.2)
        rc, out, err, _, _ = self.flush("--tls", "none", "--max-queue-age", "1",
                                        smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertIn("event=expired", err)
        self.assertEqual([m.mail_from for m in server.messages], ["<>"])
        self.assertIn(b"Status: 4.4.7", server.messages[0].content)
        self.assertEqual(server.messages[0].rcpt_tos, [SENDER])
        self.assertEqual(len(entry_ids(self.spool, "failed")), 1)

    def test_two_flushes_together_send_each_message_once(self):
        server = self.smarthost(tls="none")
        server.behaviour.stall_after_data = 0.02  # keep the first flush busy for a while
        spooled = [self.queue(message("twice %d" % i)) for i in range(20)]
        results = [None, None]

        def run(i):
            results[i] = self.flush("--tls", "none", "--lock-timeout", "60",
                                    smarthost="127.0.0.1:%d" % server.port)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(FLUSH_TIMEOUT)
        self.assertEqual([r[0] for r in results], [0, 0], [r[2] for r in results])
        self.assertEqual(sorted(m.content for m in server.messages), sorted(spooled))
        self.assertEqual(entry_ids(self.spool), [])

    def test_parallel_connections_send_each_message_once(self):
        server = self.smarthost(tls="none")
        spooled = [self.queue(message("parallel %d" % i)) for i in range(30)]
        rc, out, err, _, _ = self.flush("--tls", "none", "--connections", "3",
                                        smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assert_summary(out, 30, 0, 0)
        self.assertEqual(sorted(m.content for m in server.messages), sorted(spooled))
        self.assertGreaterEqual(server.sessions, 2)

    def test_kill_9_during_a_flush_loses_nothing(self):
        server = self.smarthost(tls="none")
        server.behaviour.stall_after_data = 0.02
        spooled = [self.queue(message("kill %d" % i)) for i in range(60)]
        command = [LEAFMAIL_FLUSH, "--config", self.flush_config, "--spool", self.spool, "--log", "stderr",
                   "--tls", "none", "--smarthost", "127.0.0.1:%d" % server.port]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(wait_until(lambda: len(server.messages) >= 10, timeout=30))
        finally:
            process.kill()  # SIGKILL, our own child only
            process.wait(10)
        self.assertLess(len(server.messages), 60)
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        # At-least-once: every message arrived; one in flight at the kill may arrive twice.
        received = [m.content for m in server.messages]
        self.assertEqual(set(received), set(spooled))
        self.assertLessEqual(len(received), len(spooled) + 1)
        self.assertEqual(entry_ids(self.spool), [])

    def test_max_messages_per_connection_reconnects(self):
        server = self.smarthost(tls="none")
        for i in range(5):
            self.queue(message("batch %d" % i))
        rc, out, err, _, _ = self.flush("--tls", "none", "--max-messages-per-connection", "2",
                                        smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(server.messages), 5)
        self.assertEqual(server.sessions, 3)

    def test_dry_run_changes_nothing(self):
        self.queue(message("dry"), ["x@remote.test", "y@remote.test"])
        before = self.spool_files()
        port = free_port()
        rc, out, err, _, _ = self.flush("--tls", "none", "--dry-run", smarthost="127.0.0.1:%d" % port)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"from=<alice@client.test> to=<x@remote.test>,<y@remote.test> size=\d+ "
                              r"via=127.0.0.1:%d" % port)
        self.assertEqual(self.spool_files(), before)

    def test_configuration_errors_exit_78_and_usage_64(self):
        rc, _, err, _, _ = self.flush()
        self.assertEqual(rc, 78, err)  # no smarthost
        rc, _, err, _, _ = self.flush("--no-such-flag", smarthost="localhost")
        self.assertEqual(rc, 64, err)
        rc, _, err, _, _ = self.flush("--tls", "none", "--auth-user", "u", password="p",
                                      smarthost="localhost:25")
        self.assertEqual(rc, 78, err)  # AUTH in clear text not allowed explicitly


class TlsAndAuth(FlushTestCase):
    def tls_args(self, *extra):
        return ["--tls", "starttls", "--ca-file", self.ca.ca_cert] + list(extra)

    def test_starttls_verified(self):
        server = self.smarthost(tls="starttls")
        spooled = self.queue(message("tls"))
        rc, out, err, _, _ = self.flush(*self.tls_args(), smarthost="localhost:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual([m.content for m in server.messages], [spooled])
        self.assertTrue(server.messages[0].tls)

    def test_starttls_wrong_host_name_refused(self):
        server = self.smarthost(tls="starttls")
        self.queue(message("wrong name"))
        before = self.spool_files()
        # The certificate names localhost only, not 127.0.0.1.
        rc, out, err, _, _ = self.flush(*self.tls_args(), smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 75, err)
        self.assertIn("certificate", err)
        self.assertEqual(server.messages, [])
        self.assert_attempt_recorded(before, r"certificate")

    def test_starttls_unknown_ca_refused(self):
        server = self.smarthost(tls="starttls")
        self.queue(message("unknown ca"))
        rc, out, err, _, _ = self.flush("--tls", "starttls", smarthost="localhost:%d" % server.port)
        self.assertEqual(rc, 75, err)
        self.assertIn("certificate", err)
        self.assertEqual(server.messages, [])

    def test_starttls_unverified_when_said_explicitly(self):
        server = self.smarthost(tls="starttls")
        self.queue(message("no verify"))
        rc, out, err, _, _ = self.flush("--tls", "starttls", "--tls-verify", "no",
                                        smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(server.messages), 1)

    def test_starttls_not_offered_is_an_error_not_a_downgrade(self):
        server = self.smarthost(tls="none")
        self.queue(message("no downgrade"))
        rc, out, err, _, _ = self.flush(*self.tls_args(), smarthost="localhost:%d" % server.port)
        self.assertEqual(rc, 75, err)
        self.assertIn("STARTTLS", err)
        self.assertEqual(server.messages, [])

    def test_implicit_tls_with_auth_plain(self):
        server = self.smarthost(tls="implicit", users={"relay-user": "s3cret-pw"})
        spooled = self.queue(message("implicit"))
        rc, out, err, _, _ = self.flush("--tls", "tls", "--ca-file", self.ca.ca_cert,
                                        "--auth-user", "relay-user", "--verbose", password="s3cret-pw",
                                        smarthost="localhost:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual([m.content for m in server.messages], [spooled])
        self.assertEqual(server.messages[0].authenticated_as, "relay-user")
        self.assertEqual(server.auth_attempts, [("PLAIN", "relay-user", True)])
        # --verbose shows the dialogue, never the secret.
        self.assertIn("C: AUTH PLAIN ********", err)
        self.assertIn("C: MAIL FROM:<alice@client.test>", err)
        self.assertNotIn("s3cret-pw", err)
        self.assertNotIn("cmVsYXktdXNlcgBzM2NyZXQtcHc", err)  # base64 of the PLAIN payload

    def test_starttls_with_auth_login(self):
        server = self.smarthost(tls="starttls", users={"relay-user": "s3cret-pw"},
                                exclude_mechanisms=["PLAIN"])
        self.queue(message("login"))
        rc, out, err, _, _ = self.flush(*self.tls_args("--auth-user", "relay-user", "--verbose"),
                                        password="s3cret-pw", smarthost="localhost:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual(server.auth_attempts, [("LOGIN", "relay-user", True)])
        self.assertNotIn("s3cret-pw", err)
        self.assertNotIn("czNjcmV0LXB3", err)  # base64 of the password

    def test_wrong_password_defers_and_keeps_the_spool(self):
        server = self.smarthost(tls="starttls", users={"relay-user": "right"})
        self.queue(message("wrong password"))
        before = self.spool_files()
        rc, out, err, _, _ = self.flush(*self.tls_args("--auth-user", "relay-user"), password="wrong",
                                        smarthost="localhost:%d" % server.port)
        self.assertEqual(rc, 75, err)
        self.assertEqual(server.messages, [])
        self.assert_attempt_recorded(before, r"^535 ")
        self.assertNotIn("wrong", err.replace("wrong password", ""))

    def test_password_file_readable_by_others_refused(self):
        path = os.path.join(self.daemon.workdir, "open-password")
        with open(path, "w") as f:
            f.write("pw\n")
        os.chmod(path, 0o644)
        rc, out, err, _, _ = self.flush(*self.tls_args("--auth-user", "u", "--auth-password-file", path),
                                        smarthost="localhost:25")
        self.assertEqual(rc, 78, err)
        self.assertIn("group or others", err)


class LeafmaildAsSmarthost(FlushTestCase):
    """A second leafmaild offers PIPELINING: MAIL, RCPTs and DATA go in one batch and the next
    envelope follows the previous final dot in the same round trip."""

    def test_pipelined_relay_into_leafmaild(self):
        with Daemon() as sink:
            spooled = [self.queue(message("pipelined %d" % i, b"body %d\r\n" % i),
                                  ["r1@remote.test", "r2@remote.test"]) for i in range(50)]
            rc, out, err, _, _ = self.flush("--tls", "none", "--verbose",
                                            smarthost="127.0.0.1:%d" % sink.port)
            self.assertEqual(rc, 0, err)
            self.assert_summary(out, 50, 0, 0)
            ids = wait_until(lambda: len(entry_ids(sink.spool)) == 50 and entry_ids(sink.spool), 10)
            self.assertTrue(ids)
            relayed = sorted(read_entry(sink.spool, i)[0] for i in ids)
            # Each arrives with the sink's own Received: line in front of ours.
            for content, original in zip(relayed, sorted(spooled)):
                self.assertTrue(content.endswith(original))
            # The dialogue shows a next MAIL sent before the previous final dot's reply.
            lines = [l.split(": ", 1)[1] for l in err.splitlines() if re.search(r" [CS]: ", l)]
            first_content = next(i for i, l in enumerate(lines) if l.startswith("C: <content"))
            self.assertTrue(lines[first_content + 1].startswith("C: MAIL FROM:"), lines[:first_content + 3])


if __name__ == "__main__":
    unittest.main()
