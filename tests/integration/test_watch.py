"""leafmail-flush --watch against a real smarthost (aiosmtpd, smarthost.py) on loopback: new
mail from leafmaild and leafmail-sendmail goes out within 2 seconds, an unreachable smarthost is
probed with backoff and not hammered, --kick retries at once, a one-shot flush beside the
watcher sends nothing twice, SIGTERM loses nothing. The link tests run in a network namespace
the test makes (root; under CI=true they fail instead of skipping when that is impossible):
no packet leaves it, and the kernel's own TCP counters prove that on-link opens no connection
before the link event."""

import calendar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import (LEAFMAIL_FLUSH, LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, Daemon, entry_ids, require,
                     wait_until)
from smarthost import Smarthost, free_port

SENDER = "alice@client.test"
IN_CI = os.environ.get("CI") == "true"


def message(subject):
    return ("From: <alice@client.test>\r\nTo: <bob@remote.test>\r\nSubject: %s\r\n\r\n"
            "Hello.\r\n" % subject).encode()


def subjects(server):
    out = []
    for m in list(server.messages):
        found = re.search(rb"Subject: ([^\r\n]*)", m.content)
        out.append(found.group(1).decode() if found else "")
    return out


class Watcher(Daemon):
    """leafmail-flush --watch as a long-running process: Daemon's start, log reader and stop;
    ready once it has said how its route(s) stand. config: the configuration file's text
    (routes go there)."""

    ready_pattern = r"event=route-"

    def __init__(self, spool, workdir, smarthost, extra=(), config=""):
        super().__init__(config=config, workdir=workdir)
        self.spool = spool
        self.smarthost_address = smarthost
        self.extra = list(extra)

    def command(self):
        return [LEAFMAIL_FLUSH, "--watch", "--config", self.config_path, "--spool", self.spool,
                "--log", "stderr", "--hostname", "watch.test", "--tls", "none",
                "--smarthost", self.smarthost_address] + self.extra

    def started(self, line):
        pass  # no port: it listens only on the spool's watch.sock


def write_sendmail_config(workdir, spool):
    path = os.path.join(workdir, "sendmail.conf")
    with open(path, "w") as f:
        f.write("spool = %s\nhostname = test.leafmail\ndomain = client.test\n" % spool)
    return path


