"""The handover (issue 15, spool-format/README.md "The handover"): leafmail-sendmail gives a
small message to the running leafmaild, whose journal makes it durable with one shared,
data-only fdatasync; without a daemon, or when it refuses or dies, the injector commits the
message itself. Checked here, with leafmail-sendmail and a raw Unix-socket client as peers:
- messages go through the daemon's journal, large ones and those without a daemon do not;
- hostile requests on the socket get 451 (or nothing) and leave nothing in the spool;
- kill -9 of the daemon while injectors run, and a crash (crash_at shim) at each step of the
  daemon's commit followed by what a power cut could add: every message whose sendmail exited
  0 is in queue/ exactly once, and nothing is there twice;
- the order of each answer after the fdatasync covering its record (order_check shim).
Each test starts its own daemons and injectors and stops or kills only those."""

import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import LEAFMAIL_SENDMAIL, entry_ids, read_entry, require, temp_files, wait_until
from test_journal import CRASH_AT, ORDER_CHECK, lose_what_was_not_flushed, preload
from test_receive_daemon import ListenDaemon

HANDED_OVER = re.compile(r"event=accepted session=handover id=(\S+)")


def tagged(tag, size=0):
    """A message the injector completes (From:, Date:); its Message-ID carries the tag."""
    body = b"line of " + tag.encode() + b"\n"
    filler = b"x" * 70 + b"\n"
    return (b"Subject: " + tag.encode() + b"\nMessage-ID: <" + tag.encode() + b"@handover>\n\n" + body * 10
            + filler * (size // len(filler)))


def tag_of(content):
    return re.search(rb"Message-ID: <([^@]+)@handover>", content).group(1).decode()


class Injectors:
    """Threads each running leafmail-sendmail once per message, up to `count` messages each,
    until stopped; records which tags it exited 0 for."""

    def __init__(self, config, prefix, threads, count, program_prefix=()):
        self.config, self.prefix, self.count = config, prefix, count
        self.program_prefix = list(program_prefix)
        self.acked, self.failed, self.lock, self.stop = [], [], threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, number):
        for seq in range(self.count):
            if self.stop.is_set():
                break
            tag = "%s-t%d-m%d" % (self.prefix, number, seq)
            result = subprocess.run(self.program_prefix + [LEAFMAIL_SENDMAIL, "-C", self.config, "-f",
                                                           "s@example.org", "r@example.net"],
                                    input=tagged(tag), capture_output=True, timeout=60)
            with self.lock:
                (self.acked if result.returncode == 0 else self.failed).append((tag, result.returncode))

    def join(self, timeout=120):
        for t in self.threads:
            t.join(timeout)
        return not any(t.is_alive() for t in self.threads)


class HandoverCase(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-handover-")
        self.addCleanup(tmp.cleanup)
        self.workdir = tmp.name
        self.spool = os.path.join(self.workdir, "spool")
        self.config = os.path.join(self.workdir, "sendmail.conf")
        with open(self.config, "w") as f:
            f.write("spool = %s\nhostname = test.leafmail\ndomain = example.org\n" % self.spool)

    def daemon(self, prefix=()):
        daemon = ListenDaemon(workdir=self.workdir, prefix=prefix)
        self.addCleanup(daemon.kill)
        daemon.start()
        self.assertTrue(daemon.wait_for_log(r"event=listening handover="), "\n".join(daemon.lines))
        return daemon

    def sendmail(self, message):
        return subprocess.run([LEAFMAIL_SENDMAIL, "-C", self.config, "-f", "s@example.org", "r@example.net"],
                              input=message, capture_output=True, timeout=60)

    def check_spool(self, acked, what):
        """Every acknowledged tag exactly once, whole; nothing twice. Returns the tags present."""
        present = {}
        for entry_id in entry_ids(self.spool):
            content, envelope = read_entry(self.spool, entry_id)  # asserts a whole entry
            self.assertIn(entry_id, envelope)
            tag = tag_of(content)
            self.assertNotIn(tag, present, "%s: message %s is in queue/ twice" % (what, tag))
            self.assertIn(b"line of " + tag.encode() + b"\r\n", content)
            present[tag] = entry_id
        missing = [tag for tag, _ in acked if tag not in present]
        self.assertEqual(missing, [], "%s: sendmail exited 0 for these, they are not in queue/" % what)
        return present


class HandoverTest(HandoverCase):
    def test_small_messages_go_through_the_daemons_journal(self):
        daemon = self.daemon()
        for n in range(20):
            result = self.sendmail(tagged("small-%d" % n))
            self.assertEqual(result.returncode, 0, result.stderr)
        large = self.sendmail(tagged("large", 300 * 1024))  # over the journal's 256 KiB
        self.assertEqual(large.returncode, 0, large.stderr)
        self.assertEqual(daemon.stop(), 0)
        handed = [m.group(1) for m in map(HANDED_OVER.search, daemon.lines) if m]
        self.assertEqual(len(handed), 20, "\n".join(daemon.lines))
        present = self.check_spool([("small-%d" % n, 0) for n in range(20)] + [("large", 0)], "handover")
        self.assertEqual(sorted(present[t] for t in present if t != "large"), sorted(handed))
        self.assertNotIn(present["large"], handed, "a 300 KiB message went through the journal")
        content, _ = read_entry(self.spool, handed[0])
        self.assertRegex(content.split(b"\r\n")[0], rb"^Received: \(from \S+@localhost\)")
        self.assertEqual(temp_files(self.spool), [])
        mode = os.stat(os.path.join(self.spool, "handover")).st_mode
        self.assertEqual(oct(mode & 0o777), oct(0o660))
        print("figure: handover: 20 of 20 small messages through the daemon's journal, the 300 KiB one "
              "committed by the injector")

    def test_without_a_daemon_the_injector_commits_itself(self):
        daemon = self.daemon()
        self.assertEqual(daemon.stop(), 0)
        self.assertTrue(os.path.exists(os.path.join(self.spool, "handover")))  # a stale socket
        result = self.sendmail(tagged("alone"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.check_spool([("alone", 0)], "no daemon")
        self.assertEqual(temp_files(self.spool), [])

    def raw_request(self, octets, shut=True, timeout=10):
        """Sends octets on the handover socket as a hostile local client would; the answer."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(os.path.join(self.spool, "handover"))
            s.sendall(octets)
            if shut:
                s.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    return answer  # closed with our excess octets unread
                if not chunk:
                    return answer
                answer += chunk
        finally:
            s.close()

    def test_hostile_requests_get_451_and_store_nothing(self):
        # A real entry image to tamper with: committed by the injector without a daemon.
        self.assertEqual(self.daemon().stop(), 0)
        self.assertEqual(self.sendmail(tagged("model")).returncode, 0)
        [model_id] = entry_ids(self.spool)
        with open(os.path.join(self.spool, "queue", model_id), "rb") as f:
            image = f.read()
        os.unlink(os.path.join(self.spool, "queue", model_id))
        daemon = self.daemon()
        other_id = model_id[:-4] + "ffff"

        def request(entry_id, octets):
            return b"LMHAND1 %s %d\n" % (entry_id.encode(), len(octets)) + octets

        # A client that connects and says nothing holds no one else up.
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(silent.close)
        silent.connect(os.path.join(self.spool, "handover"))
        answers = {
            "not a request": self.raw_request(b"HELO there\n"),
            "an endless line": self.raw_request(b"LMHAND1 " + b"a" * 5000),
            "too large": self.raw_request(b"LMHAND1 %s 99999999\n" % model_id.encode()),
            "another entry's envelope": self.raw_request(request(other_id, image)),
            "not a queue id": self.raw_request(request("../../x", image)),
            "torn": self.raw_request(request(model_id, image[:-1])),
            "less than announced": self.raw_request(b"LMHAND1 %s %d\n" % (model_id.encode(), len(image) + 10)
                                                    + image),
        }
        for case, answer in answers.items():
            with self.subTest(case=case):
                self.assertTrue(answer == b"" or answer.startswith(b"451 4.3.0 "), answer)
        self.assertEqual(answers["another entry's envelope"][:10], b"451 4.3.0 ")
        self.assertEqual(entry_ids(self.spool), [])
        started = time.monotonic()
        result = self.sendmail(tagged("while-silent"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertLess(time.monotonic() - started, 10)
        self.assertTrue(daemon.wait_for_log(r"event=accepted session=handover"), "\n".join(daemon.lines))
        # The untampered image, from a client that is not ours: taken, byte for byte.
        self.assertEqual(self.raw_request(request(model_id, image)), b"250 2.0.0 OK queued as %s\n" % model_id.encode())
        with open(os.path.join(self.spool, "queue", model_id), "rb") as f:
            self.assertEqual(f.read(), image)
        silent.close()
        self.assertEqual(daemon.stop(), 0)
        self.assertEqual(sorted(tag_of(read_entry(self.spool, i)[0]) for i in entry_ids(self.spool)),
                         ["model", "while-silent"])
        self.assertEqual(temp_files(self.spool), [])
        refused = [line for line in daemon.lines if "event=handover-refused" in line]
        self.assertGreaterEqual(len(refused), 5, "\n".join(daemon.lines))

    def test_a_daemon_stopped_with_a_handover_connection_open_exits_cleanly(self):
        # The connection's coroutine is still waiting when leafmaild exits; it is destroyed
        # after the listener and must not touch it (a use after free under AddressSanitizer).
        daemon = self.daemon()
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(silent.close)
        silent.connect(os.path.join(self.spool, "handover"))
        silent.sendall(b"LMHAND1 ")
        time.sleep(0.2)
        self.assertEqual(daemon.stop(), 0, "\n".join(daemon.lines))
        self.assertFalse([line for line in daemon.lines if "Sanitizer" in line], "\n".join(daemon.lines))

    def test_kill_9_of_the_daemon_while_injecting_loses_nothing(self):
        daemon = self.daemon()
        injectors = Injectors(self.config, "kill", 4, 60)
        wait_until(lambda: len(injectors.acked) >= 40, timeout=60)
        daemon.process.kill()  # our own child, by its handle
        daemon.process.wait(10)
        self.assertTrue(injectors.join())
        handed = sum(1 for line in daemon.lines if HANDED_OVER.search(line))
        restarted = self.daemon()
        self.assertEqual(restarted.stop(), 0)
        present = self.check_spool(injectors.acked, "kill -9")
        self.assertGreater(handed, 0)
        self.assertEqual(temp_files(self.spool), [])
        print("figure: handover kill -9: %d injected with exit 0 (%d handed over before the kill), %d refused, "
              "%d in queue/, none twice" % (len(injectors.acked), handed, len(injectors.failed), len(present)))

    def test_crash_at_each_step_of_the_daemons_commit(self):
        if not CRASH_AT or not os.path.exists(CRASH_AT):
            require(self, False, "LEAFMAIL_CRASH_AT_SHIM (the crash_at shim) is not built")
        points = [("pwrite", "before", 1), ("pwrite", "after", 1), ("fdatasync", "before", 1),
                  ("fdatasync", "after", 1), ("renameat2", "before", 1), ("renameat2", "after", 1),
                  ("fdatasync", "after", 12)]
        figures = []
        for call, when, n in points:
            point = "%s:%s:%d" % (call, when, n)
            with self.subTest(point=point):
                self.setUp()  # a fresh spool per point
                # The journal is made by a clean run first, so the counted calls are the commits'.
                self.assertEqual(self.daemon().stop(), 0)
                daemon = self.daemon(prefix=preload(CRASH_AT, LEAFMAIL_CRASH_AT=point))
                injectors = Injectors(self.config, point.replace(":", "-"), 3, 12)
                died = wait_until(lambda: daemon.process.poll() is not None, timeout=60)
                self.assertTrue(injectors.join())
                self.assertTrue(died, "%s: the crash point was never reached" % point)
                self.assertEqual(daemon.process.returncode, -9, point)
                lost = lose_what_was_not_flushed(self.spool)
                restarted = self.daemon()
                self.assertEqual(restarted.stop(), 0)
                present = self.check_spool(injectors.acked, point)
                self.assertEqual(temp_files(self.spool), [])
                figures.append("%s: %d exit 0, %d refused, %d made to lose name or data, %d in queue/"
                               % (point, len(injectors.acked), len(injectors.failed), lost, len(present)))
        print("figure: handover crash points: " + "; ".join(figures))

    def test_each_answer_follows_the_fdatasync_covering_its_record(self):
        if not ORDER_CHECK or not os.path.exists(ORDER_CHECK):
            require(self, False, "LEAFMAIL_ORDER_CHECK_SHIM (the order_check shim) is not built")
        log = os.path.join(self.workdir, "order.log")
        daemon = self.daemon(prefix=preload(ORDER_CHECK, LEAFMAIL_ORDER_LOG=log))
        injectors = Injectors(self.config, "order", 4, 30)
        self.assertTrue(injectors.join())
        self.assertEqual(daemon.stop(), 0)
        handed = [m.group(1) for m in map(HANDED_OVER.search, daemon.lines) if m]
        self.assertEqual(len(handed), 120, "\n".join(daemon.lines[-20:]))
        with open(log) as f:
            verdicts = dict(reversed(line.split()) for line in f)
        self.assertEqual(sorted(verdicts), sorted(handed), "the shim saw other answers than the daemon logged")
        early = [i for i, v in verdicts.items() if v != "ok"]
        self.assertEqual(early, [], "answered before the journal flush covering them returned")
        self.check_spool(injectors.acked, "order")
        print("figure: handover ordering: %d answers, each after the fdatasync covering its record" % len(handed))


if __name__ == "__main__":
    unittest.main()
