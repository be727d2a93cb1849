"""A full disk never makes leafmail-flush send a recipient the same message twice (issue 11).

The spool lives on a small tmpfs, mounted in a private mount namespace (`unshare -m`) that
only a helper process holds, so the mount goes away with that process whatever happens to the
test; the binaries reach it through /proc/<pid>/root. A message for three recipients goes to
aiosmtpd (smarthost.py), which defers two of them (450) and, while the content arrives, fills the
tmpfs to the last block. Three flush runs on the full disk: the delivered recipient has exactly
one copy, the outcome is recorded in the room reserved before the content went out, and the
runs after it send nothing and say why. Once there is room again, the deferred recipients get
their one copy. Needs root (mount); under CI=true it fails rather than skip."""

import errno
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import Daemon, entry_ids, read_entry, require
from test_flush import FlushTestCase, message

TMPFS_SIZE = "1m"
DELIVERED = "alice@remote.test"
DEFERRED = ("bob@remote.test", "carol@remote.test")


def fill_to_the_last_block(path):
    """Appends to path until the filesystem refuses even one more octet; returns octets added."""
    added = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (64 * 1024, 4096, 1):
            block = b"f" * chunk
            for _ in range(1 << 20):  # bounded: a 1 MiB tmpfs takes far fewer
                try:
                    added += os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return added


class PrivateTmpfs:
    """A tmpfs mounted in a mount namespace held by one helper process (killed by PID)."""

    def __init__(self, size):
        self.mount_point = tempfile.mkdtemp(prefix="leafmail-full-")
        self.process = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o size="$1",mode=0755 tmpfs "$2" && echo mounted && exec sleep 900',
             "sh", size, self.mount_point],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.process.stdout.readline()
        if line.strip() != b"mounted":
            self.close()
            raise RuntimeError("cannot mount a tmpfs: " + self.process.stderr.read().decode())
        # Paths through the helper's root see its mounts.
        self.path = "/proc/%d/root%s" % (self.process.pid, self.mount_point)

    def free_bytes(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()
        self.process.stderr.close()
        os.rmdir(self.mount_point)


def can_mount_tmpfs():
    return os.geteuid() == 0 and shutil.which("unshare") is not None


class FullDisk(FlushTestCase):
    def setUp(self):
        require(self, can_mount_tmpfs(), "mounting a tmpfs needs root and unshare(1)")
        self.tmpfs = PrivateTmpfs(TMPFS_SIZE)
        self.addCleanup(self.tmpfs.close)
        self.daemon = Daemon(config="min-free-space = 0\n", workdir=self.tmpfs.path).start()
        self.addCleanup(self.daemon.close)
        self.spool = self.daemon.spool
        self.flush_config = os.path.join(self.tmpfs.path, "flush.conf")
        with open(self.flush_config, "w") as f:
            f.write("")
        self.filler = os.path.join(self.tmpfs.path, "filler")

    def fill(self):
        fill_to_the_last_block(self.filler)
        self.assertEqual(self.tmpfs.free_bytes(), 0)

    def test_three_runs_on_a_full_disk_send_each_recipient_one_copy(self):
        self.queue(message("full disk"), recipients=[DELIVERED, *DEFERRED])
        entry = entry_ids(self.spool)[0]
        self.daemon.close()
        server = self.smarthost()
        for address in DEFERRED:
            server.behaviour.rcpt_replies[address] = "450 4.2.0 mailbox busy, try later"
        # The disk fills up while the content is on its way: after leafmail reserved its room.
        server.behaviour.on_data = lambda envelope: fill_to_the_last_block(self.filler)

        runs, copies = [], []  # per run: its output; its exit status and the copies so far
        for run in range(3):
            if run > 0:
                self.fill()  # whatever a run gave back, the next one starts on a full disk
            status, out, err, _, _ = self.flush("--tls", "none",
                                                smarthost="127.0.0.1:%d" % server.port)
            runs.append((status, out, err))
            got = [r for m in server.messages for r in m.rcpt_tos]
            copies.append((status, got.count(DELIVERED), sum(got.count(d) for d in DEFERRED)))
        self.assertEqual(copies, [(75, 1, 0)] * 3, "\n\n".join(err for _, _, err in runs))
        self.assertEqual(entry_ids(self.spool), [entry])

        # Run 1 sent and recorded the outcome in the room reserved before the dot.
        status, out, err = runs[0]
        self.assertRegex(out, r"sent 0, deferred 1, failed 0 in")
        self.assertRegex(err, r"event=delivered id=%s to=<%s>" % (entry, DELIVERED))
        _, envelope = read_entry(self.spool, entry)
        self.assertRegex(envelope, r"%d %s 1 1 " % (len(DELIVERED), re.escape(DELIVERED)))
        for address in DEFERRED:
            self.assertRegex(envelope, r"%d %s 0 1 " % (len(address), re.escape(address)))
        # Runs 2 and 3 found no room to record an outcome: nothing went out, and they say so.
        for status, out, err in runs[1:]:
            self.assertIn("event=spool-full id=%s" % entry, err)
            self.assertIn("No space left on device", err)
            self.assertRegex(out, r"sent 0, deferred 1, failed 0 in")
        self.assertEqual(len(server.messages), 1)
        self.assertEqual(server.sessions, 1)  # runs 2 and 3 did not even connect
        self.assertEqual(os.listdir(os.path.join(self.spool, "tmp")), [])  # no reservation left

        # Room again, and the smarthost takes the other recipient: one copy each, in all.
        os.remove(self.filler)
        server.behaviour.on_data = None
        server.behaviour.rcpt_replies.clear()
        status, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(r for m in server.messages for r in m.rcpt_tos),
                         [DELIVERED, *DEFERRED])
        self.assertEqual(entry_ids(self.spool), [])


if __name__ == "__main__":
    unittest.main()
