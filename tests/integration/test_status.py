"""The spool-wide status (issue 11, "Never hide why"): every flush records, per route, when it
ran, the smarthost it tried, the result and the reason in one line; a failure before MAIL
(connection refused on a closed port, a 421 greeting from the scripted smarthost, AUTH
refused by aiosmtpd) is also recorded on each entry the flush meant to send. leafmail-list
prints the status above the entries, `--status` alone and `--status --json` as JSON. The
status files belong to the spool's owner: a symlinked, huge or garbled one gives a clear
message, never a crash."""

import json
import os
import subprocess

from harness import LEAFMAIL_LIST
from scripted_smarthost import ScriptedSmarthost
from smarthost import free_port
from test_flush import FlushTestCase, message

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


class StatusTestCase(FlushTestCase):
    def list(self, *args):
        result = subprocess.run([LEAFMAIL_LIST, "--config", self.flush_config, "--spool",
                                 self.spool] + list(args), capture_output=True, timeout=60)
        return result.returncode, result.stdout.decode(errors="replace"), \
            result.stderr.decode(errors="replace")

    def status_json(self):
        rc, out, err = self.list("--status", "--json")
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def scripted(self, **kwargs):
        server = ScriptedSmarthost(**kwargs).start()
        self.addCleanup(server.stop)
        return server


class AfterAFlush(StatusTestCase):
    def test_connection_refused_is_in_the_status_and_on_each_entry(self):
        self.queue(message("refused 1"))
        self.queue(message("refused 2"))
        port = free_port()  # nothing listens: connection refused
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % port)
        self.assertEqual(rc, 75, err)

        rc, text, err = self.list("--status")
        self.assertEqual(rc, 0, err)
        self.assertRegex(text, r"^last flush: %s \(\d+s ago\): deferred\n  sent 0, deferred 2, "
                               r"failed 0 in [0-9.]+ s\n" % ISO)
        self.assertRegex(text, r"\n  route default via 127\.0\.0\.1:%d: failed at %s\n    451 "
                               r"4\.4\.1 cannot connect to 127\.0\.0\.1:%d: Connection refused\n"
                         % (port, ISO, port))
        self.assertIn("watcher: not running\n", text)

        status = self.status_json()
        route = status["last_flush"]["routes"][0]
        self.assertEqual(route["route"], "default")
        self.assertEqual(route["smarthost"], "127.0.0.1:%d" % port)
        self.assertEqual(route["result"], "failed")
        self.assertRegex(route["reason"], r"Connection refused")
        self.assertEqual((route["sent"], route["deferred"], route["failed"]), (0, 2, 0))
        self.assertRegex(route["attempted_at"], ISO)
        self.assertEqual(status["last_flush"]["result"], "deferred")
        self.assertEqual(status["watcher"], {"running": False})
        self.assertEqual(status["problems"], [])

        # Each entry the flush meant to send counts the attempt and says why.
        for entry in self.listed():
            [r] = entry["recipients"]
            self.assertEqual(r["attempts"], 1)
            self.assertRegex(r["last_reply"], r"Connection refused")
            self.assertIsNotNone(r["last_attempt_at"])

        # The plain listing: the status above the entries.
        rc, listing, err = self.list()
        self.assertEqual(rc, 0, err)
        self.assertTrue(listing.startswith("last flush: "), listing)
        self.assertLess(listing.index("watcher: not running"), listing.index("2 messages"))
        self.assertIn("1 attempt", listing)

    def test_a_421_greeting_is_recorded_with_its_text(self):
        server = self.scripted(greeting=("421 4.3.2 scripted.test closing for maintenance",),
                               faulty_connections=0)
        self.queue(message("greeted away"))
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 75, err)
        route = self.status_json()["last_flush"]["routes"][0]
        self.assertEqual(route["result"], "failed")
        self.assertIn("421 4.3.2 scripted.test closing for maintenance", route["reason"])
        [entry] = self.listed()
        self.assertIn("421 4.3.2", entry["recipients"][0]["last_reply"])
        self.assertEqual(entry["recipients"][0]["attempts"], 1)

    def test_auth_refused_by_aiosmtpd_is_recorded(self):
        server = self.smarthost(tls="starttls", users={"relay-user": "right"})
        self.queue(message("bad password"))
        rc, out, err, _, _ = self.flush("--tls", "starttls", "--ca-file", self.ca.ca_cert,
                                        "--auth-user", "relay-user", password="wrong",
                                        smarthost="localhost:%d" % server.port)
        self.assertEqual(rc, 75, err)
        route = self.status_json()["last_flush"]["routes"][0]
        self.assertEqual(route["result"], "failed")
        self.assertRegex(route["reason"], r"^535 ")
        self.assertRegex(self.listed()[0]["recipients"][0]["last_reply"], r"^535 ")

    def test_a_good_flush_replaces_the_failure(self):
        self.queue(message("later"))
        port = free_port()
        self.flush("--tls", "none", smarthost="127.0.0.1:%d" % port)
        self.assertEqual(self.status_json()["last_flush"]["routes"][0]["result"], "failed")
        server = self.smarthost(tls="none")
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(server.messages), 1)
        status = self.status_json()
        self.assertEqual(status["last_flush"]["result"], "ok")
        route = status["last_flush"]["routes"][0]
        self.assertEqual((route["result"], route["reason"], route["sent"]), ("ok", "", 1))
        self.assertEqual(route["smarthost"], "127.0.0.1:%d" % server.port)
        rc, listing, err = self.list()
        self.assertIn("spool is empty", listing)
        self.assertIn("last flush: ", listing)

    def test_a_smarthost_that_defers_says_its_reply(self):
        server = self.smarthost(tls="none")
        server.behaviour.rcpt_replies["bob@remote.test"] = "450 4.2.0 mailbox busy"
        self.queue(message("busy"))
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % server.port)
        self.assertEqual(rc, 75, err)
        route = self.status_json()["last_flush"]["routes"][0]
        self.assertEqual(route["result"], "deferred")
        self.assertEqual(route["reason"], "450 4.2.0 mailbox busy")

    def test_per_route_a_flush_without_mail_for_a_route_keeps_its_last_attempt(self):
        work_port = free_port()  # down
        server = self.smarthost(tls="none")
        with open(self.flush_config, "w") as f:
            f.write("smarthost = 127.0.0.1:%d\ntls = none\n\n[route work]\n"
                    "smarthost = 127.0.0.1:%d\ntls = none\nsenders = @work.test\n"
                    % (server.port, work_port))
        self.queue(message("work"), sender="me@work.test")
        self.queue(message("home"))
        rc, out, err, _, _ = self.flush()
        self.assertEqual(rc, 75, err)
        routes = {r["route"]: r for r in self.status_json()["last_flush"]["routes"]}
        self.assertEqual(routes["work"]["result"], "failed")
        self.assertEqual(routes["work"]["smarthost"], "127.0.0.1:%d" % work_port)
        self.assertEqual(routes["default"]["result"], "ok")
        self.assertEqual(routes["default"]["smarthost"], "127.0.0.1:%d" % server.port)
        # Only the work entry was meant to go through the failed route.
        [left] = self.listed()
        self.assertEqual(left["sender"], "me@work.test")
        self.assertEqual(left["recipients"][0]["attempts"], 1)
        # A flush of the default route alone leaves the work route's record as it was.
        rc, out, err, _, _ = self.flush("--route", "default")
        routes_after = {r["route"]: r for r in self.status_json()["last_flush"]["routes"]}
        self.assertEqual(routes_after["work"], routes["work"])