def sendmail(config, subject):
    result = subprocess.run([LEAFMAIL_SENDMAIL, "-C", config, "-f", SENDER, "bob@remote.test"],
                            input=message(subject), capture_output=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError("sendmail failed: %r" % result.stderr)


def kick(spool, workdir):
    config = os.path.join(workdir, "kick.conf")
    open(config, "w").close()
    return subprocess.run([LEAFMAIL_FLUSH, "--kick", "--config", config, "--spool", spool],
                          capture_output=True, timeout=30)


def list_entries(spool, workdir):
    """leafmail-list --json of the spool: its entries."""
    config = os.path.join(workdir, "list.conf")
    open(config, "a").close()
    result = subprocess.run([LEAFMAIL_LIST, "--config", config, "--spool", spool, "--json"],
                            capture_output=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError("leafmail-list --json failed: %r" % result.stderr)
    return json.loads(result.stdout)


def list_status(spool, workdir, *args):
    """leafmail-list --status [args] of the spool, as text."""
    config = os.path.join(workdir, "list.conf")
    open(config, "a").close()
    result = subprocess.run([LEAFMAIL_LIST, "--config", config, "--spool", spool, "--status"]
                            + list(args), capture_output=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError("leafmail-list --status failed: %r" % result.stderr)
    return result.stdout.decode()


class CountingListener:
    """A TCP listener that accepts and closes at once: a smarthost that is down but answers
    SYNs, so every probe is counted."""

    def __init__(self, port):
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


class WatchTestCase(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon().start()
        self.addCleanup(self.daemon.close)
        self.spool = self.daemon.spool
        self.workdir = self.daemon.workdir

    def smarthost(self, start=True, **kwargs):
        server = Smarthost(tls="none", **kwargs)
        if start:
            server.start()
        self.addCleanup(server.stop)
        return server

    def watcher(self, port, *extra):
        w = Watcher(self.spool, tempfile.mkdtemp(dir=self.workdir), "127.0.0.1:%d" % port, extra)
        w.start()
        self.addCleanup(w.close)
        return w

    def queue(self, subject):
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.sendmail(SENDER, ["bob@remote.test"], message(subject))


class NewMail(WatchTestCase):
    def test_mail_from_leafmaild_leaves_within_two_seconds(self):
        server = self.smarthost()
        self.watcher(server.port)
        for i in range(3):
            accepted = time.monotonic()
            self.queue("smtp-%d" % i)
            self.assertTrue(server.wait_for_messages(i + 1, timeout=2.0),
                            "message %d not relayed within 2 s" % i)
            self.assertLess(time.monotonic() - accepted, 2.0)
        self.assertEqual(subjects(server), ["smtp-0", "smtp-1", "smtp-2"])
        self.assertTrue(wait_until(lambda: not entry_ids(self.spool), timeout=5))

    def test_mail_from_sendmail_leaves_within_two_seconds(self):
        server = self.smarthost()
        self.watcher(server.port)
        config = write_sendmail_config(self.workdir, self.spool)
        accepted = time.monotonic()
        sendmail(config, "from-sendmail")
        self.assertTrue(server.wait_for_messages(1, timeout=2.0))
        self.assertLess(time.monotonic() - accepted, 2.0)
        self.assertEqual(subjects(server), ["from-sendmail"])

    def test_a_burst_goes_in_one_connection(self):
        server = self.smarthost()
        self.watcher(server.port)
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            for i in range(20):
                client.sendmail(SENDER, ["bob@remote.test"], message("burst-%d" % i))
        self.assertTrue(server.wait_for_messages(20, timeout=10))
        # A burst accepted faster than the relay sends is gathered; one that straddles a
        # round's end may need a second connection, never one per message.
        self.assertLessEqual(server.sessions, 2)
        self.assertEqual(sorted(subjects(server)), sorted("burst-%d" % i for i in range(20)))

    def test_a_slow_burst_goes_in_one_connection(self):
        # A burst as a disk with slow fsync makes it (one message every 80 ms, each on its
        # own SMTP connection): gathered until it pauses, and what still arrives while the
        # round runs goes on the same connection.
        server = self.smarthost()
        self.watcher(server.port)
        for i in range(15):
            self.queue("slow-%d" % i)
            time.sleep(0.08)
        self.assertTrue(server.wait_for_messages(15, timeout=10))
        self.assertLessEqual(server.sessions, 2)
        self.assertEqual(sorted(subjects(server)), sorted("slow-%d" % i for i in range(15)))

    def test_state_files_written_by_the_relay_do_not_trigger_rounds(self):
        server = self.smarthost()
        server.behaviour.rcpt_replies["bob@remote.test"] = "450 4.2.0 busy"
        w = self.watcher(server.port, "--retry-min", "30s")
        self.queue("deferred")
        self.assertTrue(wait_until(lambda: server.sessions >= 1, timeout=5))
        time.sleep(2)
        # The deferral wrote a state file into queue/: that is not new mail.
        self.assertEqual(server.sessions, 1, w.log_text())


class UnreachableSmarthost(WatchTestCase):
    def test_probes_back_off_and_delivery_follows_the_smarthost_coming_back(self):
        server = self.smarthost(start=False)
        down = CountingListener(server.port)
        w = self.watcher(server.port, "--retry-min", "1s", "--retry-max", "3s")
        self.queue("while-down")
        time.sleep(10)
        probes = down.accepted
        down.close()
        # Waits of about 1, 2, 3, 3, 3 s (jitter only shortens): a handful, not hundreds.
        self.assertGreaterEqual(probes, 3, w.log_text())
        self.assertLessEqual(probes, 9, w.log_text())
        self.assertEqual(len(re.findall(r"event=route-backing-off", w.log_text())), 1,
                         "one log line for the state change, not one per probe")
        # leafmail-list --status: the watcher runs and backs off, saying why.
        status = list_status(self.spool, self.workdir)
        self.assertIn("watcher: running", status)
        self.assertRegex(status, r"  route default: backing off until \d\d:\d\d:\d\d"
                                 r"( |\n    )\([45]\d\d .+\)\n")
        # The entry says why it waits, but the probes are not attempts to send it (issue 14).
        [entry] = list_entries(self.spool, self.workdir)
        self.assertEqual(entry["recipients"][0]["attempts"], 0, entry)
        self.assertIsNotNone(entry["recipients"][0]["last_attempt_at"], entry)
        self.assertRegex(entry["recipients"][0]["last_reply"], r"^[45]\d\d ", entry)
        back = time.monotonic()
        server.start()
        self.assertTrue(server.wait_for_messages(1, timeout=5), w.log_text())
        self.assertLess(time.monotonic() - back, 3.0 + 1.0)  # retry-max, and the round itself
        self.assertTrue(w.wait_for_log(r"event=route-ok", timeout=5, start=1))
        self.assertEqual(subjects(server), ["while-down"])
        self.assertTrue(wait_until(lambda: "  route default: ok\n" in
                                   list_status(self.spool, self.workdir), timeout=5))
        w.stop()
        self.assertIn("watcher: not running", list_status(self.spool, self.workdir))

    def test_kick_retries_at_once(self):
        server = self.smarthost(start=False)
        w = self.watcher(server.port, "--retry-min", "60s")
        self.queue("kicked")
        self.assertTrue(w.wait_for_log(r"event=route-backing-off", timeout=5))
        server.start()
        time.sleep(1)
        self.assertEqual(server.messages, [], w.log_text())  # the watcher waits for its minute
        kicked = time.monotonic()
        result = kick(self.spool, self.workdir)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"watcher kicked", result.stdout)
        self.assertTrue(server.wait_for_messages(1, timeout=2.0), w.log_text())
        self.assertLess(time.monotonic() - kicked, 2.0)

    def test_kick_without_a_watcher_says_so_and_exits_0(self):
        result = kick(self.spool, self.workdir)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"no watcher running", result.stdout)

    def test_a_second_watcher_on_the_same_spool_is_refused(self):
        server = self.smarthost()
        self.watcher(server.port)
        second = Watcher(self.spool, tempfile.mkdtemp(dir=self.workdir),
                         "127.0.0.1:%d" % server.port)
        result = subprocess.run(second.command(), capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 75, result.stderr)
        self.assertIn(b"another watcher", result.stderr)


class Routes(WatchTestCase):
    def test_a_route_that_is_down_backs_off_while_the_other_route_delivers_at_once(self):
        up = self.smarthost()
        down_port = free_port()
        down = CountingListener(down_port)  # accepts and closes: each probe is counted
        self.addCleanup(down.close)
        config = ("[route work]\nsmarthost = 127.0.0.1:%d\ntls = none\nsenders = @work.test\n"
                  % down_port)
        w = Watcher(self.spool, tempfile.mkdtemp(dir=self.workdir), "127.0.0.1:%d" % up.port,
                    ["--retry-min", "2s", "--retry-max", "4s"], config=config)
        w.start()
        self.addCleanup(w.close)
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.sendmail("me@work.test", ["bob@remote.test"], message("work-mail"))
        self.assertTrue(w.wait_for_log(r"event=route-backing-off route=work", timeout=5),
                        w.log_text())
        # The default route's new mail leaves within 2 s, while work is backing off.
        for i in range(3):
            accepted = time.monotonic()
            self.queue("home-%d" % i)
            self.assertTrue(up.wait_for_messages(i + 1, timeout=2.0), w.log_text())
            self.assertLess(time.monotonic() - accepted, 2.0)
            time.sleep(0.5)
        time.sleep(8)
        # Waits of about 2, 4, 4 s after the first failure (jitter only shortens): a handful
        # of probes in about 10 s, not one per new message of the other route.
        probes = down.accepted
        self.assertGreaterEqual(probes, 2, w.log_text())
        self.assertLessEqual(probes, 6, w.log_text())
        self.assertEqual(len(re.findall(r"event=route-backing-off route=work", w.log_text())),
                         1, "one log line for the state change, not one per probe")
        self.assertNotIn("event=route-backing-off route=default", w.log_text())
        self.assertEqual(sorted(subjects(up)), ["home-0", "home-1", "home-2"])
        status = list_status(self.spool, self.workdir)
        self.assertRegex(status, r"  route work: backing off until \d\d:\d\d:\d\d( |\n    )\(")
        self.assertIn("  route default: ok\n", status)
        # A kick resets every backoff: the work route is tried at once.
        before = down.accepted
        self.assertEqual(kick(self.spool, self.workdir).returncode, 0)
        self.assertTrue(wait_until(lambda: down.accepted > before, timeout=2.0), w.log_text())


class BesideOneShotFlush(WatchTestCase):
    def test_cron_flush_beside_the_watcher_sends_each_message_once(self):
        server = self.smarthost()
        self.watcher(server.port)
        config = os.path.join(self.workdir, "cron.conf")
        open(config, "w").close()
        stop = threading.Event()
        flushes = []

        def cron():
            while not stop.is_set():
                flushes.append(subprocess.run(
                    [LEAFMAIL_FLUSH, "--config", config, "--spool", self.spool, "--log",
                     "stderr", "--tls", "none", "--smarthost", "127.0.0.1:%d" % server.port],
                    capture_output=True, timeout=120).returncode)

        thread = threading.Thread(target=cron)
        thread.start()
        try:
            for i in range(40):
                self.queue("once-%d" % i)
            self.assertTrue(server.wait_for_messages(40, timeout=30))
            time.sleep(1)
        finally:
            stop.set()
            thread.join(150)
        got = subjects(server)
        self.assertEqual(len(got), 40, "a message went twice: %r" % got)
        self.assertEqual(sorted(got), sorted("once-%d" % i for i in range(40)))
        self.assertGreater(len(flushes), 0)
        self.assertTrue(all(rc in (0, 75) for rc in flushes), flushes)


class Stopping(WatchTestCase):
    def test_sigterm_mid_message_loses_nothing(self):
        server = self.smarthost()
        server.behaviour.stall_after_data = 3.0
        w = self.watcher(server.port)
        self.queue("in-flight")
        self.queue("next")
        time.sleep(1.5)  # the first message's DATA is being answered slowly
        w.process.send_signal(signal.SIGTERM)
        w.process.wait(30)
        self.assertEqual(w.process.returncode, 0, w.log_text())
        delivered = subjects(server)
        left = entry_ids(self.spool)
        # Each message is either delivered (once) or still queued: nothing lost.
        self.assertEqual(len(delivered) + len(left), 2, (delivered, left))
        self.assertIn("in-flight", delivered)  # the one in flight was finished, not cut
        self.assertEqual(len(set(delivered)), len(delivered))

    def test_sigterm_when_idle_exits_0_and_removes_the_socket(self):
        server = self.smarthost()
        w = self.watcher(server.port)
        self.assertTrue(os.path.exists(os.path.join(self.spool, "watch.sock")))
        self.assertEqual(w.stop(), 0)
        self.assertFalse(os.path.exists(os.path.join(self.spool, "watch.sock")))


class Schedule(WatchTestCase):
    def one_shot(self, port, *args):
        config = os.path.join(self.workdir, "oneshot.conf")
        open(config, "w").close()
        return subprocess.run([LEAFMAIL_FLUSH, "--config", config, "--spool", self.spool, "--log",
                               "stderr", "--tls", "none", "--smarthost", "127.0.0.1:%d" % port]
                              + list(args), capture_output=True, timeout=120)

    def listing(self, *args):
        config = os.path.join(self.workdir, "list.conf")
        open(config, "w").close()
        result = subprocess.run([LEAFMAIL_LIST, "--config", config, "--spool", self.spool]
                                + list(args), capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout.decode()

    def test_a_deferred_entry_is_scheduled_and_due_only_respects_it(self):
        server = self.smarthost()
        server.behaviour.rcpt_replies["bob@remote.test"] = "450 4.2.0 busy"
        self.queue("scheduled")
        before = time.time()
        self.assertEqual(self.one_shot(server.port).returncode, 75)
        self.assertEqual(server.sessions, 1)
        entry = json.loads(self.listing("--json"))[0]
        next_attempt = calendar.timegm(time.strptime(entry["next_attempt"], "%Y-%m-%dT%H:%M:%SZ"))
        # retry-min is 1m; jitter shortens by at most a fifth.
        self.assertGreaterEqual(next_attempt, before + 47)
        self.assertLessEqual(next_attempt, time.time() + 61)
        self.assertRegex(self.listing(), r"next attempt in (1 min|[45][0-9] s)")
        # --due-only: not due yet, so no connection at all.
        result = self.one_shot(server.port, "--due-only")
        self.assertEqual(result.returncode, 75, result.stderr)
        self.assertEqual(server.sessions, 1)
        # A plain flush is the user asking now: it goes.
        self.assertEqual(self.one_shot(server.port).returncode, 75)
        self.assertEqual(server.sessions, 2)


class DelayWarnings(WatchTestCase):
    def delay_notices(self, server):
        return [m for m in list(server.messages)
                if m.mail_from == "<>" and b"Action: delayed" in m.content]

    def test_one_delay_notice_and_none_after_a_restart(self):
        server = self.smarthost()
        server.behaviour.rcpt_replies["bob@remote.test"] = "450 4.2.0 mailbox busy"
        args = ("--warn-after", "2s", "--retry-min", "1s", "--retry-max", "2s")
        w = self.watcher(server.port, *args)
        self.queue("slow")
        self.assertTrue(wait_until(lambda: self.delay_notices(server), timeout=15), w.log_text())
        notice = self.delay_notices(server)[0]
        self.assertEqual(notice.rcpt_tos, [SENDER])
        self.assertIn(b"Subject: Delayed Mail (still being retried)", notice.content)
        self.assertIn(b"Diagnostic-Code: smtp; 450 4.2.0 mailbox busy", notice.content)
        time.sleep(5)  # several more rounds, each past warn-after
        self.assertEqual(len(self.delay_notices(server)), 1, w.log_text())
        self.assertEqual(w.stop(), 0)
        again = self.watcher(server.port, *args)
        time.sleep(5)
        self.assertEqual(len(self.delay_notices(server)), 1, again.log_text())
        self.assertEqual(len(entry_ids(self.spool)), 1)  # the message itself still waits

    def test_no_delay_notice_for_the_null_sender(self):
        server = self.smarthost()
        server.behaviour.rcpt_replies["bob@remote.test"] = "450 4.2.0 mailbox busy"
        w = self.watcher(server.port, "--warn-after", "1s", "--retry-min", "1s")
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.sendmail("<>", ["bob@remote.test"], message("from-null"))
        time.sleep(5)
        self.assertEqual(self.delay_notices(server), [], w.log_text())


# ---- link events in a network namespace ----------------------------------------------------

def tcp_active_opens():
    """Connections this network namespace initiated (each is a SYN sent), from the kernel."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True, timeout=10)


def make_link():
    """An interface with a global address, inside this namespace only: a dummy when the
    kernel has the module, else a veth pair whose both ends stay here."""
    ip("link", "set", "lo", "up")
    if subprocess.run(["ip", "link", "add", "wl0", "type", "dummy"],
                      capture_output=True).returncode != 0:
        ip("link", "add", "wl0", "type", "veth", "peer", "name", "wl1")
        ip("link", "set", "wl1", "up")
    ip("link", "set", "wl0", "up")
    ip("addr", "add", "10.77.0.2/24", "dev", "wl0")


def netns_scenario(mode):
    """Runs inside `unshare -n`; prints one JSON object with what it measured."""
    make_link()
    result = {}
    with tempfile.TemporaryDirectory(prefix="leafmail-netns-") as workdir:
        spool = os.path.join(workdir, "spool")
        for area in ("tmp", "queue", "hold", "failed", "corrupt"):
            os.makedirs(os.path.join(spool, area))
        config = write_sendmail_config(workdir, spool)
        server = Smarthost(tls="none").start()
        try:
            if mode == "on-link":
                ip("route", "add", "default", "via", "10.77.0.1", "dev", "wl0")
            w = Watcher(spool, workdir, "127.0.0.1:%d" % server.port,
                        ["--auto-connect", mode, "--retry-min", "1s"])
            w.start()
            try:
                w.wait_for_log(r"event=route-waiting-for-link", timeout=5)
                result["status_while_waiting"] = list_status(spool, workdir)
                before = tcp_active_opens()
                sendmail(config, "netns-" + mode)  # no TCP: sendmail writes the spool
                time.sleep(4)
                result["opens_before_event"] = tcp_active_opens() - before
                result["messages_before_event"] = len(server.messages)
                event = time.monotonic()
                # The event: a (new) default route. Through an interface of this namespace.
                ip("route", "add", "default", "via", "10.77.0.3", "dev", "wl0", "metric", "50")
                result["delivered"] = server.wait_for_messages(1, timeout=5)
                result["seconds_after_event"] = time.monotonic() - event
                # Losing every default route pauses connecting again.
                ip("route", "flush", "exact", "0.0.0.0/0")
                result["link_down_logged"] = bool(w.wait_for_log(r"event=link-down", timeout=5, start=1))
                before = tcp_active_opens()
                sendmail(config, "netns-after-" + mode)
                time.sleep(3)
                result["opens_while_down"] = tcp_active_opens() - before
                result["log"] = w.log_text()
            finally:
                w.close()
        finally:
            server.stop()
    print(json.dumps(result))


class LinkEvents(unittest.TestCase):
    def run_in_namespace(self, mode):
        if os.geteuid() != 0:
            if IN_CI:
                self.fail("the link tests need root to make a network namespace (CI=true)")
            require(self, False, "needs root for a network namespace")
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
        if probe.returncode != 0:
            if IN_CI:
                self.fail("cannot make a network namespace: %r" % probe.stderr)
            require(self, False, "cannot make a network namespace")
        result = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                                 "netns-scenario", mode],
                                capture_output=True, timeout=120, env=os.environ.copy())
        self.assertEqual(result.returncode, 0, result.stderr.decode(errors="replace"))
        return json.loads(result.stdout.decode().strip().splitlines()[-1])

    def check_common(self, r):
        self.assertEqual(r["opens_before_event"], 0, r["log"])
        self.assertEqual(r["messages_before_event"], 0, r["log"])
        self.assertTrue(r["delivered"], r["log"])
        self.assertLess(r["seconds_after_event"], 2.0, r["log"])
        self.assertTrue(r["link_down_logged"], r["log"])
        self.assertEqual(r["opens_while_down"], 0, r["log"])
        self.assertIn("watcher: running", r["status_while_waiting"])
        self.assertIn("  route default: waiting for the link\n", r["status_while_waiting"])

    def test_always_waits_for_a_default_route_and_goes_at_once_on_one(self):
        r = self.run_in_namespace("always")
        self.check_common(r)
        self.assertIn("event=link-up reason=\"new default route\"", r["log"])

    def test_on_link_opens_no_connection_until_the_link_event(self):
        # A default route exists from the start: on-link must still not connect on its own.
        r = self.run_in_namespace("on-link")
        self.check_common(r)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "netns-scenario":
    netns_scenario(sys.argv[2])
