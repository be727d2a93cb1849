"""leafmail-list on a real spool: empty; with queued, held, failed and corrupt entries (text,
and --json parsed by Python and by jq, matched against the spool's files); one entry in
detail; every management action, including unknown and malformed ids among good ones."""

import json
import os
import re
import shutil
import subprocess
import unittest

from tools_support import Spool
from harness import requires

EX_USAGE, EX_NOINPUT = 64, 66
QUEUE_ID = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{4}$")
UNKNOWN = "0000000000000001-00000001-0001"


class ListTest(unittest.TestCase):
    def setUp(self):
        self.spool = Spool()

    def tearDown(self):
        self.spool.close()

    def inject(self, count=1, recipients=("bob@example.net",), subject="test"):
        for n in range(count):
            message = ("Subject: %s %d\n\nbody %d\n" % (subject, n, n)).encode()
            result = self.spool.sendmail(list(recipients), message)
            self.assertEqual(result.returncode, 0, result.stderr)
        return self.spool.ids()

    def move(self, entry_id, source, target):
        """What leafmail-flush does to a failed entry (spool-format: one file, optional .env)."""
        os.rename(os.path.join(self.spool.root, source, entry_id), os.path.join(self.spool.root, target, entry_id))

    def test_empty_spool(self):
        result = self.spool.list()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, b"spool is empty\n")
        self.assertEqual(self.spool.list_json(), [])

    def test_missing_spool_is_an_error_naming_it(self):
        shutil.rmtree(self.spool.root)
        result = self.spool.list()
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(self.spool.root.encode(), result.stderr)

    def build_mixed_spool(self):
        queued, held, failed = self.inject(3)
        self.assertEqual(self.spool.list(["--hold", held]).returncode, 0)
        self.move(failed, "queue", "failed")
        broken = "%016x-00000001-0001" % (int(failed[:16], 16) + 1)  # the newest
        with open(os.path.join(self.spool.root, "queue", broken), "wb") as f:
            f.write(b"not an entry at all")
        return queued, held, failed, broken

    def test_queued_held_failed_and_corrupt_entries(self):
        queued, held, failed, broken = self.build_mixed_spool()
        result = self.spool.list()
        self.assertEqual(result.returncode, 0, result.stderr)
        text = result.stdout.decode()
        positions = [text.index(entry_id) for entry_id in (queued, held, failed, broken)]
        self.assertEqual(positions, sorted(positions))  # arrival order
        self.assertIn(queued + "  queued", text)
        self.assertIn(held + "  held", text)
        self.assertIn(failed + "  failed", text)
        self.assertIn(broken + "  corrupt", text)
        self.assertIn("pending    <bob@example.net>", text)
        self.assertRegex(text, r"\n4 messages, \d+ bytes \(1 queued, 1 held, 1 failed, 1 corrupt\)\n$")
        self.assertTrue(all(len(line) <= 80 for line in text.splitlines()), text)
        # The unreadable entry was moved aside, with a line naming it.
        self.assertIn(broken.encode(), result.stderr)
        self.assertEqual(self.spool.ids("corrupt"), [broken])
        self.assertNotIn(broken, self.spool.ids("queue"))

        entries = self.spool.list_json()
        by_id = {e["id"]: e for e in entries}
        for area, label in (("queue", "queued"), ("hold", "held"), ("failed", "failed"), ("corrupt", "corrupt")):
            for entry_id in self.spool.ids(area):
                self.assertEqual(by_id[entry_id]["area"], label)
        self.assertEqual(sorted(by_id), sorted(self.spool.ids("queue") + self.spool.ids("hold") +
                                               self.spool.ids("failed") + self.spool.ids("corrupt")))
        good = by_id[queued]
        self.assertEqual(good["sender"], "root@example.org" if os.geteuid() == 0 else good["sender"])
        self.assertEqual(good["size"], len(self.spool.content(queued)))
        self.assertRegex(good["queued_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(good["recipients"], [{"address": "bob@example.net", "original": "", "state": "pending",
                                               "attempts": 0, "last_attempt_at": None, "last_reply": ""}])
        self.assertIsNone(good["error"])
        self.assertIsInstance(by_id[broken]["error"], str)
        self.assertEqual(by_id[broken]["size"], len(b"not an entry at all"))

        held_only = self.spool.list_json(["--area", "held"])
        self.assertEqual([e["id"] for e in held_only], [held])

    @requires(shutil.which("jq"), "jq not installed")
    def test_json_validates_with_jq(self):
        self.build_mixed_spool()
        result = self.spool.list(["--json"])
        jq = subprocess.run(["jq", "-e", "length == 4 and all(.[]; has(\"id\") and has(\"area\") and has(\"recipients\"))"],
                            input=result.stdout, capture_output=True, timeout=60)
        self.assertEqual(jq.returncode, 0, jq.stderr)

    def test_one_entry_in_detail_with_its_header(self):
        [entry_id] = self.inject(1, recipients=("a@example.net", "b@example.net"), subject="detail")
        result = self.spool.list([entry_id])
        self.assertEqual(result.returncode, 0, result.stderr)
        text = result.stdout.decode()
        self.assertIn("recipient    <a@example.net>", text)
        self.assertIn("Subject: detail 0", text)
        self.assertIn("Message-ID: <%s@test.leafmail>" % entry_id, text)
        [entry] = self.spool.list_json([entry_id])
        self.assertIn("Subject: detail 0\r\n", entry["headers"])
        result = self.spool.list([entry_id, UNKNOWN])
        self.assertEqual(result.returncode, EX_NOINPUT)
        self.assertIn(UNKNOWN.encode() + b": no such entry", result.stderr)
        self.assertIn(entry_id, result.stdout.decode())

    def test_delete_with_unknown_ids_among_good_ones(self):
        first, second, third = self.inject(3)
        self.move(third, "queue", "failed")
        result = self.spool.list(["--delete", first, UNKNOWN, "../../etc/passwd", third])
        self.assertEqual(result.returncode, EX_NOINPUT)
        self.assertIn(("%s: deleted (was queued)" % first).encode(), result.stdout)
        self.assertIn(("%s: deleted (was failed)" % third).encode(), result.stdout)
        self.assertIn(("%s: no such entry" % UNKNOWN).encode(), result.stderr)
        self.assertIn(b"../../etc/passwd: not a queue id", result.stderr)
        self.assertEqual(self.spool.ids(), [second])
        self.assertEqual(self.spool.ids("failed"), [])

    def test_hold_and_release(self):
        first, second = self.inject(2)
        result = self.spool.list(["--hold", first, UNKNOWN, second])
        self.assertEqual(result.returncode, EX_NOINPUT)
        self.assertEqual(self.spool.ids("hold"), [first, second])
        self.assertEqual(self.spool.ids("queue"), [])
        listing = self.spool.list().stdout.decode()
        self.assertIn(first + "  held", listing)
        result = self.spool.list(["--release", second, UNKNOWN])
        self.assertEqual(result.returncode, EX_NOINPUT)
        self.assertIn(("%s: released" % second).encode(), result.stdout)
        self.assertEqual(self.spool.ids("queue"), [second])
        result = self.spool.list(["--release", first])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.spool.ids("hold"), [])

    def test_requeue_a_failed_entry(self):
        [entry_id] = self.inject(1, recipients=("a@example.net", "b@example.net"))
        # Where leafmail-flush puts an entry after a 5xx (the recipient states themselves are
        # covered by the unit tests of queue_actions).
        self.move(entry_id, "queue", "failed")
        [before] = self.spool.list_json([entry_id])
        self.assertEqual(before["area"], "failed")
        result = self.spool.list(["--requeue", entry_id, UNKNOWN])
        self.assertEqual(result.returncode, EX_NOINPUT)
        self.assertIn(("%s: requeued (2 recipients pending" % entry_id).encode(), result.stdout)
        self.assertEqual(self.spool.ids("queue"), [entry_id])
        [after] = self.spool.list_json([entry_id])
        self.assertEqual(after["area"], "queued")
        self.assertTrue(all(r["state"] == "pending" and r["attempts"] == 0 for r in after["recipients"]))

    def test_usage_errors(self):
        self.assertEqual(self.spool.list(["--delete"]).returncode, EX_USAGE)
        self.assertEqual(self.spool.list(["--hold", "--release", UNKNOWN]).returncode, EX_USAGE)
        self.assertEqual(self.spool.list(["--area", "nowhere"]).returncode, EX_USAGE)
        self.assertEqual(self.spool.list(["--no-such-flag"]).returncode, EX_USAGE)


if __name__ == "__main__":
    unittest.main()
