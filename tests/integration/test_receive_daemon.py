"""leafmaild as a process: signals, restarts, configuration errors, start-up failures, dropping
privileges, spool write failures, bounded memory, and kill -9 in the middle of a stream of
messages. Each test starts its own daemon(s) and stops or kills only those."""

import hashlib
import os
import pwd
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (LEAFMAILD, QUEUE_ID, Daemon, content_without_received, entry_ids, read_entry, require,
                     requires, temp_files, wait_until)
from test_receive import IO_TIMEOUT, dot_stuff, raw_client, sample_message

QUEUED_AS = re.compile(r"([0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{4})")


class ListenDaemon(Daemon):
    """A Daemon with a chosen listen address and optionally a command prefix (prlimit)."""

    def __init__(self, listen="127.0.0.1:0", prefix=(), **kwargs):
        super().__init__(**kwargs)
        self.listen = listen
        self.prefix = list(prefix)

    def command(self):
        command = super().command()
        command[command.index("127.0.0.1:0")] = self.listen
        return self.prefix + command


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def run_leafmaild(args, timeout=10):
    result = subprocess.run([LEAFMAILD] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=timeout)
    return result.returncode, result.stderr.decode("utf-8", "replace")


def send_message(client, message, sender=b"s@example.org", recipients=(b"r@example.org",)):
    """One transaction on an open session; returns the final reply (code, lines)."""
    assert client.command(b"MAIL FROM:<" + sender + b">") == 250
    for r in recipients:
        assert client.command(b"RCPT TO:<" + r + b">") == 250
    assert client.command(b"DATA") == 354
    client.send(dot_stuff(message))
    return client.reply()


class DaemonTest(unittest.TestCase):
    def start(self, config="", **kwargs):
        daemon = ListenDaemon(config=config, **kwargs).start()
        self.addCleanup(daemon.close)
        return daemon

    def connect(self, daemon):
        client = raw_client(daemon.port)
        self.addCleanup(client.close)
        return client

    def assert_log(self, daemon, pattern, timeout=5):
        line = daemon.wait_for_log(pattern, timeout)
        self.assertIsNotNone(line, "no log line matching %r in:\n%s" % (pattern, daemon.log_text()))
        return line