class HostileStatusFiles(StatusTestCase):
    """The spool's owner can write anything into the status files; leafmail-list (perhaps
    run by root) must say what is wrong and go on."""

    def status_path(self):
        return os.path.join(self.spool, "flush.status")

    def check_problem(self, expected):
        rc, text, err = self.list("--status")
        self.assertEqual(rc, 0, err)
        self.assertIn("last flush: unknown\n    %s: %s" % (self.status_path(), expected), text)
        status = self.status_json()
        self.assertIsNone(status["last_flush"])
        self.assertEqual(len(status["problems"]), 1)
        self.assertIn(expected, status["problems"][0])
        rc, listing, err = self.list()  # the entries are still listed
        self.assertEqual(rc, 0, err)
        self.assertIn("1 message", listing)

    def setUp(self):
        super().setUp()
        self.queue(message("waiting"))

    def test_a_symlink_is_not_followed(self):
        secret = os.path.join(self.daemon.workdir, "secret")
        with open(secret, "w") as f:
            f.write('{"version": 1, "finished_at": 1, "result": "SECRET", "summary": "", '
                    '"routes": []}')
        os.symlink(secret, self.status_path())
        self.check_problem("a symlink, not followed")
        rc, text, _ = self.list("--status")
        self.assertNotIn("SECRET", text)

    def test_a_huge_file_is_refused_unread(self):
        with open(self.status_path(), "wb") as f:
            f.truncate(1 << 30)  # sparse: 1 GiB read would show in time and memory
        self.check_problem("too large")

    def test_garbage_and_escape_sequences(self):
        with open(self.status_path(), "wb") as f:
            f.write(b"\x1b]0;owned\x07\x1b[2J not json")
        self.check_problem("not a JSON object")
        rc, text, _ = self.list("--status")
        self.assertNotIn("\x1b", text)

    def test_escape_sequences_inside_valid_json_reach_no_terminal(self):
        with open(self.status_path(), "w") as f:
            json.dump({"version": 1, "finished_at": 1, "result": "ok\u001b[2J",
                       "summary": "\u009b31m red", "routes": [
                           {"route": "default", "smarthost": "h\u0007", "at": 1, "result": "ok",
                            "reason": "\u001b]0;title\u0007", "sent": 0, "deferred": 0,
                            "failed": 0}]}, f)
        rc, text, err = self.list("--status")
        self.assertEqual(rc, 0, err)
        for control in ("\x1b", "\x07", "\x9b", "\u009b"):
            self.assertNotIn(control, text)
        self.assertIn("ok\\x1b[2J", text)  # shown escaped, as in the listing

    def test_a_fifo_does_not_hang_the_listing(self):
        os.mkfifo(self.status_path())
        self.check_problem("a fifo, not a regular file")

    def test_the_next_flush_replaces_a_spoiled_file(self):
        secret = os.path.join(self.daemon.workdir, "secret")
        with open(secret, "w") as f:
            f.write("keep me")
        os.symlink(secret, self.status_path())
        rc, out, err, _, _ = self.flush("--tls", "none", smarthost="127.0.0.1:%d" % free_port())
        self.assertEqual(rc, 75, err)
        self.assertIn("event=status-replaced", err)
        with open(secret) as f:
            self.assertEqual(f.read(), "keep me")  # written beside, never through the link
        self.assertFalse(os.path.islink(self.status_path()))
        self.assertEqual(self.status_json()["last_flush"]["routes"][0]["result"], "failed")


if __name__ == "__main__":
    import unittest
    unittest.main()
