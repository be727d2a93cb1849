"""Local mail that reaches a person (issue 13): the aliases file and admin-address applied when
leafmaild (smtplib, swaks) or leafmail-sendmail (`sendmail -t` with `To: root`, cron's way)
accept a message, the mail reaching aiosmtpd as the right address with the original shown
by leafmail-list; refusals (550 5.1.1, exit 67); newaliases and -bi on good and bad files;
loops and depth; rewrite-from with display names; the setgid injector's trust rule."""

import json
import os
import shutil
import signal
import smtplib
import subprocess
import tempfile

from harness import LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, Daemon, entry_ids, read_entry, require, wait_until
from test_flush import FlushTestCase, message, run_process
from test_routes import RoutesTestCase

EX_DATAERR = 65
EX_NOUSER = 67
EX_CONFIG = 78

ALIASES = (
    "# who reads local mail\n"
    "root: alice@remote.test,\n"
    "  operator\n"
    "operator: bob@remote.test\n"
    "postmaster: root\n"
)


def authored(subject, from_field):
    """A message whose From: field is from_field."""
    return b"From: " + from_field + b"\r\nTo: <bob@remote.test>\r\nSubject: " + subject.encode() + b"\r\n\r\nHi.\r\n"


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


class AliasesTestCase(FlushTestCase):
    """leafmaild with an aliases file and an admin-address (hostname test.leafmail), a flush
    into aiosmtpd, and leafmail-sendmail on the same spool."""

    local_rules = "admin-address = admin@remote.test\n"

    def setUp(self):
        files = tempfile.TemporaryDirectory(prefix="leafmail-aliases-")
        self.addCleanup(files.cleanup)
        self.aliases = write(os.path.join(files.name, "aliases"), ALIASES)
        self.daemon_config = ("aliases = %s\n" % self.aliases + self.local_rules) if self.local_rules else ""
        super().setUp()

    def sendmail(self, args, text, config_extra=""):
        config = os.path.join(self.daemon.workdir, "sendmail.conf")
        write(config, "spool = %s\nhostname = test.leafmail\ndomain = example.org\n"
                      "aliases = %s\nadmin-address = admin@remote.test\n%s"
                      % (self.spool, self.aliases, config_extra))
        return subprocess.run([LEAFMAIL_SENDMAIL, "-C", config] + list(args), input=text,
                              capture_output=True, timeout=60)

    def listing(self):
        result = subprocess.run([LEAFMAIL_LIST, "--config", self.daemon.config_path, "--spool", self.spool,
                                 "--json"], capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def relay_all(self, server):
        rc, out, err, _, _ = self.run_flush(server)
        self.assertEqual(rc, 0, err)
        return server.messages

    def run_flush(self, server):
        with open(self.flush_config, "w") as f:
            f.write("smarthost = localhost:%d\ntls = starttls\nca-file = %s\n" % (server.port, self.ca.ca_cert))
        return self.flush()


class AcceptanceTests(AliasesTestCase):

    def test_leafmaild_replaces_local_recipients_and_keeps_the_original(self):
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            refused = client.sendmail("cron@client.test", ["Root@test.leafmail", "www-data@localhost",
                                                           "carol@remote.test"], message("daily"))
        self.assertEqual(refused, {})
        [entry_id] = wait_until(lambda: entry_ids(self.spool))
        [entry] = self.listing()
        recipients = [(r["address"], r["original"]) for r in entry["recipients"]]
        self.assertEqual(recipients, [("alice@remote.test", "Root@test.leafmail"),
                                      ("bob@remote.test", "Root@test.leafmail"),
                                      ("admin@remote.test", "www-data@localhost"),
                                      ("carol@remote.test", "")])
        text = subprocess.run([LEAFMAIL_LIST, "--config", self.daemon.config_path, "--spool", self.spool],
                              capture_output=True, timeout=60).stdout.decode()
        self.assertIn("<alice@remote.test> (for <Root@test.leafmail>)", text)

        server = self.smarthost(tls="starttls")
        [relayed] = self.relay_all(server)
        self.assertEqual(sorted(relayed.rcpt_tos), ["admin@remote.test", "alice@remote.test", "bob@remote.test",
                                                    "carol@remote.test"])
        self.assertEqual(entry_ids(self.spool), [])

    def test_swaks_to_postmaster_follows_the_chain(self):
        require(self, shutil.which("swaks"), "needs swaks (.ci/deps)")
        result = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.daemon.port, "--from", "x@client.test",
                                 "--to", "postmaster", "--body", "chain"], capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [entry] = self.listing()
        self.assertEqual([(r["address"], r["original"]) for r in entry["recipients"]],
                         [("alice@remote.test", "postmaster"), ("bob@remote.test", "postmaster")])

    def test_cron_sendmail_t_to_root_reaches_the_aliases_through_aiosmtpd(self):
        result = self.sendmail(["-t", "-i", "-FCronDaemon", "-oem"],
                               b"To: root\nSubject: Cron <root@laptop> run-parts\n\noutput\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        [entry] = self.listing()
        self.assertEqual([(r["address"], r["original"]) for r in entry["recipients"]],
                         [("alice@remote.test", "root"), ("bob@remote.test", "root")])
        server = self.smarthost(tls="starttls")
        [relayed] = self.relay_all(server)
        self.assertEqual(sorted(relayed.rcpt_tos), ["alice@remote.test", "bob@remote.test"])
        self.assertIn(b"To: root\r\n", relayed.content)  # the message itself is not rewritten

    def test_sendmail_unknown_local_name_goes_to_the_admin_address(self):
        result = self.sendmail(["nobody-here"], b"Subject: x\n\nx\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        [entry] = self.listing()
        self.assertEqual([(r["address"], r["original"]) for r in entry["recipients"]],
                         [("admin@remote.test", "nobody-here")])
        server = self.smarthost(tls="starttls")
        [relayed] = self.relay_all(server)
        self.assertEqual(relayed.rcpt_tos, ["admin@remote.test"])

    def test_the_mail_domain_is_not_local(self):
        # domain = example.org is where colleagues have mailboxes: never aliased.
        result = self.sendmail(["root@example.org"], b"Subject: x\n\nx\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        [entry] = self.listing()
        self.assertEqual([(r["address"], r["original"]) for r in entry["recipients"]],
                         [("root@example.org", "")])

    def test_a_failed_aliased_recipient_bounce_names_the_original(self):
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.sendmail("sender@client.test", ["operator@localhost"], message("bounce me"))
        wait_until(lambda: entry_ids(self.spool))
        server = self.smarthost(tls="starttls")
        server.behaviour.rcpt_replies["bob@remote.test"] = "550 5.1.1 no such user"
        rc, out, err, _, _ = self.run_flush(server)
        self.assertEqual(rc, 0, err)
        # The notification went out in the same run, to the sender, from <>.
        [bounce] = [m for m in server.messages if m.mail_from == "<>"]
        self.assertEqual(bounce.rcpt_tos, ["sender@client.test"])
        self.assertIn(b"Original-Recipient: rfc822; operator@localhost\r\n", bounce.content)
        self.assertIn(b"Final-Recipient: rfc822; bob@remote.test\r\n", bounce.content)


class ReloadTests(AliasesTestCase):

    def rcpt(self, address):
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.ehlo()
            client.mail("x@client.test")
            return client.rcpt(address)[0]

    def test_sighup_rereads_the_aliases_file_and_keeps_it_when_broken(self):
        self.daemon.close()
        self.daemon = Daemon(config="aliases = %s\n" % self.aliases).start()  # no admin-address
        self.addCleanup(self.daemon.close)
        self.assertEqual(self.rcpt("www@localhost"), 550)
        write(self.aliases, ALIASES + "www: web@remote.test\n")
        mark = len(self.daemon.lines)
        self.daemon.process.send_signal(signal.SIGHUP)
        self.assertIsNotNone(self.daemon.wait_for_log(r"event=reloaded", start=mark), self.daemon.log_text())
        self.assertEqual(self.rcpt("www@localhost"), 250)
        # A loop on SIGHUP: logged with its line, the running aliases stay.
        write(self.aliases, ALIASES + "www: www2\nwww2: www\n")
        mark = len(self.daemon.lines)
        self.daemon.process.send_signal(signal.SIGHUP)
        self.assertIsNotNone(self.daemon.wait_for_log(r"event=reload-failed.*alias loop", start=mark),
                             self.daemon.log_text())
        self.assertEqual(self.rcpt("www@localhost"), 250)
        self.assertIsNone(self.daemon.process.poll())


class RefusalTests(AliasesTestCase):
    local_rules = ""  # neither aliases nor admin-address

    def test_leafmaild_refuses_a_local_name_with_550_5_1_1(self):
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.ehlo()
            client.mail("cron@client.test")
            code, text = client.rcpt("root@localhost")
            self.assertEqual(code, 550)
            self.assertTrue(text.startswith(b"5.1.1 "), text)
            self.assertIn(b"admin-address", text)
            code, _ = client.rcpt("someone@remote.test")
            self.assertEqual(code, 250)  # others are still taken
            code, _ = client.data(message("partly"))
            self.assertEqual(code, 250)
        wait_until(lambda: entry_ids(self.spool))
        [entry] = self.listing()
        self.assertEqual([r["address"] for r in entry["recipients"]], ["someone@remote.test"])

    def test_sendmail_refuses_with_exit_67(self):
        config = os.path.join(self.daemon.workdir, "bare.conf")
        write(config, "spool = %s\nhostname = test.leafmail\ndomain = example.org\n" % self.spool)
        result = subprocess.run([LEAFMAIL_SENDMAIL, "-C", config, "-t"], input=b"To: root\nSubject: x\n\nx\n",
                                capture_output=True, timeout=60)
        self.assertEqual(result.returncode, EX_NOUSER, result.stderr)
        self.assertIn(b"root", result.stderr)
        self.assertIn(b"admin-address", result.stderr)
        self.assertEqual(entry_ids(self.spool), [])
        self.assertEqual(os.listdir(os.path.join(self.spool, "tmp")), [])


class AliasesFileErrorTests(FlushTestCase):

    def newaliases(self, workdir, aliases_text, how):
        aliases = write(os.path.join(workdir, "aliases"), aliases_text)
        config = write(os.path.join(workdir, "check.conf"),
                       "spool = %s\nhostname = laptop\naliases = %s\n" % (os.path.join(workdir, "spool"), aliases))
        if how == "newaliases":
            link = os.path.join(workdir, "newaliases")
            if not os.path.exists(link):
                os.symlink(LEAFMAIL_SENDMAIL, link)
            command = [link, "-C", config]
        else:
            command = [LEAFMAIL_SENDMAIL, "-C", config, "-bi"]
        return subprocess.run(command, capture_output=True, timeout=60), aliases

    def test_newaliases_and_bi_on_a_good_file(self):
        for how in ("newaliases", "-bi"):
            result, _ = self.newaliases(self.daemon.workdir, ALIASES, how)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn(b"3 aliases, no errors", result.stdout)

    def test_newaliases_and_bi_report_errors_with_line_numbers(self):
        bad = ("root: alice@remote.test\n"
               "backup: |/usr/bin/store\n"
               "ROOT: bob@remote.test\n"
               "a: b\n"
               "b: a@laptop\n")
        for how in ("newaliases", "-bi"):
            result, path = self.newaliases(self.daemon.workdir, bad, how)
            self.assertEqual(result.returncode, EX_DATAERR, result.stderr)
            lines = result.stderr.decode().splitlines()
            self.assertTrue(lines[0].startswith("%s:2: " % path), lines)
            self.assertIn("not supported", lines[0])
            self.assertTrue(lines[1].startswith("%s:3: " % path), lines)
            self.assertIn("already defined on line 1", lines[1])
            self.assertTrue(any("%s:4: alias loop: a -> b -> a" % path in line for line in lines), lines)

    def test_chain_too_deep_is_reported(self):
        chain = "".join("n%d: n%d\n" % (i, i + 1) for i in range(12)) + "n12: x@remote.test\n"
        result, path = self.newaliases(self.daemon.workdir, chain, "-bi")
        self.assertEqual(result.returncode, EX_DATAERR)
        self.assertIn(("%s:1: alias 'n0' is more than 10 aliases deep" % path).encode(), result.stderr)
        shallow = "".join("n%d: n%d\n" % (i, i + 1) for i in range(5)) + "n5: x@remote.test\n"
        result, _ = self.newaliases(self.daemon.workdir, shallow, "-bi")
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_a_loop_stops_leafmaild_and_sendmail_naming_it(self):
        aliases = write(os.path.join(self.daemon.workdir, "loop"), "root: operator\noperator: root@localhost\n")
        daemon = Daemon(config="aliases = %s\n" % aliases)
        self.addCleanup(daemon.close)
        rc, _, err, _, _ = run_process(daemon.command(), 30)
        self.assertEqual(rc, EX_CONFIG, err)
        self.assertIn(":1: alias loop: root -> operator -> root", err)
        config = write(os.path.join(self.daemon.workdir, "loop.conf"),
                       "spool = %s\nhostname = laptop\naliases = %s\n" % (self.spool, aliases))
        result = subprocess.run([LEAFMAIL_SENDMAIL, "-C", config, "someone@remote.test"], input=b"x\n",
                                capture_output=True, timeout=60)
        self.assertEqual(result.returncode, EX_CONFIG, result.stderr)
        self.assertIn(b"alias loop", result.stderr)
        self.assertEqual(entry_ids(self.spool), [])


class RewriteFromTests(RoutesTestCase):

    def test_local_from_gets_the_route_address_with_its_display_name(self):
        default = self.smarthost(tls="starttls")
        work = self.smarthost(tls="starttls")
        self.write_config(
            "smarthost = localhost:%d\n" % default.port + self.tls_keys() +
            "\n[route laptop]\nsmarthost = localhost:%d\n" % work.port + self.tls_keys() +
            "senders = @localhost\n"
            "rewrite-sender = me@example.org\nrewrite-from = yes\n")
        # The flush runs with hostname flush.test: @flush.test and @localhost are local there.
        self.queue(authored("quoted", b'"root (laptop)" <root@flush.test>'), sender="root@localhost")
        self.queue(authored("comment", b"root (Cron Daemon)"), sender="root@localhost")
        self.queue(authored("foreign", b"Alice <alice@client.test>"), sender="root@localhost")
        self.queue(authored("default route", b"root@localhost"), sender="other@client.test")
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 0, err)
        by_subject = {}
        for m in work.messages:
            subject = [line for line in m.content.split(b"\r\n") if line.startswith(b"Subject: ")][0]
            by_subject[subject[9:]] = m
        self.assertEqual(set(by_subject), {b"quoted", b"comment", b"foreign"})
        for m in work.messages:
            self.assertEqual(m.mail_from, "me@example.org")
        self.assertIn(b'\r\nFrom: "root (laptop)" <me@example.org>\r\n', by_subject[b"quoted"].content)
        self.assertIn(b'\r\nFrom: "Cron Daemon" <me@example.org>\r\n', by_subject[b"comment"].content)
        self.assertIn(b"\r\nFrom: Alice <alice@client.test>\r\n", by_subject[b"foreign"].content)
        # The default route has no rewrite-from: its From: stays local.
        [other] = default.messages
        self.assertIn(b"\r\nFrom: root@localhost\r\n", other.content)
        # At relay time only: nothing in the spool was rewritten (the entries are gone now).
        self.assertEqual(entry_ids(self.spool), [])

    def test_the_from_sendmail_made_from_the_login_is_local(self):
        server = self.smarthost(tls="starttls")
        self.write_config("smarthost = localhost:%d\n" % server.port + self.tls_keys() +
                          "rewrite-sender = me@example.org\nrewrite-from = yes\n"
                          "domain = example.org\n")
        config = write(os.path.join(self.daemon.workdir, "sendmail.conf"),
                       "spool = %s\nhostname = test.leafmail\ndomain = example.org\n" % self.spool)
        result = subprocess.run([LEAFMAIL_SENDMAIL, "-C", config, "-F", "Build Bot", "x@remote.test"],
                                input=b"Subject: login\n\nx\n", capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 0, err)
        [m] = server.messages
        self.assertEqual(m.mail_from, "me@example.org")
        self.assertIn(b"\r\nFrom: Build Bot <me@example.org>\r\n", m.content)

    def test_rewrite_from_configuration_errors(self):
        for text in ("rewrite-from = maybe\n", "rewrite-from = yes\n",
                     "[route r]\nsmarthost = localhost:25\nsenders = @x.test\nrewrite-from = yes\n"):
            self.write_config("smarthost = localhost:25\ntls = none\n" + text)
            rc, out, err, _, _ = self.run_flush("--dry-run")
            self.assertEqual(rc, EX_CONFIG, err)
            self.assertIn("rewrite-from", err)


if __name__ == "__main__":
    import unittest
    unittest.main()
