"""Hardening of the receiving side (issue 6): leafmaild under abuse -- slow-loris, a connection
flood, open-relay attempts, command and header injection, SMTP smuggling -- and under faults --
fsync failing, the disk filling up, corrupt entries in the spool -- plus what a daemon that
dropped root keeps. Everything runs on loopback with ports picked at run time; every loop is
bounded in count and time; only processes this file started are stopped or killed.

Figures (connections, descriptors, RSS, durations) are printed on stderr as "figure: ..." lines
so that CI logs show them."""

import errno
import grp
import os
import pwd
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import (LEAFMAIL_LIST, SmtpClient, LEAFMAILD, QUEUE_ID, Daemon, content_without_received, entry_ids,
                     read_entry, require, temp_files, wait_until)

IO_TIMEOUT = 15


def raw_client(port, host="127.0.0.1", source=None, timeout=IO_TIMEOUT):
    return SmtpClient(port, host=host, source=source, timeout=timeout)
FAIL_FSYNC = os.environ.get("LEAFMAIL_FAIL_FSYNC", "")
QUEUED_AS = re.compile(r"([0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{4})")


def figure(text):
    print("figure: " + text, file=sys.stderr, flush=True)


def is_root():
    return os.geteuid() == 0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_status(pid, task=None):
    path = "/proc/%d/status" % pid if task is None else "/proc/%d/task/%s/status" % (pid, task)
    with open(path) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def is_sanitized(pid):
    """True when the daemon runs with AddressSanitizer (its memory figures are much larger)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def raise_fd_limit(wanted):
    """Raises this process's RLIMIT_NOFILE (inherited by the daemons it starts); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class HardDaemon(Daemon):
    """A Daemon with a command prefix (prlimit, env, setpriv) and extra listen addresses."""

    def __init__(self, prefix=(), extra_listen=(), **kwargs):
        super().__init__(**kwargs)
        self.prefix = list(prefix)
        self.extra_listen = list(extra_listen)

    def command(self):
        command = super().command()
        for address in self.extra_listen:
            command += ["--listen", address]
        return self.prefix + command


def message(tag, body=b"hello\r\n"):
    return (b"From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: " + tag.encode() +
            b"\r\nMessage-ID: <" + tag.encode() + b"@hardening.test>\r\n\r\n" + body)


def send_mail(port, content, sender=b"sender@example.org", recipients=(b"rcpt@example.net",), client=None):
    """One whole transaction (content must end in CRLF and need no dot-stuffing); returns the
    final reply (code, lines). Opens its own session unless client is given."""
    own = client is None
    if own:
        client = raw_client(port)
        assert client.code() == 220
        assert client.command(b"EHLO client.example") == 250
    try:
        code = client.command(b"MAIL FROM:<" + sender + b">")
        if code != 250:
            return (code, [])
        for r in recipients:
            code = client.command(b"RCPT TO:<" + r + b">")
            if code != 250:
                return (code, [])
        code = client.command(b"DATA")
        if code != 354:
            return (code, [])
        client.send(content + b".\r\n")
        return client.reply()
    finally:
        if own:
            client.command(b"QUIT")
            client.close()


class HardeningTest(unittest.TestCase):
    def start(self, config="", **kwargs):
        daemon = HardDaemon(config=config, **kwargs).start()
        self.addCleanup(daemon.close)
        return daemon

    def assert_log(self, daemon, pattern, timeout=5):
        line = daemon.wait_for_log(pattern, timeout)
        self.assertIsNotNone(line, "no log line matching %r in:\n%s" % (pattern, daemon.log_text()[-4000:]))
        return line

    def assert_entries_whole(self, spool):
        """Every entry in queue/ has a valid footer and a thawable-looking envelope."""
        for entry_id in entry_ids(spool):
            content, envelope = read_entry(spool, entry_id)
            self.assertTrue(envelope.startswith("22 serialization::archive "), entry_id)
            self.assertIn(entry_id, envelope)


# --------------------------------------------------------------------------------- slow-loris

