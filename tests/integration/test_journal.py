"""leafmaild's write-ahead journal (issue 15, spool-format/README.md "The journal"):
- a crash (SIGKILL from the crash_at shim) just before and just after each step of the commit
  and of the checkpoint, followed by what a power cut could add (the entries renamed after the
  last checkpoint lose their name or their data): after a restart every acknowledged message
  is in queue/ exactly once, whole, and nothing appears twice;
- the ordering of each acknowledgement after the flush that covers it (the order_check shim
  watches pwrite, fdatasync and the socket writes of the daemon itself).
Each test starts its own daemons and stops or kills only those."""

import os
import re
import struct
import tempfile
import threading
import time
import unittest

from harness import content_without_received, entry_ids, read_entry, require, temp_files, wait_until
from test_receive import raw_client
from test_receive_daemon import QUEUED_AS, ListenDaemon, send_message

CRASH_AT = os.environ.get("LEAFMAIL_CRASH_AT_SHIM", "")
ORDER_CHECK = os.environ.get("LEAFMAIL_ORDER_CHECK_SHIM", "")


def preload(shim, **variables):
    asan = os.environ.get("ASAN_OPTIONS", "")
    # A sanitized daemon: the shim comes before libasan in the library list.
    return (["env", "LD_PRELOAD=" + shim, "ASAN_OPTIONS=" + (asan + ":" if asan else "") + "verify_asan_link_order=0"]
            + ["%s=%s" % item for item in variables.items()])


def tagged_message(tag):
    body = b"line of " + tag.encode() + b"\r\n"
    return b"Subject: " + tag.encode() + b"\r\nMessage-ID: <" + tag.encode() + b"@journal>\r\n\r\n" + body * 20


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


CRC32C = crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def uncheckpointed_ids(spool):
    """The queue ids of the journal's records past its checkpoint, read as
    spool-format/README.md ("The journal") describes the files, independently of leafmail."""
    directory = os.path.join(spool, "journal")
    with open(os.path.join(directory, "checkpoint"), "rb") as f:
        slots = f.read()
    checkpoint = 0
    for slot in (slots[:512], slots[512:1024]):
        m = re.match(rb"LMCKPT1 (\d{20}) ([0-9a-f]{8})\n", slot)
        if m and crc32c(slot[:28]) == int(m.group(2), 16):
            checkpoint = max(checkpoint, int(m.group(1)))
    ids = []
    for name in sorted(n for n in os.listdir(directory) if n.startswith("segment-")):
        with open(os.path.join(directory, name), "rb") as f:
            image = f.read()
        offset, previous = 0, None
        while offset + 24 <= len(image) and image[offset:offset + 8] == b"LMJRNL1\n":
            sequence, length, crc = struct.unpack_from("<QII", image, offset + 8)
            payload = image[offset + 24:offset + 24 + length]
            if (length < 30 or len(payload) != length or (previous is not None and sequence != previous + 1)
                    or crc32c(payload, crc32c(image[offset + 8:offset + 20])) != crc):
                break
            if sequence > checkpoint:
                ids.append(payload[:30].decode())
            previous, offset = sequence, offset + 24 + length
    return ids


def lose_what_was_not_flushed(spool):
    """A power cut after a SIGKILL: an entry renamed into queue/ after the last checkpoint
    may have lost its name (deleted here) or its data (truncated here); only the journal's
    flushed records remain to bring them back."""
    lost = 0
    for n, entry_id in enumerate(uncheckpointed_ids(spool)):
        path = os.path.join(spool, "queue", entry_id)
        if os.path.exists(path):
            if n % 2:
                os.unlink(path)
            else:
                os.truncate(path, 0)
            lost += 1
    return lost


class Senders:
    """A few sessions sending small (journaled) messages until stopped or the daemon dies."""

    def __init__(self, port, prefix, count):
        self.acked, self.sent, self.lock, self.stop = [], {}, threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(port, prefix, n)) for n in range(count)]
        for t in self.threads:
            t.start()

    def run(self, port, prefix, number):
        c = None
        try:
            c = raw_client(port)
            c.sock.settimeout(10)
            if c.code() != 220 or c.command(b"EHLO journal.example") != 250:
                return
            for seq in range(400):
                if self.stop.is_set():
                    break
                tag = "%s-t%d-m%d" % (prefix, number, seq)
                with self.lock:
                    self.sent[tag] = tagged_message(tag)
                code, lines = send_message(c, self.sent[tag])
                if code != 250:
                    break
                with self.lock:
                    self.acked.append((QUEUED_AS.search(" ".join(lines)).group(1), tag))
        except (OSError, AssertionError):
            pass  # the daemon died under us: expected
        finally:
            if c:
                c.close()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(20)
        return not any(t.is_alive() for t in self.threads)


