"""leafmail-sendmail fed by real programs: a Python subprocess, git send-email, mail(1) from
GNU mailutils, smtplib over a pipe (-bs); -t with Bcc; messages without Date/Message-ID; the
sendmail flags other programs pass; refusals with their exit codes; and a non-root user
injecting through the setgid install model without being able to read or delete entries."""

import asyncio
import json
import os
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import tempfile
import unittest

from harness import LEAFMAIL_FLUSH, LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, requires
from tools_support import DefaultConfiguration, ScratchAccount, Spool, header_names, header_of

EX_USAGE, EX_DATAERR, EX_NOPERM, EX_TEMPFAIL, EX_CONFIG = 64, 65, 77, 75, 78


def have_git_send_email():
    if not shutil.which("git"):
        return False
    probe = subprocess.run(["git", "send-email", "-h"], capture_output=True, timeout=60)
    # Debian's git-email needs Mail::Address (libmailtools-perl, only recommended).
    modules = subprocess.run(["perl", "-MMail::Address", "-e", "1"], capture_output=True, timeout=60)
    return b"sendmail-cmd" in probe.stdout + probe.stderr and modules.returncode == 0


def have_mailutils_mail():
    if not shutil.which("mail"):
        return False
    return b"GNU Mailutils" in subprocess.run(["mail", "--version"], capture_output=True, timeout=60).stdout


def recipients_of(spool, entry_id):
    [entry] = [e for e in spool.list_json([entry_id])]
    return [r["address"] for r in entry["recipients"]]