class SlowLorisTest(HardeningTest):
    CONNECTIONS = 1000
    CAP = 200
    TIMEOUT = 5     # idle-timeout, seconds
    DRIP = 2.0      # a dripping client sends one byte this often: always under the timeout
    GRACE = 4.0     # the 1 s sweep plus scheduling slack

    def test_slow_loris(self):
        limit = raise_fd_limit(self.CONNECTIONS * 2 + 256)
        if limit < self.CONNECTIONS + 128:
            require(self, False, "descriptor limit %d is too low for %d connections" % (limit, self.CONNECTIONS))
        daemon = self.start("max-connections = %d\nidle-timeout = %d\nmax-bad-commands = 1000\n" %
                            (self.CAP, self.TIMEOUT),
                            prefix=["prlimit", "--nofile=%d:%d" % (limit, limit), "--"])
        pid = daemon.process.pid
        self.assertEqual(send_mail(daemon.port, message("warm-up"))[0], 250)
        self.assert_log(daemon, r"event=disconnect")
        base_fds, base_rss = open_fds(pid), rss_kib(pid)

        sel = selectors.DefaultSelector()
        conns = []
        started = time.monotonic()
        for i in range(self.CONNECTIONS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", daemon.port))
            c = {"sock": s, "buffer": b"", "greeted_at": None, "closed_at": None, "codes": [],
                 "drip": i % 2 == 0, "next_drip": 0.0, "sent": 0}
            conns.append(c)
            sel.register(s, selectors.EVENT_READ, c)

        # A legitimate client knocks every half second until it gets a whole message through.
        legit = {"attempts": 0, "refused": 0, "served_at": None, "error": None}

        def legitimate():
            deadline = started + 3 * self.TIMEOUT + 15
            while time.monotonic() < deadline and legit["served_at"] is None:
                legit["attempts"] += 1
                try:
                    with raw_client(daemon.port, timeout=5) as c:
                        code = c.code()
                        if code == 220:
                            c.command(b"EHLO legitimate.example")
                            reply = send_mail(daemon.port, message("legit"), client=c)
                            if reply[0] == 250:
                                legit["served_at"] = time.monotonic()
                                break
                            legit["error"] = "final reply %r" % (reply,)
                        else:
                            legit["refused"] += 1
                except OSError as e:
                    legit["error"] = repr(e)
                time.sleep(0.5)

        time.sleep(1.0)  # let the burst settle before the legitimate client starts knocking
        knocker = threading.Thread(target=legitimate, daemon=True)
        knocker.start()

        peak_fds, peak_rss = 0, 0
        drip_text = b"EHLO " + b"s" * 900  # never a line end: the command never completes
        deadline = started + 3 * self.TIMEOUT + 10
        open_count = self.CONNECTIONS
        while open_count and time.monotonic() < deadline:
            now = time.monotonic()
            for key, _ in sel.select(timeout=0.1):
                c = key.data
                try:
                    chunk = c["sock"].recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    c["closed_at"] = now
                    sel.unregister(c["sock"])
                    c["sock"].close()
                    open_count -= 1
                    continue
                c["buffer"] += chunk
                while b"\r\n" in c["buffer"]:
                    line, c["buffer"] = c["buffer"].split(b"\r\n", 1)
                    if line[3:4] == b" ":
                        code = int(line[:3])
                        c["codes"].append(code)
                        if code == 220:
                            c["greeted_at"] = now
                            c["next_drip"] = now + self.DRIP
            for c in conns:
                if c["drip"] and c["greeted_at"] and c["closed_at"] is None and now >= c["next_drip"]:
                    try:
                        c["sock"].send(drip_text[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                    except OSError:
                        pass
                    c["next_drip"] = now + self.DRIP
            if now - started > 2.0 and daemon.process.poll() is None:
                peak_fds = max(peak_fds, open_fds(pid))
                peak_rss = max(peak_rss, rss_kib(pid))
        for c in conns:
            if c["closed_at"] is None:
                sel.unregister(c["sock"])
                c["sock"].close()
        knocker.join(3 * self.TIMEOUT + 20)

        greeted = [c for c in conns if c["greeted_at"] is not None]
        refused = [c for c in conns if c["greeted_at"] is None]
        idle = [c for c in greeted if not c["drip"]]
        drippers = [c for c in greeted if c["drip"]]

        def cut_after(c):
            return None if c["closed_at"] is None else c["closed_at"] - c["greeted_at"]

        idle_cuts = [cut_after(c) for c in idle]
        drip_cuts = [cut_after(c) for c in drippers]
        hwm = int(proc_status(pid)["VmHWM"].split()[0]) if daemon.process.poll() is None else -1
        figure("slow-loris: %d connections, cap %d: %d greeted (%d idle, %d dripping), %d refused; "
               "fds %d before, peak %d; RSS %d KiB before, peak %d KiB (HWM %d KiB); "
               "idle cut after %s s, dripping cut after %s s; legitimate client: %d attempts, %d refused, "
               "served %s s after the attack began" %
               (self.CONNECTIONS, self.CAP, len(greeted), len(idle), len(drippers), len(refused),
                base_fds, peak_fds, base_rss, peak_rss, hwm,
                span([x for x in idle_cuts if x is not None]), span([x for x in drip_cuts if x is not None]),
                legit["attempts"], legit["refused"],
                "%.1f" % (legit["served_at"] - started) if legit["served_at"] else "never"))

        self.assertIsNone(daemon.process.poll(), "leafmaild died:\n" + daemon.log_text()[-4000:])
        # The cap holds: never more sessions than max-connections, the rest told 421 at once.
        self.assertLessEqual(len(greeted), self.CAP)
        self.assertGreaterEqual(len(greeted), self.CAP - 5, "the cap was not even reached: test is void")
        self.assertTrue(all(c["codes"][:1] == [421] and c["closed_at"] is not None for c in refused),
                        "a refused connection did not get 421 and a close")
        self.assertLessEqual(peak_fds, base_fds + self.CAP + 64)
        # Idle clients are cut at the timeout with 421.
        for c, after in zip(idle, idle_cuts):
            self.assertIsNotNone(after, "an idle client was never cut")
            self.assertGreaterEqual(after, self.TIMEOUT - 1)
            self.assertLessEqual(after, self.TIMEOUT + self.GRACE)
            self.assertEqual(c["codes"][-1], 421)
        # A client dripping one byte every DRIP seconds is no better than an idle one: a command
        # line must be complete within the timeout, else the slot is held forever.
        never = sum(1 for after in drip_cuts if after is None)
        self.assertEqual(never, 0, "%d of %d clients sending one byte every %.0f s were never cut "
                         "(idle-timeout %d s): slow-loris holds the connection slots" %
                         (never, len(drippers), self.DRIP, self.TIMEOUT))
        for after in drip_cuts:
            self.assertLessEqual(after, self.TIMEOUT + self.GRACE)
        # Legitimate clients still get served: refused quickly while the slots are full, served
        # once the timeout has freed them.
        self.assertIsNotNone(legit["served_at"], "legitimate client never served: %r" % legit)
        self.assertLessEqual(legit["served_at"] - started, 2 * self.TIMEOUT + self.GRACE + 5)
        # Memory stays bounded: a session costs a few KiB, not a buffer per byte received.
        budget = (256 if is_sanitized(pid) else 48) * 1024
        self.assertLess(peak_rss - base_rss, budget, "RSS grew by %d KiB" % (peak_rss - base_rss))
        # Every slot and descriptor comes back.
        self.assertTrue(wait_until(lambda: open_fds(pid) <= base_fds, 10),
                        "descriptors: %d before, %d after" % (base_fds, open_fds(pid)))
        self.assertEqual(send_mail(daemon.port, message("after"))[0], 250)
        self.assertEqual(daemon.stop(), 0)


def span(values):
    return "%.1f..%.1f" % (min(values), max(values)) if values else "-"


# -------------------------------------------------------------------------------------- flood

class FloodTest(HardeningTest):
    SECONDS = float(os.environ.get("LEAFMAIL_FLOOD_SECONDS", "8"))
    MAX_CONNECTIONS = 20000
    THREADS = 4

    def test_open_close_flood(self):
        raise_fd_limit(4096)
        daemon = self.start("max-bad-commands = 1000\n")
        pid = daemon.process.pid
        self.assertEqual(send_mail(daemon.port, message("warm-up"))[0], 250)
        self.assert_log(daemon, r"event=disconnect")
        base_fds = open_fds(pid)
        stats = {"made": 0, "failed": 0, "kinds": [0] * 5}
        lock = threading.Lock()
        deadline = time.monotonic() + self.SECONDS

        def flood(worker):
            n = 0
            while time.monotonic() < deadline:
                with lock:
                    if stats["made"] + stats["failed"] >= self.MAX_CONNECTIONS:
                        return
                kind = n % 5
                # Spread over 127.0.0.2..127.0.0.61 so that TIME_WAIT never runs out of ports.
                source = "127.0.0.%d" % (2 + (n * self.THREADS + worker) % 60)
                n += 1
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.settimeout(5)
                    s.bind((source, 0))
                    s.connect(("127.0.0.1", daemon.port))
                    if kind == 1:    # reset at once
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    elif kind == 2:  # read the greeting, then go
                        s.recv(512)
                    elif kind == 3:  # leave in the middle of DATA, with a reset
                        s.sendall(b"EHLO f\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                                  b"DATA\r\nSubject: half\r\n\r\npartial")
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    elif kind == 4:  # polite
                        s.sendall(b"QUIT\r\n")
                        s.recv(512)
                    s.close()
                    with lock:
                        stats["made"] += 1
                        stats["kinds"][kind] += 1
                except OSError:
                    with lock:
                        stats["failed"] += 1

        workers = [threading.Thread(target=flood, args=(w,), daemon=True) for w in range(self.THREADS)]
        began = time.monotonic()
        for w in workers:
            w.start()
        peak = 0
        while any(w.is_alive() for w in workers) and time.monotonic() < deadline + 10:
            if daemon.process.poll() is None:
                peak = max(peak, open_fds(pid))
            time.sleep(0.05)
        for w in workers:
            w.join(10)
        took = time.monotonic() - began
        settled = wait_until(lambda: daemon.process.poll() is not None or open_fds(pid) <= base_fds, 20)
        after = open_fds(pid) if daemon.process.poll() is None else -1
        figure("flood: %d connections in %.1f s (%.0f/s), %d failed to connect; kinds %s; "
               "daemon fds %d before, peak %d, %d after" %
               (stats["made"], took, stats["made"] / took, stats["failed"], stats["kinds"], base_fds, peak, after))
        self.assertIsNone(daemon.process.poll(), "leafmaild died:\n" + daemon.log_text()[-4000:])
        self.assertGreater(stats["made"], 500, "the flood was too small to mean anything")
        self.assertTrue(settled, "descriptor leak: %d before the flood, %d after" % (base_fds, after))
        self.assertLessEqual(after, base_fds)
        self.assertEqual(temp_files(daemon.spool), [])
        self.assertEqual(len(entry_ids(daemon.spool)), 1)  # the half DATAs left nothing
        self.assertEqual(send_mail(daemon.port, message("after-flood"))[0], 250)
        self.assertEqual(daemon.stop(), 0)


# --------------------------------------------------------------------------------- open relay

class OpenRelayTest(HardeningTest):
    ATTEMPT = (b"EHLO outsider.example\r\nMAIL FROM:<spammer@outside.example>\r\n"
               b"RCPT TO:<victim@elsewhere.example>\r\nDATA\r\nSubject: relay me\r\n\r\nspam\r\n.\r\nQUIT\r\n")

    def test_loopback_address_outside_allow_gets_554(self):
        daemon = self.start("allow = 127.0.0.1/32\n")
        with raw_client(daemon.port, source="127.0.0.2") as c:
            c.send(self.ATTEMPT)  # pipelined before the greeting: must not matter
            code, lines = c.reply()
            self.assertEqual(code, 554, lines)
            self.assertTrue(c.is_closed(5))
            self.assertNotIn(b"250", c.buffer)
        self.assert_log(daemon, r"event=refused .*client=127\.0\.0\.2")
        with raw_client(daemon.port) as c:  # the allowed address still works
            self.assertEqual(c.code(), 220)
        self.assertEqual(entry_ids(daemon.spool), [])
        self.assertEqual(temp_files(daemon.spool), [])

    def test_default_configuration_refuses_a_non_loopback_peer(self):
        """A real non-loopback peer: a network namespace joined to ours by a veth pair."""
        if not is_root() or shutil.which("ip") is None:
            require(self, False, "needs root and iproute2 for a network namespace")
        tag = "%x" % (os.getpid() % 0xffff)
        ns, host_if, peer_if = "lmhard" + tag, "lmh" + tag + "a", "lmh" + tag + "b"
        octet = os.getpid() % 250 + 1
        host_ip, peer_ip = "198.18.%d.1" % octet, "198.18.%d.2" % octet  # RFC 2544 test range

        def ip(*args):
            return subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)

        if ip("netns", "add", ns).returncode != 0:
            require(self, False, "ip netns add is not permitted here")
        self.addCleanup(ip, "netns", "del", ns)  # deleting the namespace also removes the pair
        self.addCleanup(ip, "link", "del", host_if)
        for step in (("link", "add", host_if, "type", "veth", "peer", "name", peer_if),
                     ("link", "set", peer_if, "netns", ns),
                     ("addr", "add", host_ip + "/30", "dev", host_if),
                     ("link", "set", host_if, "up"),
                     ("-n", ns, "addr", "add", peer_ip + "/30", "dev", peer_if),
                     ("-n", ns, "link", "set", peer_if, "up"),
                     ("-n", ns, "link", "set", "lo", "up")):
            result = ip(*step)
            if result.returncode != 0:
                require(self, False, "cannot build the veth pair: ip %s: %s" % (" ".join(step), result.stderr.decode()))
        # Default configuration (empty file): allow is loopback only. Listen on the veth too.
        daemon = self.start("", extra_listen=[host_ip + ":0"])
        line = self.assert_log(daemon, r"event=listening address=" + re.escape(host_ip) + r":(\d+)")
        port = int(re.search(re.escape(host_ip) + r":(\d+)", line).group(1))
        probe = ("import socket,sys\n"
                 "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),10)\n"
                 "s.sendall(sys.argv[3].encode('latin-1'))\n"
                 "s.settimeout(10)\n"
                 "data=b''\n"
                 "while True:\n"
                 "    chunk=s.recv(4096)\n"
                 "    if not chunk: break\n"
                 "    data+=chunk\n"
                 "sys.stdout.write(data.decode('latin-1'))\n")
        result = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", probe, host_ip, str(port),
                                 self.ATTEMPT.decode("latin-1")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        output = result.stdout.decode("latin-1")
        figure("open relay: peer %s in namespace %s -> %r" % (peer_ip, ns, output.strip()))
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertTrue(output.startswith("554 "), output)
        self.assertEqual(output.count("\r\n"), 1, "more than the 554 came back: " + output)
        self.assert_log(daemon, r"event=refused .*client=" + re.escape(peer_ip))
        self.assertEqual(entry_ids(daemon.spool), [])
        self.assertEqual(temp_files(daemon.spool), [])


# ------------------------------------------------------------------ command and header injection

class InjectionTest(HardeningTest):
    def test_injection_in_commands_gets_clean_5xx(self):
        daemon = self.start("max-bad-commands = 1000\n")
        c = raw_client(daemon.port)
        self.addCleanup(c.close)
        self.assertEqual(c.code(), 220)
        failures = []

        def expect_5xx(line, allowed=(500, 501, 502, 503, 504, 552, 553, 555)):
            # A line may fall apart into several commands (CR LF inside): every reply before
            # the marker's 252 must be a refusal, and the marker shows the session is in step.
            c.send(line + b"VRFY marker\r\n")
            codes = []
            while True:
                code = c.code()
                if code in (252, None) or len(codes) > 5:
                    break
                codes.append(code)
            if code != 252 or not codes or any(code not in allowed for code in codes):
                failures.append((line[:120], codes, code))

        # HELO names that would forge a Received: field.
        expect_5xx(b"EHLO evil\rX-Injected: yes\r\n")
        expect_5xx(b"EHLO evil\x00x\r\n")
        expect_5xx(b"HELO a\x0bb\r\n", allowed=(250, 500, 501))  # VT: printable enough? either, not a crash
        self.assertEqual(c.command(b"EHLO client.example"), 250)

        long_local = b"l" * 65 + b"@example.org"
        long_domain = b"a@" + b".".join([b"d" * 63] * 4) + b".example"
        long_path = b"p" * 60 + b"@" + b".".join([b"e" * 60] * 5)
        for path in (b"a\r@example.org", b"a\x00@example.org", b"a@exam\nple.org",
                     b"\"a\r\nX-Injected: yes\"@example.org", long_local, long_domain, long_path):
            expect_5xx(b"MAIL FROM:<" + path + b">\r\n")
            c.command(b"RSET")
        expect_5xx(b"MAIL FROM:<" + b"x" * 2000 + b"@example.org>\r\n")  # overlong line
        # A bare LF ends nothing: 500 for the line, then 503 for the RCPT behind it (no MAIL).
        expect_5xx(b"MAIL FROM:<a@example.org>\nRCPT TO:<bare-lf@example.org>\r\n", allowed=(500, 503))
        # MAIL FROM with odd parameters.
        for params in (b"SIZE=abc", b"SIZE=", b"SIZE=-1", b"SIZE=1 SIZE=2", b"SIZE=99999999999999999999999",
                       b"SIZE=1e9", b"BODY=BINARYMIME", b"BODY=", b"BODY=8BITMIME BODY=7BIT", b"FOO=bar",
                       b"AUTH=<>", b"RET=FULL", b"ENVID=x", b"SMTPUTF8", b"X=\x01", b"=", b"SIZE=10\rX"):
            expect_5xx(b"MAIL FROM:<a@example.org> " + params + b"\r\n")
            c.command(b"RSET")
        # RCPT TO injection inside a transaction.
        self.assertEqual(c.command(b"MAIL FROM:<good@example.org>"), 250)
        for line in (b"RCPT TO:<b\r@example.net>", b"RCPT TO:<b\x00@example.net>", b"RCPT TO:b@example.net",
                     b"RCPT TO:<b@example.net>>", b"RCPT TO:<<b@example.net>", b"RCPT TO:<\"x\r\nX-Injected: 1\"@y>",
                     b"RCPT TO:<b@example.net> NOTIFY=NEVER", b"RCPT TO:<" + long_local + b">",
                     b"RCPT TO:<b@example.net> X=\x7f"):
            expect_5xx(line + b"\r\n")
        self.assertEqual(c.command(b"RCPT TO:<rcpt@example.net>"), 250)
        self.assertEqual(c.command(b"DATA"), 354)
        c.send(message("injection") + b".\r\n")
        self.assertEqual(c.code(), 250)
        self.assertEqual(failures, [], "not a clean 5xx (or the session got out of step)")
        self.assertEqual(c.command(b"QUIT"), 221)

        ids = entry_ids(daemon.spool)
        self.assertEqual(len(ids), 1)
        content, envelope = read_entry(daemon.spool, ids[0])
        self.assertIn("good@example.org", envelope)
        self.assertIn("rcpt@example.net", envelope)
        for bad in ("bare-lf", "X-Injected", "evil", "c@d", "b@example.net"):
            self.assertNotIn(bad, envelope)
        header = content.split(b"\r\n\r\n", 1)[0]
        self.assertNotIn(b"X-Injected", header)
        self.assertIn(b"client.example", header)
        self.assertEqual(temp_files(daemon.spool), [])


# ----------------------------------------------------------------------------- SMTP smuggling

class SmugglingTest(HardeningTest):
    SEQUENCES = {"LF.LF": b"\n.\n", "CR.CR": b"\r.\r", "LF.CRLF": b"\n.\r\n", "CRLF.LF": b"\r\n.\n",
                 "CR.CRLF": b"\r.\r\n", "CRLF.CR": b"\r\n.\r", "CR.LF": b"\r.\n", "LF.CR": b"\n.\r"}

    def test_smuggling_sequences_never_split_a_message(self):
        daemon = self.start()
        for name, sequence in self.SEQUENCES.items():
            with self.subTest(sequence=name):
                before = set(entry_ids(daemon.spool))
                smuggled = (b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
                            b"Subject: smuggled " + name.encode() + b"\r\n\r\nevil\r\n")
                content = message("smuggle-" + name, b"before" + sequence + smuggled)
                c = raw_client(daemon.port)
                try:
                    self.assertEqual(c.code(), 220)
                    # The whole transaction in one write, as a pipelining attacker would send it.
                    c.send(b"EHLO client.example\r\nMAIL FROM:<sender@example.org>\r\nRCPT TO:<rcpt@example.net>\r\n"
                           b"DATA\r\n" + content + b".\r\nQUIT\r\n")
                    codes = []
                    while True:
                        code, _ = c.reply()
                        if code is None:
                            break
                        codes.append(code)
                finally:
                    c.close()
                # EHLO, MAIL, RCPT, DATA, the one final 250, QUIT: no reply to smuggled commands.
                self.assertEqual(codes, [250, 250, 250, 354, 250, 221])
                new = sorted(set(entry_ids(daemon.spool)) - before)
                self.assertEqual(len(new), 1)
                stored, envelope = read_entry(daemon.spool, new[0])
                self.assertNotIn("victim", envelope)
                self.assertNotIn("attacker", envelope)
                body = content_without_received(stored)
                self.assertIn(b"MAIL FROM:<evil@attacker.example>", body)
                self.assertIn(b"smuggled " + name.encode(), body)
                # Stored content has CRLF line ends only, so the relay dot-stuffs the "." line.
                self.assertNotRegex(body, rb"(?<!\r)\n|\r(?!\n)")
        figure("smuggling: %d sequences, %d entries, none split" %
               (len(self.SEQUENCES), len(entry_ids(daemon.spool))))


# ------------------------------------------------------------------------------ fsync failure

class FsyncFailureTest(HardeningTest):
    def test_failing_fsync_gives_451_and_nothing_in_queue(self):
        if not FAIL_FSYNC or not os.path.exists(FAIL_FSYNC):
            require(self, False, "LEAFMAIL_FAIL_FSYNC (the fail_fsync shim) is not built")
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-hard-")
        self.addCleanup(tmp.cleanup)
        trigger = os.path.join(tmp.name, "trigger")
        counter = os.path.join(tmp.name, "failed-calls")
        asan = os.environ.get("ASAN_OPTIONS", "")
        prefix = ["env", "LD_PRELOAD=" + FAIL_FSYNC, "LEAFMAIL_FAIL_FSYNC_TRIGGER=" + trigger,
                  "LEAFMAIL_FAIL_FSYNC_COUNT=" + counter,
                  # A sanitized daemon: the shim comes before libasan in the library list.
                  "ASAN_OPTIONS=" + (asan + ":" if asan else "") + "verify_asan_link_order=0"]
        daemon = self.start(prefix=prefix, workdir=tmp.name)
        c = raw_client(daemon.port)
        self.addCleanup(c.close)
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"EHLO client.example"), 250)
        self.assertEqual(send_mail(daemon.port, message("before-fault"), client=c)[0], 250)
        good = entry_ids(daemon.spool)
        self.assertEqual(len(good), 1)

        results = []
        for call in ("fdatasync", "fsync"):  # the entry file's sync, then the directory's
            with open(trigger, "w") as f:
                f.write(call)
            code, lines = send_mail(daemon.port, message("fault-" + call), client=c)
            os.unlink(trigger)
            with open(counter) as f:
                failed = [line.strip() for line in f]
            results.append((call, code, failed.count(call)))
            self.assertEqual(code, 451, "%s failing: %r" % (call, lines))
            self.assertGreaterEqual(failed.count(call), 1, "the shim did not fail %s: is it preloaded?" % call)
            self.assertEqual(entry_ids(daemon.spool), good, "a message whose %s failed is in queue/" % call)
            self.assertEqual(temp_files(daemon.spool), [])
            self.assert_log(daemon, r"event=spool-error")
            # The fault cleared: the same session goes on.
            self.assertEqual(send_mail(daemon.port, message("after-" + call), client=c)[0], 250)
            good = entry_ids(daemon.spool)
        self.assertEqual(send_mail(daemon.port, message("new-session"))[0], 250)
        self.assertEqual(len(entry_ids(daemon.spool)), 4)
        self.assert_entries_whole(daemon.spool)
        figure("fsync failure: %s" % ", ".join("%s failing -> %d (%d failed calls)" % r for r in results))
        self.assertEqual(daemon.stop(), 0)


# ---------------------------------------------------------------------------------- full disk

class FullDiskTest(HardeningTest):
    SIZE = 1024 * 1024  # the tmpfs

    def mount_small_filesystem(self):
        """A 1 MiB tmpfs of our own, or None when mounting is not possible here."""
        if not is_root() or shutil.which("mount") is None:
            return None
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-hard-")
        self.addCleanup(tmp.cleanup)
        mountpoint = os.path.join(tmp.name, "fs")
        os.mkdir(mountpoint)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0755" % self.SIZE, "tmpfs", mountpoint],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        if result.returncode != 0:
            return None
        self.addCleanup(subprocess.run, ["umount", "-l", mountpoint], timeout=10)
        return mountpoint

    def free(self, path):
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def fill(self, path, leave):
        """Writes a filler file until only about `leave` octets are free (0: until ENOSPC)."""
        filler = os.path.join(path, "filler")
        with open(filler, "ab") as f:
            while True:
                room = self.free(path) - leave
                if room <= 0:
                    break
                try:
                    f.write(b"\0" * min(room, 65536))
                    f.flush()
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        return filler

    def test_full_disk_gives_452_and_service_continues(self):
        mountpoint = self.mount_small_filesystem()
        if mountpoint is None:
            require(self, False, "cannot mount a tmpfs here (not root?); test_file_size_limit covers RLIMIT_FSIZE")
        daemon = self.start("min-free-space = 0\nmax-message-size = 8M\n", workdir=mountpoint)
        for i in range(3):
            self.assertEqual(send_mail(daemon.port, message("early-%d" % i))[0], 250)
        early = {i: read_entry(daemon.spool, i) for i in entry_ids(daemon.spool)}

        # 1. A message larger than the filesystem: 452, nothing partial, earlier entries intact.
        c = raw_client(daemon.port)
        self.addCleanup(c.close)
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"EHLO client.example"), 250)
        big = message("too-big", (b"z" * 998 + b"\r\n") * 2048)  # 2 MiB
        code, lines = send_mail(daemon.port, big, client=c)
        self.assertEqual(code, 452, lines)
        self.assertEqual(temp_files(daemon.spool), [])
        self.assertEqual({i: read_entry(daemon.spool, i) for i in entry_ids(daemon.spool)}, early)
        # 2. Space came back with the abort: the same session goes on.
        self.assertEqual(send_mail(daemon.port, message("fits"), client=c)[0], 250)

        # 3. The disk filled by someone else: 452, then fine again once space returns.
        filler = self.fill(mountpoint, 0)
        code, lines = send_mail(daemon.port, message("disk-full"), client=c)
        self.assertEqual(code, 452, lines)
        self.assertEqual(temp_files(daemon.spool), [])
        os.unlink(filler)
        self.assertEqual(send_mail(daemon.port, message("space-returned"), client=c)[0], 250)
        c.command(b"QUIT")
        self.assertEqual(len(entry_ids(daemon.spool)), 5)
        self.assert_entries_whole(daemon.spool)
        self.assertEqual(daemon.stop(), 0)

        # 4. min-free-space refuses while the disk still has room for the message.
        floor = 400 * 1024
        daemon = self.start("min-free-space = %d\n" % floor, workdir=mountpoint)
        filler = self.fill(mountpoint, floor - 100 * 1024)
        room = self.free(mountpoint)
        self.assertGreater(room, 50 * 1024)
        code, lines = send_mail(daemon.port, message("under-the-floor"))
        self.assertEqual(code, 452, lines)
        self.assert_log(daemon, r"event=spool-error .*min-free-space")
        os.unlink(filler)
        self.assertEqual(send_mail(daemon.port, message("above-the-floor"))[0], 250)
        self.assertEqual(len(entry_ids(daemon.spool)), 6)
        self.assertEqual(temp_files(daemon.spool), [])
        figure("full disk: 1 MiB tmpfs: 2 MiB message -> 452, filled disk -> 452, %d KiB free under a "
               "%d KiB floor -> 452; 6 entries intact, service went on" % (room // 1024, floor // 1024))
        self.assertEqual(daemon.stop(), 0)

    def test_file_size_limit_keeps_earlier_entries(self):
        """The fallback without mount: RLIMIT_FSIZE makes the write fail with EFBIG."""
        limit = 300000
        daemon = self.start(prefix=["prlimit", "--fsize=%d" % limit, "--"])
        for i in range(2):
            self.assertEqual(send_mail(daemon.port, message("early-%d" % i))[0], 250)
        early = {i: read_entry(daemon.spool, i) for i in entry_ids(daemon.spool)}
        code, lines = send_mail(daemon.port, message("too-big", (b"y" * 998 + b"\r\n") * 400))
        self.assertEqual(code, 452, lines)
        self.assertEqual({i: read_entry(daemon.spool, i) for i in entry_ids(daemon.spool)}, early)
        self.assertEqual(temp_files(daemon.spool), [])
        self.assertEqual(send_mail(daemon.port, message("small"))[0], 250)
        self.assertEqual(daemon.stop(), 0)


# ---------------------------------------------------------------------- corrupt spool entries

def footer_offset(data):
    return int(data[-32:][11:31])


class CorruptSpoolTest(HardeningTest):
    def make_corrupt_entries(self, spool, template_id):
        """Writes one entry of each kind of damage next to the good ones; returns {kind: id}."""
        queue = os.path.join(spool, "queue")
        with open(os.path.join(queue, template_id), "rb") as f:
            good = f.read()
        offset = footer_offset(good)
        envelope = good[offset:-32]
        prefix = template_id[:-4]
        kinds = {}

        def write(kind, data, name_suffix=""):
            entry_id = prefix + "f%03x" % len(kinds)
            assert QUEUE_ID.match(entry_id)
            with open(os.path.join(queue, entry_id + name_suffix), "wb") as f:
                f.write(data)
            kinds[kind] = entry_id
            return entry_id

        write("truncated-envelope", good[:offset + len(envelope) // 2])
        write("truncated-content", good[:offset // 2] + good[offset:])
        write("garbage", bytes((i * 151 + 7) % 256 for i in range(700)))
        garbage = b"\x01\x02garbage \xff\xfe" * 20
        write("garbage-with-footer", garbage + b"\nLEAFMAIL1 %020d\n" % 0)
        write("footer-outside", good[:-32] + b"\nLEAFMAIL1 %020d\n" % (10 ** 20 - 1))
        # The class version follows the archive header; 99 is newer than any version we know.
        future = re.sub(rb"serialization::archive 18 0 \d+ ", b"serialization::archive 18 0 99 ", good,
                        count=1)
        assert future != good
        write("future-version", future)
        huge = good[:offset] + re.sub(rb"^(22 serialization::archive 18 0 \d+ )\d+ ", rb"\g<1>4000000000 ",
                                      envelope) + good[-32:]
        assert huge != good
        write("huge-length", huge)
        write("empty", b"")
        # A missing content file: only a state file is left where an entry should be.
        orphan = write("missing-content", envelope, ".env")
        # A good entry whose state file is garbage.
        with_state = write("corrupt-state", good.replace(template_id.encode(), (prefix + "f%03x" % len(kinds)).encode()))
        with open(os.path.join(queue, with_state + ".env"), "wb") as f:
            f.write(b"22 serialization::archive 18 0 1 garbage")
        return kinds, orphan

    def test_corrupt_entries_never_crash_and_are_moved_aside(self):
        if not os.path.exists(LEAFMAIL_LIST) and shutil.which(LEAFMAIL_LIST) is None:
            require(self, False, "leafmail-list is not built")
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-hard-")
        self.addCleanup(tmp.cleanup)
        os.chmod(tmp.name, 0o755)
        daemon = self.start(workdir=tmp.name)
        for i in range(3):
            self.assertEqual(send_mail(daemon.port, message("good-%d" % i))[0], 250)
        self.assertEqual(daemon.stop(), 0)
        good = entry_ids(daemon.spool)
        kinds, orphan = self.make_corrupt_entries(daemon.spool, good[0])

        # leafmaild restarts over them, serves, stops cleanly.
        daemon = self.start(workdir=tmp.name)
        self.assertEqual(send_mail(daemon.port, message("after-restart"))[0], 250)
        self.assertIsNone(daemon.process.poll())
        self.assertEqual(daemon.stop(), 0, daemon.log_text()[-4000:])
        good = [i for i in entry_ids(daemon.spool) if i not in kinds.values()]
        self.assertEqual(len(good), 4)

        # leafmail-list reads the spool: good entries listed, every unreadable one reported and
        # moved to corrupt/, no crash.
        config = os.path.join(tmp.name, "leafmail.conf")
        result = subprocess.run([LEAFMAIL_LIST, "--config", config, "--spool", daemon.spool, "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        out, err = result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")
        self.assertGreaterEqual(result.returncode, 0, "leafmail-list killed by signal %d:\n%s" % (-result.returncode, err))
        self.assertNotIn("AddressSanitizer", err)
        self.assertEqual(result.returncode, 0, err)
        for entry_id in good:
            self.assertIn(entry_id, out)
        moved = []
        for kind, entry_id in kinds.items():
            if kind == "missing-content":
                continue  # no entry to move: a stale state file, cleaned by recovery or ignored
            with self.subTest(kind=kind):
                self.assertIn(entry_id, err + out, "%s not reported" % kind)
                self.assertNotIn(entry_id, entry_ids(daemon.spool), "%s still in queue/" % kind)
                self.assertIn(entry_id, entry_ids(daemon.spool, "corrupt"), "%s not in corrupt/" % kind)
                moved.append(kind)
        self.assertEqual(sorted(entry_ids(daemon.spool)), sorted(good))
        # A second run finds them in corrupt/ and leaves everything where it is.
        again = subprocess.run([LEAFMAIL_LIST, "--config", config, "--spool", daemon.spool],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(again.returncode, 0, again.stderr.decode("utf-8", "replace"))
        self.assertEqual(sorted(entry_ids(daemon.spool)), sorted(good))
        # And leafmaild starts once more with corrupt/ full.
        daemon = self.start(workdir=tmp.name)
        self.assertEqual(send_mail(daemon.port, message("last"))[0], 250)
        self.assertEqual(daemon.stop(), 0)
        figure("corrupt entries: %d kinds (%s); %d moved to corrupt/, %d good entries listed; "
               "leafmaild restarted twice over them" % (len(kinds), ", ".join(kinds), len(moved), len(good)))

    def test_unreadable_entry_as_unprivileged_user(self):
        """chmod 000 means nothing to root, so the reader runs as nobody (setpriv)."""
        if not is_root() or shutil.which("setpriv") is None:
            require(self, False, "needs root and setpriv to run leafmail-list as nobody")
        if not os.path.exists(LEAFMAIL_LIST) and shutil.which(LEAFMAIL_LIST) is None:
            require(self, False, "leafmail-list is not built")
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            require(self, False, "no user nobody")
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-hard-")
        self.addCleanup(tmp.cleanup)
        os.chmod(tmp.name, 0o755)
        daemon = self.start(workdir=tmp.name)
        for i in range(3):
            self.assertEqual(send_mail(daemon.port, message("perm-%d" % i))[0], 250)
        self.assertEqual(daemon.stop(), 0)
        ids = entry_ids(daemon.spool)
        for root, dirs, files in os.walk(daemon.spool):
            os.chown(root, nobody.pw_uid, nobody.pw_gid)
            for name in files:
                os.chown(os.path.join(root, name), nobody.pw_uid, nobody.pw_gid)
        locked = ids[1]
        os.chmod(os.path.join(daemon.spool, "queue", locked), 0)
        os.chmod(os.path.join(tmp.name, "leafmail.conf"), 0o644)
        result = subprocess.run(["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                                 "--clear-groups", "--", LEAFMAIL_LIST, "--config",
                                 os.path.join(tmp.name, "leafmail.conf"), "--spool", daemon.spool, "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        out, err = result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")
        figure("unreadable entry as nobody: leafmail-list exit %d; stderr %r" % (result.returncode, err.strip()[:200]))
        self.assertGreaterEqual(result.returncode, 0, "leafmail-list killed by signal %d" % -result.returncode)
        self.assertNotIn("AddressSanitizer", err)
        self.assertIn(result.returncode, (0, 77), err)  # EX_NOPERM is an acceptable answer
        for entry_id in ids:
            if entry_id != locked:
                self.assertIn(entry_id, out)
        self.assertIn(locked, out + err, "the unreadable entry is not reported")
        # Not readable is not corrupt: it must not have been destroyed.
        self.assertTrue(os.path.exists(os.path.join(daemon.spool, "queue", locked)) or
                        os.path.exists(os.path.join(daemon.spool, "corrupt", locked)))


# --------------------------------------------------------------------------------- privileges

class PrivilegeTest(HardeningTest):
    def test_serving_process_keeps_nothing_of_root(self):
        """Started as root with supplementary groups and user = nobody: the serving process
        (every thread) has nobody's ids, no supplementary group, no capability; the spool it
        writes is not world-readable."""
        if not is_root() or shutil.which("setpriv") is None:
            require(self, False, "needs root and setpriv")
        try:
            nobody = pwd.getpwnam("nobody")
            extra = grp.getgrnam("adm").gr_gid
        except KeyError:
            require(self, False, "no user nobody or group adm")
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-hard-")
        self.addCleanup(tmp.cleanup)
        os.chmod(tmp.name, 0o755)
        daemon = self.start("user = nobody\n", workdir=tmp.name,
                            prefix=["setpriv", "--groups", "%d" % extra, "--"])
        pid = daemon.process.pid
        self.assertEqual(send_mail(daemon.port, message("as-nobody"))[0], 250)
        tasks = os.listdir("/proc/%d/task" % pid)
        for task in tasks:
            status = proc_status(pid, task)
            self.assertEqual(status["Uid"].split(), [str(nobody.pw_uid)] * 4, "thread " + task)
            self.assertEqual(status["Gid"].split(), [str(nobody.pw_gid)] * 4, "thread " + task)
            self.assertEqual(status["Groups"].strip(), "", "thread " + task)
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                self.assertEqual(int(status.get(cap, "0"), 16), 0, "%s of thread %s" % (cap, task))
        for root, dirs, files in os.walk(daemon.spool):
            for name in [root] + [os.path.join(root, f) for f in files]:
                self.assertEqual(os.stat(name).st_mode & 0o007, 0, "%s is open to others" % name)
        figure("privileges: %d threads, all uid/gid %d/%d, no groups, no capabilities" %
               (len(tasks), nobody.pw_uid, nobody.pw_gid))
        self.assertEqual(daemon.stop(), 0)


if __name__ == "__main__":
    unittest.main()