class JournalCrashTest(unittest.TestCase):
    # (call, before/after, n): each step of a journaled commit (pwrite of the batch, its
    # fdatasync, the rename into queue/) and of a checkpoint (syncfs, then the slot's pwrite
    # and fdatasync), early and later in a stream.
    POINTS = [("pwrite", "before", 1), ("pwrite", "after", 1), ("fdatasync", "before", 1),
              ("fdatasync", "after", 1), ("renameat2", "before", 1), ("renameat2", "after", 1),
              ("pwrite", "before", 25), ("fdatasync", "after", 25), ("renameat2", "after", 40),
              ("syncfs", "before", 1), ("syncfs", "after", 1), ("syncfs", "after", 3)]

    def check_spool(self, spool, acked, sent, point):
        present = entry_ids(spool)
        by_tag = {}
        for entry_id in present:
            content, envelope = read_entry(spool, entry_id)  # asserts a whole entry
            self.assertIn(entry_id, envelope)
            message = content_without_received(content)
            tag = re.search(rb"Message-ID: <([^@]+)@journal>", message).group(1).decode()
            self.assertNotIn(tag, by_tag, "%s: message %s is in queue/ twice" % (point, tag))
            self.assertEqual(message, sent[tag], "%s: entry %s differs from what was sent" % (point, entry_id))
            by_tag[tag] = entry_id
        for entry_id, tag in acked:
            self.assertEqual(by_tag.get(tag), entry_id, "%s: %s got 250 as %s but is not in queue/" % (point, tag, entry_id))
        return len(present)

    def test_crash_at_every_step_of_the_commit_loses_and_doubles_nothing(self):
        if not CRASH_AT or not os.path.exists(CRASH_AT):
            require(self, False, "LEAFMAIL_CRASH_AT_SHIM (the crash_at shim) is not built")
        figures = []
        for call, when, n in self.POINTS:
            point = "%s:%s:%d" % (call, when, n)
            with self.subTest(point=point):
                tmp = tempfile.TemporaryDirectory(prefix="leafmail-journal-")
                self.addCleanup(tmp.cleanup)
                # The journal is made by a clean run first, so the counted calls are those of
                # the stream, not of the journal's preallocation.
                daemon = ListenDaemon(workdir=tmp.name)
                daemon.start()
                self.assertEqual(daemon.stop(), 0)
                daemon = ListenDaemon(workdir=tmp.name, prefix=preload(CRASH_AT, LEAFMAIL_CRASH_AT=point))
                self.addCleanup(daemon.kill)
                daemon.start()
                senders = Senders(daemon.port, point.replace(":", "-"), 3)
                died = wait_until(lambda: daemon.process.poll() is not None, timeout=30)
                self.assertTrue(senders.join())
                self.assertTrue(died, "%s: the crash point was never reached (%d acknowledged)" %
                                (point, len(senders.acked)))
                self.assertEqual(daemon.process.returncode, -9, point)
                daemon.kill()
                before = len(entry_ids(daemon.spool))
                lost = lose_what_was_not_flushed(daemon.spool)
                restarted = ListenDaemon(workdir=tmp.name)
                self.addCleanup(restarted.kill)
                restarted.start()
                self.assertEqual(temp_files(restarted.spool), [])
                self.assertEqual(restarted.stop(), 0)
                after = self.check_spool(restarted.spool, senders.acked, senders.sent, point)
                figures.append("%s: %d acked, %d in queue/ at the crash, %d of them made to lose name or data, "
                               "%d after the replay" % (point, len(senders.acked), before, lost, after))
        print("figure: journal crash points: " + "; ".join(figures))


class JournalOrderTest(unittest.TestCase):
    def test_each_250_follows_the_fdatasync_covering_its_record(self):
        if not ORDER_CHECK or not os.path.exists(ORDER_CHECK):
            require(self, False, "LEAFMAIL_ORDER_CHECK_SHIM (the order_check shim) is not built")
        tmp = tempfile.TemporaryDirectory(prefix="leafmail-journal-")
        self.addCleanup(tmp.cleanup)
        log = os.path.join(tmp.name, "order.log")
        daemon = ListenDaemon(workdir=tmp.name, prefix=preload(ORDER_CHECK, LEAFMAIL_ORDER_LOG=log))
        self.addCleanup(daemon.close)
        daemon.start()
        senders = Senders(daemon.port, "order", 8)
        wait_until(lambda: len(senders.acked) >= 400, timeout=60)
        self.assertTrue(senders.join())
        self.assertEqual(daemon.stop(), 0)
        with open(log) as f:
            lines = [line.split() for line in f]
        verdicts = {}
        for verdict, entry_id in lines:
            verdicts[entry_id] = verdict
        acked = [entry_id for entry_id, _ in senders.acked]
        self.assertGreaterEqual(len(acked), 400)
        self.assertEqual(sorted(verdicts), sorted(acked), "the shim saw other 250s than the clients")
        early = [i for i, v in verdicts.items() if v != "ok"]
        self.assertEqual(early, [], "acknowledged before the journal flush covering them returned: %r" %
                         [(i, verdicts[i]) for i in early[:10]])
        print("figure: ordering: %d acknowledgements, each after the fdatasync covering its record" % len(acked))


if __name__ == "__main__":
    unittest.main()