class SendmailTest(unittest.TestCase):
    def setUp(self):
        # Cron writes to the bare name root: a local recipient, which goes to admin-address.
        self.spool = Spool("admin-address = root@example.org\n")

    def tearDown(self):
        self.spool.close()

    def single_entry(self):
        ids = self.spool.ids()
        self.assertEqual(len(ids), 1, ids)
        return ids[0]

    def test_python_subprocess_message_without_date_and_message_id(self):
        message = b"To: Bob <bob@example.net>\nSubject: from python\n\nline one\nline two\n"
        result = self.spool.sendmail(["bob@example.net"], message)
        self.assertEqual(result.returncode, 0, result.stderr)
        entry_id = self.single_entry()
        content = self.spool.content(entry_id)
        names = header_names(content)
        self.assertEqual(names[0], b"received")
        for name in (b"date", b"message-id", b"from", b"to", b"subject"):
            self.assertIn(name, names)
        self.assertIn(b"Message-ID: <%s@test.leafmail>\r\n" % entry_id.encode(), content)
        self.assertRegex(header_of(content).decode(), r"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n")
        self.assertTrue(content.endswith(b"\r\n\r\nline one\r\nline two\r\n"))
        self.assertNotIn(b"\n", content.replace(b"\r\n", b""))  # CRLF everywhere
        self.assertEqual(recipients_of(self.spool, entry_id), ["bob@example.net"])
        [entry] = self.spool.list_json([entry_id])
        self.assertEqual(entry["origin"], "local")
        self.assertEqual(entry["client_address"], "uid=%d" % os.getuid())

    def test_existing_date_and_message_id_are_kept_and_content_unchanged(self):
        message = (b"From: Alice <alice@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0100\r\n"
                   b"Message-ID: <kept@example.org>\r\nSubject: s\r\n\r\n8-bit \xc3\xa9t\xc3\xa9\r\n..dot\r\n")
        result = self.spool.sendmail(["-i", "a@example.net"], message)
        self.assertEqual(result.returncode, 0, result.stderr)
        content = self.spool.content(self.single_entry())
        self.assertTrue(content.endswith(message), content)  # byte for byte after Received:
        self.assertEqual(content.count(b"Message-ID:"), 1)

    def test_dash_t_with_bcc(self):
        message = (b"From: me@example.org\nTo: \"Doe, J\" <j@example.net>, k@example.net\n"
                   b"Cc: undisclosed-recipients:;\nBcc: Hidden <hidden@example.com>,\n  other@example.com\n"
                   b"Subject: blind\n\nbody\n")
        result = self.spool.sendmail(["-t"], message)
        self.assertEqual(result.returncode, 0, result.stderr)
        entry_id = self.single_entry()
        content = self.spool.content(entry_id)
        self.assertNotIn(b"Bcc", content)
        self.assertNotIn(b"hidden@example.com", content)
        self.assertNotIn(b"other@example.com", content)
        self.assertEqual(recipients_of(self.spool, entry_id),
                         ["j@example.net", "k@example.net", "hidden@example.com", "other@example.com"])

    def test_done_when_echo_subject_with_to_header(self):
        # The example: a To: header and one Subject line, recipients by -t.
        result = self.spool.sendmail(["-t"], b"To: someone@example.net\nSubject: hi\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        listing = self.spool.list()
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn(self.single_entry(), listing.stdout.decode())
        self.assertIn("<someone@example.net>", listing.stdout.decode())

    def test_quoted_local_part_with_angle_bracket(self):
        # The grammar leafmaild applies to RCPT (RFC 5321 4.1.2 Quoted-string: '>' is qtextSMTP).
        odd = '"a>b@c"@example.org'
        result = self.spool.sendmail(["-f", odd, odd], b"Subject: odd\n\nx\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        [entry] = self.spool.list_json([self.single_entry()])
        self.assertEqual(entry["sender"], odd)
        self.assertEqual([r["address"] for r in entry["recipients"]], [odd])
        result = self.spool.sendmail(["a>b@example.org"], b"Subject: bad\n\nx\n")
        self.assertEqual(result.returncode, EX_DATAERR, result.stderr)

    def test_lone_dot_ends_the_message_unless_i(self):
        self.assertEqual(self.spool.sendmail(["a@example.net"], b"Subject: 1\n\nabove\n.\nbelow\n").returncode, 0)
        self.assertEqual(self.spool.sendmail(["-oi", "a@example.net"], b"Subject: 2\n\nabove\n.\nbelow\n").returncode, 0)
        first, second = self.spool.ids()
        self.assertTrue(self.spool.content(first).endswith(b"\r\n\r\nabove\r\n"))
        self.assertTrue(self.spool.content(second).endswith(b"\r\n\r\nabove\r\n.\r\nbelow\r\n"))

    def test_sender_full_name_and_flags_that_cron_and_mutt_pass(self):
        result = self.spool.sendmail(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-odi", "-f", "cron@example.org",
                                      "--", "root"], b"Subject: cron\n\nout\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, b"")
        entry_id = self.single_entry()
        self.assertIn(b"From: CronDaemon <cron@example.org>\r\n", self.spool.content(entry_id))
        [entry] = self.spool.list_json([entry_id])
        self.assertEqual(entry["sender"], "cron@example.org")
        self.assertEqual([r["address"] for r in entry["recipients"]], ["root@example.org"])

    def test_unknown_o_option_warns_and_unknown_flag_is_a_usage_error(self):
        result = self.spool.sendmail(["-oXfoo", "a@example.net"], b"Subject: w\n\nx\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"warning", result.stderr)
        self.assertIn(b"-oXfoo", result.stderr)
        result = self.spool.sendmail(["-Z", "a@example.net"], b"Subject: w\n\nx\n")
        self.assertEqual(result.returncode, EX_USAGE)
        self.assertIn(b"unknown option -Z", result.stderr)
        self.assertEqual(len(self.spool.ids()), 1)
        self.assertEqual(self.spool.sendmail(["-bi"]).returncode, 0)

    def test_refusals(self):
        result = self.spool.sendmail([], b"Subject: nobody\n\nx\n")
        self.assertEqual(result.returncode, EX_DATAERR)
        self.assertIn(b"no recipients", result.stderr)
        result = self.spool.sendmail(["-t"], b"Subject: nobody\n\nx\n")
        self.assertEqual(result.returncode, EX_DATAERR)
        result = self.spool.sendmail(["bad address@x"], b"Subject: x\n\nx\n")
        self.assertEqual(result.returncode, EX_DATAERR)
        self.assertEqual(self.spool.ids(), [])
        self.assertEqual(os.listdir(os.path.join(self.spool.root, "tmp")), [])

    def test_full_spool_is_a_temporary_failure(self):
        full = Spool("min-free-space = 1000000G\n")
        try:
            result = full.sendmail(["a@example.net"], b"Subject: x\n\nx\n")
            self.assertEqual(result.returncode, EX_TEMPFAIL)
            self.assertEqual(full.ids(), [])
        finally:
            full.close()

    def test_bad_configuration_exits_78(self):
        with open(self.spool.config, "a") as f:
            f.write("no-such-key = 1\n")
        result = self.spool.sendmail(["a@example.net"], b"x\n")
        self.assertEqual(result.returncode, 78)
        self.assertIn(b"no-such-key", result.stderr)

    def test_bp_and_mailq_list_the_spool(self):
        self.assertEqual(self.spool.sendmail(["a@example.net"], b"Subject: q\n\nx\n").returncode, 0)
        listing = self.spool.sendmail(["-bp"])
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn(self.single_entry(), listing.stdout.decode())
        mailq = os.path.join(self.spool.workdir, "mailq")
        os.symlink(LEAFMAIL_SENDMAIL, mailq)
        listing = self.spool.sendmail([], program=mailq)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn("1 message,", listing.stdout.decode())

    def test_bs_smtp_session_with_smtplib_over_a_pipe(self):
        ours, theirs = socket.socketpair()
        process = subprocess.Popen([LEAFMAIL_SENDMAIL, "-C", self.spool.config, "-bs"],
                                   stdin=theirs, stdout=theirs, stderr=subprocess.PIPE)
        theirs.close()
        try:
            client = smtplib.SMTP()
            client.sock = ours
            code, greeting = client.getreply()
            self.assertEqual(code, 220, greeting)
            client.ehlo("pipe.test")
            refused = client.sendmail("alice@example.org", ["bob@example.net", "carol@example.net"],
                                      b"Subject: over a pipe\r\n\r\nhello\r\n")
            self.assertEqual(refused, {})
            client.quit()
            self.assertEqual(process.wait(30), 0, process.stderr.read())
        finally:
            ours.close()
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stderr.close()
        entry_id = self.single_entry()
        self.assertIn(b"Subject: over a pipe\r\n\r\nhello\r\n", self.spool.content(entry_id))
        self.assertEqual(recipients_of(self.spool, entry_id), ["bob@example.net", "carol@example.net"])

    @requires(have_git_send_email(), "git send-email not usable (Debian packages git-email, libmailtools-perl)")
    def test_git_send_email(self):
        repo = os.path.join(self.spool.workdir, "repo")
        env = dict(os.environ, GIT_AUTHOR_NAME="Dev Eloper", GIT_AUTHOR_EMAIL="dev@example.org",
                   GIT_COMMITTER_NAME="Dev Eloper", GIT_COMMITTER_EMAIL="dev@example.org", HOME=self.spool.workdir)
        git = lambda *args: subprocess.run(["git", "-C", repo] + list(args), env=env, check=True,
                                           capture_output=True, timeout=60)
        os.makedirs(repo)
        git("init", "-q")
        with open(os.path.join(repo, "file.txt"), "w") as f:
            f.write("hello\n")
        git("add", "file.txt")
        git("commit", "-q", "-m", "Add a file")
        patch = git("format-patch", "-1", "-o", self.spool.workdir).stdout.decode().strip()
        sendmail_cmd = "%s -C %s" % (LEAFMAIL_SENDMAIL, self.spool.config)
        result = subprocess.run(["git", "-C", repo, "send-email", "--confirm=never", "--no-validate",
                                 "--suppress-cc=all", "--to=Maintainer <maint@example.net>",
                                 "--from=Dev Eloper <dev@example.org>", "--sendmail-cmd=" + sendmail_cmd, patch],
                                env=env, capture_output=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        entry_id = self.single_entry()
        content = self.spool.content(entry_id)
        self.assertIn(b"Subject: [PATCH] Add a file", content)
        self.assertIn(b"+hello", content)
        self.assertEqual(recipients_of(self.spool, entry_id), ["maint@example.net"])

    @requires(have_mailutils_mail(), "mail(1) from GNU mailutils not installed (Debian package mailutils)")
    def test_mail_from_mailutils(self):
        # mailutils names its mailer by URL, without arguments: a wrapper adds -C.
        wrapper = os.path.join(self.spool.workdir, "sendmail")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec "%s" -C "%s" "$@"\n' % (LEAFMAIL_SENDMAIL, self.spool.config))
        os.chmod(wrapper, 0o755)
        result = subprocess.run(["mail", "-E", "set sendmail=sendmail://" + wrapper, "-s", "from mail(1)",
                                 "friend@example.net"], input=b"sent with mailutils\n", capture_output=True,
                                timeout=60, env=dict(os.environ, HOME=self.spool.workdir))
        self.assertEqual(result.returncode, 0, result.stderr)
        entry_id = self.single_entry()
        content = self.spool.content(entry_id)
        self.assertIn(b"Subject: from mail(1)", content)
        self.assertIn(b"sent with mailutils", content)
        for name in (b"date", b"message-id", b"from"):
            self.assertIn(name, header_names(content))
        self.assertEqual(recipients_of(self.spool, entry_id), ["friend@example.net"])


def have_aiosmtpd():
    try:
        import aiosmtpd  # noqa: F401
        return True
    except ImportError:
        return False


@requires(have_aiosmtpd(), "python3-aiosmtpd not installed")
class DoneWhenTest(unittest.TestCase):
    """echo "Subject: hi" | leafmail-sendmail -t (with To:) → leafmail-list shows it →
    leafmail-flush delivers it to a smarthost with Date and Message-ID added."""

    def test_sendmail_list_flush(self):
        from aiosmtpd.controller import Controller

        received = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
                return "250 OK"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        controller.start()
        spool = Spool("smarthost = 127.0.0.1:%d\ntls = none\nconnect-timeout = 10\ntimeout = 10\n" % port)
        try:
            result = spool.sendmail(["-t"], b"To: someone@example.net\nSubject: hi\n")
            self.assertEqual(result.returncode, 0, result.stderr)
            [entry_id] = spool.ids()
            self.assertIn(entry_id, spool.list().stdout.decode())
            flush = subprocess.run([LEAFMAIL_FLUSH, "--config", spool.config], capture_output=True, timeout=120)
            self.assertEqual(flush.returncode, 0, flush.stdout + flush.stderr)
            self.assertEqual(len(received), 1)
            sender, recipients, content = received[0]
            self.assertEqual(recipients, ["someone@example.net"])
            self.assertRegex(content.decode(), r"(?m)^Date: ")
            self.assertRegex(content.decode(), r"(?m)^Message-ID: <%s@test.leafmail>" % re.escape(entry_id))
            self.assertIn(b"Subject: hi", content)
            self.assertEqual(spool.ids(), [])
        finally:
            controller.stop()
            spool.close()


@requires(os.geteuid() == 0 and shutil.which("useradd") and (shutil.which("runuser") or shutil.which("setpriv")),
                     "needs root, useradd and runuser or setpriv")
class UnprivilegedInjectionTest(unittest.TestCase):
    """The setgid install model: a scratch user injects through a copy of leafmail-sendmail
    that is setgid to a scratch group owning the spool, and can neither read nor delete."""

    def setUp(self):
        self.account = ScratchAccount()
        self.addCleanup(self.account.close)
        self.workdir = tempfile.mkdtemp(prefix="leafmail-setgid-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        os.chmod(self.workdir, 0o755)  # the user must reach the program and configuration
        bindir = os.path.join(self.workdir, "bin")
        os.makedirs(bindir)
        self.sendmail = os.path.join(bindir, "leafmail-sendmail")
        shutil.copy(LEAFMAIL_SENDMAIL, self.sendmail)
        shutil.copy(LEAFMAIL_LIST, os.path.join(bindir, "leafmail-list"))
        os.chown(self.sendmail, 0, self.account.gid)
        os.chmod(self.sendmail, 0o2755)  # after chown: a chown clears the setgid bit
        self.spool = os.path.join(self.workdir, "spool")
        for area in ("", "tmp", "queue", "hold", "failed", "corrupt"):
            path = os.path.join(self.spool, area)
            os.makedirs(path, exist_ok=True)
            os.chown(path, 0, self.account.gid)
            os.chmod(path, 0o2770)
        # Only the compiled-in default configuration keeps the injector's group for a user.
        text = "spool = %s\nhostname = test.leafmail\ndomain = example.org\n" % self.spool
        default = DefaultConfiguration(text)
        self.addCleanup(default.close)
        self.config = DefaultConfiguration.PATH

    def inject(self, args, message=b"Subject: from a user\n\nhello\n", shell_prefix=None):
        command = [self.sendmail] + args
        if shell_prefix:
            command = ["/bin/sh", "-c", shell_prefix + ' exec "$@"', "sh"] + command
        return self.account.run_as_user(command, input=message)

    def test_user_injects_but_cannot_read_list_or_delete(self):
        result = self.inject(["friend@example.net"], shell_prefix="umask 077;")
        self.assertEqual(result.returncode, 0, result.stderr)
        ids = sorted(n for n in os.listdir(os.path.join(self.spool, "queue")) if not n.endswith(".env"))
        self.assertEqual(len(ids), 1)
        path = os.path.join(self.spool, "queue", ids[0])
        st = os.stat(path)
        self.assertEqual(st.st_gid, self.account.gid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)  # whatever the caller's umask
        with open(path, "rb") as f:
            content = f.read()
        self.assertIn(b"(from %s@localhost)" % self.account.user.encode(), content)
        self.assertIn(b"From: Scratch Tester <%s@example.org>" % self.account.user.encode(), content)

        # Neither the files nor the listing nor the management actions are the user's.
        self.assertNotEqual(self.account.run_as_user(["cat", path]).returncode, 0)
        self.assertNotEqual(self.account.run_as_user(["ls", os.path.join(self.spool, "queue")]).returncode, 0)
        listing = self.account.run_as_user([os.path.join(self.workdir, "bin", "leafmail-list"),
                                            "--config", self.config])
        self.assertNotEqual(listing.returncode, 0)
        self.assertNotEqual(self.inject(["-bp"]).returncode, 0)  # -bp drops the group first
        delete = self.account.run_as_user([os.path.join(self.workdir, "bin", "leafmail-list"), "--config",
                                           self.config, "--delete", ids[0]])
        self.assertNotEqual(delete.returncode, 0)
        self.assertTrue(os.path.exists(path))

        # Root (the spool's owner side) sees the entry with the user's uid recorded.
        [entry] = json.loads(subprocess.run([LEAFMAIL_LIST, "--config", self.config, "--json"],
                                            capture_output=True, check=True).stdout)
        self.assertEqual(entry["client_address"], "uid=%d" % self.account.uid)
        self.assertEqual(entry["sender"], "%s@example.org" % self.account.user)

    def test_only_roots_aliases_file_is_honoured_by_the_setgid_injector(self):
        # The aliases file steers where a user's mail goes: with the group privilege only a
        # file root owns and nobody else can write counts (checked on what is read).
        aliases = os.path.join(self.workdir, "aliases")
        with open(aliases, "w") as f:
            f.write("root: friend@example.net\n")
        os.chmod(aliases, 0o644)
        with open(DefaultConfiguration.PATH, "w") as f:
            f.write("spool = %s\nhostname = test.leafmail\ndomain = example.org\naliases = %s\n"
                    % (self.spool, aliases))
        result = self.inject(["root"])
        self.assertEqual(result.returncode, 0, result.stderr)
        [entry] = json.loads(subprocess.run([LEAFMAIL_LIST, "--config", self.config, "--json"],
                                            capture_output=True, check=True).stdout)
        self.assertEqual([r["address"] for r in entry["recipients"]], ["friend@example.net"])

        os.chown(aliases, self.account.uid, -1)  # the user's own file
        result = self.inject(["root"])
        self.assertEqual(result.returncode, EX_CONFIG, result.stderr)
        self.assertIn(b"trusts only a file owned by root", result.stderr)
        os.chown(aliases, 0, -1)
        os.chmod(aliases, 0o666)  # root's, but anyone may write it
        result = self.inject(["someone@example.net"])
        self.assertEqual(result.returncode, EX_CONFIG, result.stderr)
        self.assertEqual(len([n for n in os.listdir(os.path.join(self.spool, "queue"))
                              if not n.endswith(".env")]), 1)

    def test_untrusted_configuration_drops_the_group(self):
        # A configuration the user wrote must not steer the privileged program: it is read
        # only after the group is dropped, so the spool is no longer writable.
        user_config = os.path.join(self.workdir, "user.conf")
        with open(user_config, "w") as f:
            f.write("spool = %s\n" % self.spool)
        os.chown(user_config, self.account.uid, -1)
        result = self.account.run_as_user([self.sendmail, "-C", user_config, "a@example.net"],
                                          input=b"Subject: x\n\nx\n")
        self.assertIn(result.returncode, (EX_NOPERM, 73), result.stderr)
        self.assertEqual([n for n in os.listdir(os.path.join(self.spool, "queue"))], [])


if __name__ == "__main__":
    unittest.main()