class SignalTest(DaemonTest):
    def test_sigterm_stops_cleanly(self):
        daemon = self.start()
        idle = self.connect(daemon)
        self.assertEqual(idle.code(), 220)
        self.assertEqual(idle.command(b"EHLO idle.example"), 250)
        daemon.process.send_signal(signal.SIGTERM)
        self.assertEqual(idle.code(), 421)  # an idle session is told at once
        self.assertTrue(idle.is_closed())
        self.assertEqual(daemon.process.wait(10), 0)
        self.assert_log(daemon, r"event=stopped")
        self.assertEqual(daemon.stop(), 0)

    def test_sigterm_lets_data_in_flight_finish(self):
        daemon = self.start("shutdown-grace = 10\n")
        c = self.connect(daemon)
        c.start_transaction()
        message = sample_message("in-flight")
        wire = dot_stuff(message)
        c.send(wire[:100])
        time.sleep(0.2)
        daemon.process.send_signal(signal.SIGTERM)
        self.assert_log(daemon, r"event=stopping")
        # No new sessions once stopping.
        with self.assertRaises(OSError):
            late = raw_client(daemon.port)
            try:
                self.assertNotEqual(late.code(), 220)
                raise ConnectionRefusedError  # closed without a greeting: as good as refused
            finally:
                late.close()
        time.sleep(0.5)
        self.assertIsNone(daemon.process.poll())  # still waiting for our message
        c.send(wire[100:])
        self.assertEqual(c.code(), 250)
        self.assertIn(c.command(b"QUIT"), (221, 421))
        self.assertTrue(c.is_closed())
        self.assertEqual(daemon.process.wait(10), 0)
        ids = entry_ids(daemon.spool)
        self.assertEqual(len(ids), 1)
        self.assertEqual(content_without_received(read_entry(daemon.spool, ids[0])[0]), message)

    def test_grace_period_ends_a_stalled_transaction(self):
        daemon = self.start("shutdown-grace = 1\n")
        c = self.connect(daemon)
        c.start_transaction()
        c.send(b"Subject: stalled\r\n\r\nno end")
        time.sleep(0.2)
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        self.assertEqual(c.code(), 421)
        self.assertTrue(c.is_closed())
        self.assertEqual(daemon.process.wait(10), 0)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(entry_ids(daemon.spool), [])
        self.assertEqual(temp_files(daemon.spool), [])

    def test_open_transaction_gets_the_grace_period(self):
        daemon = self.start("shutdown-grace = 2\n")
        c = self.connect(daemon)
        self.assertEqual(c.code(), 220)
        self.assertEqual(c.command(b"EHLO t.example"), 250)
        self.assertEqual(c.command(b"MAIL FROM:<a@example.org>"), 250)
        self.assertEqual(c.command(b"RCPT TO:<b@example.org>"), 250)
        idle = self.connect(daemon)
        self.assertEqual(idle.code(), 220)
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        self.assertEqual(idle.code(), 421)  # outside a transaction: told at once
        self.assertEqual(c.command(b"RCPT TO:<c@example.org>"), 250)  # inside one: may go on
        self.assertEqual(c.code(), 421)  # ... until the grace period is over
        self.assertGreater(time.monotonic() - started, 1.5)
        self.assertTrue(c.is_closed())
        self.assertEqual(daemon.process.wait(10), 0)
        self.assertEqual(entry_ids(daemon.spool), [])
        self.assertEqual(temp_files(daemon.spool), [])

    def test_sighup_reloads_configuration(self):
        daemon = self.start("max-recipients = 2\n")
        old = self.connect(daemon)
        self.assertEqual(old.code(), 220)
        self.assertEqual(old.command(b"EHLO old.example"), 250)
        with open(daemon.config_path, "w") as f:
            f.write("max-recipients = 4\n")
        mark = len(daemon.lines)
        daemon.process.send_signal(signal.SIGHUP)
        self.assertIsNotNone(daemon.wait_for_log(r"event=reloaded", start=mark), daemon.log_text())
        new = self.connect(daemon)
        self.assertEqual(new.code(), 220)
        self.assertEqual(new.command(b"EHLO new.example"), 250)
        self.assertEqual(new.command(b"MAIL FROM:<a@example.org>"), 250)
        for n in range(4):
            self.assertEqual(new.command(b"RCPT TO:<r%d@example.org>" % n), 250)
        self.assertEqual(new.command(b"RCPT TO:<r4@example.org>"), 452)
        # The session that started before keeps the limits it started with.
        self.assertEqual(old.command(b"MAIL FROM:<a@example.org>"), 250)
        self.assertEqual(old.command(b"RCPT TO:<r0@example.org>"), 250)
        self.assertEqual(old.command(b"RCPT TO:<r1@example.org>"), 250)
        self.assertEqual(old.command(b"RCPT TO:<r2@example.org>"), 452)
        # A broken file on SIGHUP is logged and the old settings stay.
        with open(daemon.config_path, "w") as f:
            f.write("max-recipients = many\n")
        mark = len(daemon.lines)
        daemon.process.send_signal(signal.SIGHUP)
        self.assertIsNotNone(daemon.wait_for_log(r"event=reload-failed.*max-recipients", start=mark),
                             daemon.log_text())
        again = self.connect(daemon)
        self.assertEqual(again.code(), 220)
        self.assertEqual(again.command(b"HELO again.example"), 250)
        self.assertEqual(again.command(b"MAIL FROM:<a@example.org>"), 250)
        for n in range(4):
            self.assertEqual(again.command(b"RCPT TO:<r%d@example.org>" % n), 250)
        self.assertIsNone(daemon.process.poll())

    def test_restart_binds_the_same_port_at_once(self):
        first = self.start()
        port = first.port
        for _ in range(3):  # sessions the server closes first leave TIME_WAIT behind
            c = raw_client(port)
            self.assertEqual(c.code(), 220)
            self.assertEqual(c.command(b"QUIT"), 221)
            self.assertTrue(c.is_closed())
            c.close()
        idle = raw_client(port)
        self.assertEqual(idle.code(), 220)
        self.assertEqual(first.stop(), 0)
        idle.close()
        second = self.start(listen="127.0.0.1:%d" % port, workdir=first.workdir)
        self.assertEqual(second.port, port)
        with raw_client(port) as c:
            self.assertEqual(c.code(), 220)


class ConfigErrorTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="leafmail-it-")
        self.addCleanup(self.tmp.cleanup)
        self.config = os.path.join(self.tmp.name, "leafmail.conf")
        self.spool = os.path.join(self.tmp.name, "spool")
        open(self.config, "w").close()

    def run_with(self, text, extra=()):
        with open(self.config, "w") as f:
            f.write(text)
        return run_leafmaild(["--config", self.config, "--spool", self.spool, "--log", "stderr",
                              "--listen", "127.0.0.1:0"] + list(extra))

    def test_unknown_key(self):
        status, err = self.run_with("# comment\nmax-recipients = 5\nbogus-key = 1\n")
        self.assertEqual(status, 78, err)
        self.assertIn(self.config + ":3", err)
        self.assertIn("bogus-key", err)

    def test_bad_values(self):
        for text, line, key in [("max-recipients = lots\n", 1, "max-recipients"),
                                ("\nidle-timeout = 0\n", 2, "idle-timeout"),
                                ("hostname = x\nmax-message-size = 10Q\n", 2, "max-message-size"),
                                ("allow = 300.1.2.3/8\n", 1, "allow"),
                                ("\n\n\nfsync-workers = 0\n", 4, "fsync-workers")]:
            with self.subTest(text=text):
                status, err = self.run_with(text)
                self.assertEqual(status, 78, err)
                self.assertIn("%s:%d" % (self.config, line), err)
                self.assertIn(key, err)
        self.assertFalse(os.path.exists(self.spool))  # stopped before touching anything

    def test_missing_named_config_file(self):
        status, err = run_leafmaild(["--config", os.path.join(self.tmp.name, "absent.conf"), "--log", "stderr"])
        self.assertEqual(status, 78)
        self.assertIn("absent.conf", err)

    def test_unusable_spool_path(self):
        blocker = os.path.join(self.tmp.name, "a-file")
        with open(blocker, "w") as f:
            f.write("not a directory\n")
        for spool in (blocker, os.path.join(blocker, "spool")):
            for log in ("stderr", "syslog"):
                with self.subTest(spool=spool, log=log):
                    status, err = run_leafmaild(["--config", self.config, "--spool", spool, "--log", log,
                                                 "--listen", "127.0.0.1:0"])
                    self.assertNotEqual(status, 0)
                    self.assertIn(status, range(64, 79))  # a sysexits code
                    lines = [line for line in err.splitlines() if line.strip()]
                    self.assertEqual(len(lines), 1, err)
                    self.assertIn(spool, lines[0])
                    self.assertRegex(lines[0], r"(?i)not a directory|exists")

    def test_unusable_listen_address(self):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        busy = "127.0.0.1:%d" % holder.getsockname()[1]
        try:
            for address, reason in [(busy, r"(?i)in use"), ("192.0.2.1:2525", r"(?i)assign|not available")]:
                for log in ("stderr", "syslog"):
                    with self.subTest(address=address, log=log):
                        status, err = run_leafmaild(["--config", self.config, "--spool", self.spool, "--log", log,
                                                     "--listen", address])
                        self.assertIn(status, range(64, 79), err)
                        self.assertNotEqual(status, 0)
                        lines = [line for line in err.splitlines() if line.strip()]
                        self.assertEqual(len(lines), 1, err)
                        self.assertIn(address, lines[0])
                        self.assertRegex(lines[0], reason)
        finally:
            holder.close()
        for bad in ("nonsense", "mail.example.org:25"):  # no port; a name, not an address
            status, err = run_leafmaild(["--config", self.config, "--spool", self.spool, "--log", "stderr",
                                         "--listen", bad])
            self.assertEqual(status, 78, err)
            self.assertIn(bad, err)


