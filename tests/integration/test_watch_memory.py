"""The watcher through 10,000 messages (run alone: ctest -R watch-memory): every message is
delivered once, and its resident memory, sampled all along, stays flat: what it holds after
the first thousand is what it holds at the end, give or take a few MiB. Bounded to a few
minutes; a slower machine fails it rather than running on."""

import smtplib
import threading
import time
import unittest

from harness import sanitizer_without_quarantine
from test_watch import SENDER, WatchTestCase, message

MESSAGES = 10000
DEADLINE = 240.0          # seconds for injection and delivery together
ALLOWED_GROWTH_KIB = 8 * 1024


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TenThousandMessages(WatchTestCase):
    def test_memory_stays_flat_over_ten_thousand_messages(self):
        server = self.smarthost()
        with sanitizer_without_quarantine():
            w = self.watcher(server.port)
        samples = []  # (messages delivered so far, RSS KiB)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                samples.append((len(server.messages), rss_kib(w.process.pid)))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            sent = 0
            while sent < MESSAGES and time.monotonic() - started < DEADLINE:
                with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
                    for _ in range(min(500, MESSAGES - sent)):
                        client.sendmail(SENDER, ["bob@remote.test"], message("m%d" % sent))
                        sent += 1
            left = DEADLINE - (time.monotonic() - started)
            self.assertTrue(server.wait_for_messages(MESSAGES, timeout=max(1.0, left)),
                            "%d of %d delivered in %.0f s" % (len(server.messages), MESSAGES,
                                                               time.monotonic() - started))
            time.sleep(1)
        finally:
            stop.set()
            sampler.join(5)
        elapsed = time.monotonic() - started
        self.assertEqual(len(server.messages), MESSAGES)  # each once
        warm = [rss for delivered, rss in samples if delivered >= 1000 and rss]
        self.assertTrue(warm, "no sample after the first thousand messages")
        baseline, peak, last = warm[0], max(warm), warm[-1]
        print("\nwatch-memory: %d messages in %.1f s, RSS after 1000 %d KiB, peak %d KiB, "
              "end %d KiB" % (MESSAGES, elapsed, baseline, peak, last))
        self.assertLessEqual(peak - baseline, ALLOWED_GROWTH_KIB, samples[-20:])
        self.assertEqual(w.stop(), 0)


if __name__ == "__main__":
    unittest.main()