@requires(os.geteuid() == 0, "needs root")
class PrivilegeTest(DaemonTest):
    def test_drops_to_user(self):
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            require(self, False, "no user nobody")
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-it-")
        self.addCleanup(tmp.cleanup)
        os.chmod(tmp.name, 0o755)  # nobody must reach the spool inside it
        daemon = self.start("user = nobody\n", workdir=tmp.name)
        status = proc_status(daemon.process.pid)
        self.assertEqual(status["Uid"].split(), [str(nobody.pw_uid)] * 4)
        self.assertEqual(status["Gid"].split(), [str(nobody.pw_gid)] * 4)
        self.assertEqual(status["Groups"].strip(), "")
        for task in os.listdir("/proc/%d/task" % daemon.process.pid):  # the fsync workers too
            with open("/proc/%d/task/%s/status" % (daemon.process.pid, task)) as f:
                uid_line = [line for line in f if line.startswith("Uid:")][0]
            self.assertEqual(uid_line.split()[1:], [str(nobody.pw_uid)] * 4, "thread " + task)
        c = self.connect(daemon)
        c.start_transaction()
        c.send(b"Subject: as nobody\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.code(), 250)
        ids = entry_ids(daemon.spool)
        self.assertEqual(len(ids), 1)
        self.assertEqual(os.stat(os.path.join(daemon.spool, "queue", ids[0])).st_uid, nobody.pw_uid)

    def test_unknown_user(self):
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-it-")
        self.addCleanup(tmp.cleanup)
        status, err = run_leafmaild(["--log", "stderr", "--config", "/dev/null", "--spool",
                                     os.path.join(tmp.name, "spool"), "--listen", "127.0.0.1:0",
                                     "--user", "no-such-user-leafmail"])
        self.assertEqual(status, 67, err)
        self.assertIn("no-such-user-leafmail", err)


class SpoolFailureTest(DaemonTest):
    def test_file_size_limit_gives_452_and_daemon_keeps_serving(self):
        limit = 200000
        daemon = self.start(prefix=["prlimit", "--fsize=%d" % limit, "--"])
        c = self.connect(daemon)
        c.start_transaction()
        line = b"y" * 98 + b"\r\n"
        c.send(b"Subject: too big for the disk\r\n\r\n" + line * 3000 + b".\r\n")  # 300 kB
        self.assertIn(c.code(), (451, 452))
        self.assertIsNone(daemon.process.poll(), daemon.log_text())
        self.assert_log(daemon, r"event=spool-error")
        self.assertEqual(entry_ids(daemon.spool), [])
        self.assertEqual(temp_files(daemon.spool), [])
        # The same session, then a new one, still get their small messages through.
        code, _ = send_message(c, b"Subject: small\r\n\r\nfits\r\n")
        self.assertEqual(code, 250)
        with raw_client(daemon.port) as other:
            other.start_transaction()
            other.send(b"Subject: small too\r\n\r\nfits\r\n.\r\n")
            self.assertEqual(other.code(), 250)
        self.assertEqual(len(entry_ids(daemon.spool)), 2)
        self.assertEqual(daemon.stop(), 0)

    def test_min_free_space_gives_452(self):
        daemon = self.start("min-free-space = 900000G\n")
        c = self.connect(daemon)
        c.start_transaction()
        c.send(b"Subject: no room\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.code(), 452)
        self.assertEqual(c.command(b"NOOP"), 250)
        self.assertEqual(entry_ids(daemon.spool), [])
        self.assertEqual(temp_files(daemon.spool), [])
        self.assert_log(daemon, r"event=spool-error")


class MemoryTest(DaemonTest):
    def test_30_mib_message_streams_in_bounded_memory(self):
        daemon = self.start("max-message-size = 64M\n")
        c = self.connect(daemon)
        c.start_transaction()
        line = bytes(range(33, 127)) + b"\xe9\xfc" + b"\r\n"  # 98 octets
        block = line * 10700  # ~1 MiB
        digest = hashlib.sha256(b"Subject: big\r\n\r\n")
        c.send(b"Subject: big\r\n\r\n")
        for _ in range(30):
            c.send(block)
            digest.update(block)
        c.send(b".\r\n")
        c.sock.settimeout(60)
        code, _ = c.reply()
        self.assertEqual(code, 250)
        hwm_kib = int(proc_status(daemon.process.pid)["VmHWM"].split()[0])
        # AddressSanitizer's shadow memory alone costs more than the whole plain daemon.
        limit_mib = 160 if os.environ.get("LEAFMAIL_SANITIZED") else 40
        self.assertLess(hwm_kib, limit_mib * 1024, "peak RSS %d KiB for a 30 MiB message" % hwm_kib)
        ids = entry_ids(daemon.spool)
        self.assertEqual(len(ids), 1)
        content, _ = read_entry(daemon.spool, ids[0])
        self.assertEqual(hashlib.sha256(content_without_received(content)).hexdigest(), digest.hexdigest())


class CrashTest(unittest.TestCase):
    """kill -9 during a stream of messages: every 250 is complete, nothing half-written shows."""

    CYCLES = 3
    SENDERS = 4

    def sender(self, port, cycle, number, stop, acked, sent, lock):
        c = None
        try:
            c = raw_client(port)
            c.sock.settimeout(5)
            if c.code() != 220 or c.command(b"EHLO crash.example") != 250:
                return
            for seq in range(2000):
                if stop.is_set():
                    break
                tag = "c%d-t%d-m%d" % (cycle, number, seq)
                body = (b"line %d of " % seq + tag.encode() + b" \xe4\r\n") * (20 + 37 * (seq % 50))
                message = b"Subject: " + tag.encode() + b"\r\nMessage-ID: <" + tag.encode() + b"@crash>\r\n\r\n" + body
                with lock:
                    sent[tag] = message
                code, lines = send_message(c, message)
                if code != 250:
                    break
                match = QUEUED_AS.search(" ".join(lines))
                with lock:
                    acked.append((match.group(1) if match else None, tag))
        except (OSError, AssertionError):
            pass  # the daemon died under us: expected
        finally:
            if c:
                c.close()

    def check_spool(self, spool, acked, sent):
        queue = os.path.join(spool, "queue")
        for name in os.listdir(queue):
            self.assertTrue(QUEUE_ID.match(name) or (name.endswith(".env") and QUEUE_ID.match(name[:-4])),
                            "stray file in queue/: " + name)
        present = set(entry_ids(spool))
        for entry_id, tag in acked:
            self.assertIsNotNone(entry_id, "250 without a queue id")
            self.assertIn(entry_id, present, "message %s got 250 but is not in the spool" % tag)
        by_message_id = {}
        for entry_id in present:
            content, envelope = read_entry(spool, entry_id)  # asserts a complete footer
            self.assertIn(entry_id, envelope)
            message = content_without_received(content)
            tag = re.search(rb"Message-ID: <([^@]+)@crash>", message).group(1).decode()
            self.assertEqual(message, sent[tag], "entry %s differs from what was sent" % entry_id)
            by_message_id[tag] = entry_id
        for entry_id, tag in acked:
            self.assertEqual(by_message_id[tag], entry_id)

    def test_kill_9_during_stream(self):
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-it-")
        self.addCleanup(tmp.cleanup)
        acked, sent, lock = [], {}, threading.Lock()
        port = 0
        daemon = None
        had_leftovers = False
        for cycle in range(self.CYCLES + 1):
            daemon = ListenDaemon(listen="127.0.0.1:%d" % port, workdir=tmp.name)
            self.addCleanup(daemon.kill)
            daemon.start()
            port = daemon.port
            self.assertEqual(temp_files(daemon.spool), [])
            if had_leftovers:
                self.assertIsNotNone(daemon.wait_for_log(r"event=recovered removed-temporaries=[1-9]"),
                                     daemon.log_text())
            if cycle == self.CYCLES:
                break
            # One session stays in the middle of DATA, so the kill leaves a temporary file.
            holder = raw_client(port)
            holder.start_transaction()
            holder.send(b"Subject: never finished\r\n\r\n" + b"partial\r\n" * 10000)
            stop = threading.Event()
            threads = [threading.Thread(target=self.sender, args=(port, cycle, n, stop, acked, sent, lock))
                       for n in range(self.SENDERS)]
            before = len(acked)
            for t in threads:
                t.start()
            wait_until(lambda: len(acked) - before >= 30 + 10 * cycle, timeout=10)
            daemon.process.send_signal(signal.SIGKILL)
            daemon.process.wait(5)
            stop.set()
            for t in threads:
                t.join(15)
                self.assertFalse(t.is_alive())
            holder.close()
            self.assertGreater(len(acked) - before, 0, daemon.log_text())
            had_leftovers = len(temp_files(daemon.spool)) > 0
            self.assertTrue(had_leftovers, "the unfinished message left no temporary file")
            self.check_spool(daemon.spool, acked, sent)
        self.check_spool(daemon.spool, acked, sent)
        self.assertEqual(daemon.stop(), 0)


if __name__ == "__main__":
    unittest.main()
