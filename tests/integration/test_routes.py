"""Routes and identities (issue 13): several [route NAME] sections, each its own smarthost
and account, chosen by envelope sender; passwords and OAuth 2.0 tokens from commands;
XOAUTH2 and OAUTHBEARER against an aiosmtpd that checks the SASL framing and the token;
rewrite-sender; leafmail-flush --route and --check; the configuration errors."""

import base64
import json
import os
import re
import unittest

from aiosmtpd.smtp import AuthResult

from harness import LEAFMAIL_FLUSH, LEAFMAIL_LIST, entry_ids, read_entry
from smarthost import Smarthost, _SMTP, free_port
from test_flush import FlushTestCase, message, run_process

WORK_SENDER = "me@work.test"
GMAIL_SENDER = "me@gmail.test"
OTHER_SENDER = "alice@client.test"

XOAUTH2_FRAME = re.compile(rb"user=([^\x01]+)\x01auth=Bearer ([^\x01]+)\x01\x01")
OAUTHBEARER_FRAME = re.compile(rb"n,a=([^,]*),\x01auth=Bearer ([^\x01]+)\x01\x01")


class OAuthSMTP(_SMTP):
    """aiosmtpd with XOAUTH2 and OAUTHBEARER as custom mechanisms (its auth_<NAME> methods):
    the initial response must have exactly the documented framing and carry a token the
    owner knows; a wrong token gets RFC 7628's JSON error challenge, then 535."""

    async def auth_XOAUTH2(self, _, args):
        return await self._oauth("XOAUTH2", XOAUTH2_FRAME, args)

    async def auth_OAUTHBEARER(self, _, args):
        return await self._oauth("OAUTHBEARER", OAUTHBEARER_FRAME, args)

    async def _oauth(self, mechanism, frame, args):
        owner = self.owner
        if len(args) != 2:
            owner.oauth_log.append((mechanism, "no initial response"))
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1], validate=True)
        match = frame.fullmatch(raw)
        if not match:
            owner.oauth_log.append((mechanism, "bad framing", raw))
            return AuthResult(success=False, handled=False,
                              message="501 5.5.2 bad %s framing" % mechanism)
        user, token = match.group(1).decode(), match.group(2).decode()
        owner.oauth_log.append((mechanism, user, token))
        if owner.tokens.get(user) == token:
            self.session.leafmail_user = user
            return AuthResult(success=True)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        answer = await self.challenge_auth(error)
        owner.oauth_answers.append((mechanism, answer))
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 token expired or revoked")


def oauth_smarthost(test, tokens, tls="implicit"):
    # Password users keep aiosmtpd's authenticator on; PLAIN and LOGIN are not offered.
    server = Smarthost(ca=test.ca, tls=tls, users={"unused": "unused"},
                       exclude_mechanisms=("PLAIN", "LOGIN"))
    server.tokens = dict(tokens)
    server.oauth_log = []
    server.oauth_answers = []
    controller = server.controller
    controller.factory = lambda: OAuthSMTP(controller.handler, owner=server,
                                           **controller.SMTP_kwargs)
    server.start()
    test.addCleanup(server.stop)
    return server


class RoutesTestCase(FlushTestCase):

    def write_config(self, text):
        with open(self.flush_config, "w") as f:
            f.write(text)

    def secret_file(self, name, content, mode=0o600):
        path = os.path.join(self.daemon.workdir, name)
        with open(path, "w") as f:
            f.write(content + "\n")
        os.chmod(path, mode)
        return path

    def tls_keys(self, mode="starttls"):
        return "tls = %s\nca-file = %s\n" % (mode, self.ca.ca_cert)

    def run_flush(self, *args):
        command = [LEAFMAIL_FLUSH, "--config", self.flush_config, "--spool", self.spool,
                   "--log", "stderr", "--hostname", "flush.test"]
        return run_process(command + list(args))

    def two_accounts(self, work_command=None, token_command=None, default_port=None,
                     work_port=None, gmail_port=None, extra_default=""):
        """Default route (password file), [route work] (password command, STARTTLS),
        [route gmail] (XOAUTH2 token command, implicit TLS)."""
        password_file = self.secret_file("default-password", "default-pass")
        work_command = work_command or "printf 'work-pass\\n'"
        token_command = token_command or "echo ya29.good-token"
        self.write_config(
            "smarthost = localhost:%d\n" % default_port + self.tls_keys() +
            "auth-user = default-user\nauth-password-file = %s\n" % password_file +
            extra_default +
            "\n[route work]\nsmarthost = localhost:%d\n" % work_port + self.tls_keys() +
            "senders = @work.test\nauth-user = work-user\n"
            "auth-password-command = %s\ntimeout = 3\n" % work_command +
            "\n[route gmail]\nsmarthost = localhost:%d\n" % gmail_port +
            self.tls_keys("tls") +
            "senders = me@gmail.test\nauth-user = me@gmail.test\n"
            "auth-mechanisms = xoauth2\nauth-token-command = %s\n" % token_command)


class RouteChoiceTests(RoutesTestCase):

    def test_three_senders_each_through_its_own_route_with_its_own_credentials(self):
        default = self.smarthost(tls="starttls", users={"default-user": "default-pass"})
        work = self.smarthost(tls="starttls", users={"work-user": "work-pass"})
        gmail = oauth_smarthost(self, {"me@gmail.test": "ya29.good-token"})
        self.two_accounts(default_port=default.port, work_port=work.port, gmail_port=gmail.port)
        self.queue(message("work"), sender=WORK_SENDER)
        self.queue(message("gmail"), sender=GMAIL_SENDER)
        self.queue(message("other"), sender=OTHER_SENDER)

        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 0, err)
        self.assert_summary(out, 3, 0, 0)
        self.assertEqual(entry_ids(self.spool), [])
        for server, sender, user in ((default, OTHER_SENDER, "default-user"),
                                     (work, WORK_SENDER, "work-user"),
                                     (gmail, GMAIL_SENDER, "me@gmail.test")):
            self.assertEqual(len(server.messages), 1, sender)  # once each
            self.assertEqual(server.messages[0].mail_from, sender)
            self.assertEqual(server.messages[0].authenticated_as, user)
        # aiosmtpd records STARTTLS only; the gmail route's implicit TLS is proven by its
        # handshake (the port speaks nothing else).
        self.assertTrue(default.messages[0].tls)
        self.assertTrue(work.messages[0].tls)
        self.assertEqual(gmail.oauth_log, [("XOAUTH2", "me@gmail.test", "ya29.good-token")])
        # No secret in the log, even with --verbose (checked on a second, verbose run).
        self.queue(message("again"), sender=WORK_SENDER)
        rc, out, err, _, _ = self.run_flush("--verbose")
        self.assertEqual(rc, 0, err)
        for secret in ("work-pass", "default-pass", "ya29.good-token",
                       base64.b64encode(b"\0work-user\0work-pass").decode()):
            self.assertNotIn(secret, err + out)

    def test_oauthbearer_framing_and_token(self):
        default = self.smarthost(tls="starttls")
        gmail = oauth_smarthost(self, {"me@gmail.test": "tok-123"})
        self.write_config(
            "smarthost = localhost:%d\n" % default.port + self.tls_keys() +
            "[route gmail]\nsmarthost = localhost:%d\n" % gmail.port + self.tls_keys("tls") +
            "senders = @gmail.test\nauth-user = me@gmail.test\n"
            "auth-mechanisms = oauthbearer xoauth2\nauth-token-command = echo tok-123\n")
        self.queue(message("bearer"), sender=GMAIL_SENDER)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 0, err)
        self.assertEqual(gmail.oauth_log, [("OAUTHBEARER", "me@gmail.test", "tok-123")])
        self.assertEqual(len(gmail.messages), 1)

    def test_one_route_down_defers_only_its_own_mail(self):
        default = self.smarthost(tls="starttls", users={"default-user": "default-pass"})
        gmail = oauth_smarthost(self, {"me@gmail.test": "ya29.good-token"})
        self.two_accounts(default_port=default.port, work_port=free_port(), gmail_port=gmail.port)
        work_content = self.queue(message("work"), sender=WORK_SENDER)
        self.queue(message("gmail"), sender=GMAIL_SENDER)
        self.queue(message("other"), sender=OTHER_SENDER)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 75, err)
        self.assert_summary(out, 2, 1, 0)
        self.assertEqual(len(default.messages), 1)
        self.assertEqual(len(gmail.messages), 1)
        left = entry_ids(self.spool)
        self.assertEqual(len(left), 1)
        self.assertEqual(read_entry(self.spool, left[0])[0], work_content)
        self.assertRegex(err, r"event=connection-failed route=work")

    def test_flush_one_route_only(self):
        default = self.smarthost(tls="starttls", users={"default-user": "default-pass"})
        work = self.smarthost(tls="starttls", users={"work-user": "work-pass"})
        gmail = oauth_smarthost(self, {"me@gmail.test": "ya29.good-token"})
        self.two_accounts(default_port=default.port, work_port=work.port, gmail_port=gmail.port)
        self.queue(message("work"), sender=WORK_SENDER)
        self.queue(message("other"), sender=OTHER_SENDER)
        rc, out, err, _, _ = self.run_flush("--route", "work")
        self.assertEqual(rc, 0, err)
        self.assert_summary(out, 1, 0, 0)
        self.assertEqual(len(work.messages), 1)
        self.assertEqual(default.messages, [])
        self.assertEqual(len(entry_ids(self.spool)), 1)
        rc, out, err, _, _ = self.run_flush("--route", "nope")
        self.assertEqual(rc, 78, err)
        self.assertIn("nope", err)

    def test_dry_run_names_each_entry_route(self):
        self.two_accounts(default_port=free_port(), work_port=free_port(),
                          gmail_port=free_port())
        self.queue(message("work"), sender=WORK_SENDER)
        self.queue(message("other"), sender=OTHER_SENDER)
        rc, out, err, _, _ = self.run_flush("--dry-run")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"from=<me@work.test> .* via=localhost:\d+ route=work\n")
        self.assertRegex(out, r"from=<alice@client.test> .* via=localhost:\d+ route=default\n")


    def test_list_shows_each_entry_route(self):
        self.two_accounts(default_port=free_port(), work_port=free_port(),
                          gmail_port=free_port())
        self.queue(message("work"), sender=WORK_SENDER)
        self.queue(message("other"), sender=OTHER_SENDER)
        command = [LEAFMAIL_LIST, "--config", self.flush_config, "--spool", self.spool]
        rc, out, err, _, _ = run_process(command + ["--json"])
        self.assertEqual(rc, 0, err)
        routes = {e["sender"]: e["route"] for e in json.loads(out)}
        self.assertEqual(routes, {WORK_SENDER: "work", OTHER_SENDER: "default"})
        rc, out, err, _, _ = run_process(command)
        self.assertEqual(rc, 0, err)
        self.assertIn("from <me@work.test> via route work", out)
        self.assertNotIn("via route default", out)


class SecretCommandTests(RoutesTestCase):

    def setUp(self):
        super().setUp()
        self.default = self.smarthost(tls="starttls", users={"default-user": "default-pass"})
        self.work = self.smarthost(tls="starttls", users={"work-user": "work-pass"})
        self.gmail = oauth_smarthost(self, {"me@gmail.test": "ya29.good-token"})

    def accounts(self, **kwargs):
        self.two_accounts(default_port=self.default.port, work_port=self.work.port,
                          gmail_port=self.gmail.port, **kwargs)

    def test_failing_password_command_defers_its_route_and_logs_its_stderr(self):
        self.accounts(work_command="echo vault locked >&2; exit 3")
        self.queue(message("work"), sender=WORK_SENDER)
        self.queue(message("other"), sender=OTHER_SENDER)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 75, err)
        self.assert_summary(out, 1, 1, 0)
        self.assertEqual(self.work.sessions, 0)  # nothing was sent through it
        self.assertEqual(len(self.default.messages), 1)
        self.assertRegex(err, r"event=route-deferred route=work reason=.*exit status 3")
        self.assertRegex(err, r"secret-command-stderr .*vault locked")

    def test_password_command_without_output_defers(self):
        self.accounts(work_command="true")
        self.queue(message("work"), sender=WORK_SENDER)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 75, err)
        self.assertRegex(err, r"route-deferred route=work .*printed nothing")

    def test_password_command_over_its_timeout_is_killed_and_defers(self):
        marker = os.path.join(self.daemon.workdir, "still-running")
        self.accounts(work_command="sleep 20; touch %s" % marker)
        self.queue(message("work"), sender=WORK_SENDER)
        rc, out, err, seconds, _ = self.run_flush()
        self.assertEqual(rc, 75, err)
        self.assertLess(seconds, 15)
        self.assertRegex(err, r"route-deferred route=work .*timeout")
        self.assertFalse(os.path.exists(marker))

    def test_refused_token_is_answered_and_defers_with_the_servers_reason(self):
        self.accounts(token_command="echo ya29.expired")
        self.queue(message("gmail"), sender=GMAIL_SENDER)
        self.queue(message("other"), sender=OTHER_SENDER)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 75, err)
        self.assert_summary(out, 1, 1, 0)
        # XOAUTH2: the JSON error challenge is answered with an empty response.
        self.assertEqual(self.gmail.oauth_answers, [("XOAUTH2", b"")])
        self.assertRegex(err, r"connection-failed route=gmail .*535 5.7.8 token expired")
        self.assertIn("401", err)
        self.assertNotIn("ya29.expired", err)

    def test_refused_oauthbearer_token_is_answered_with_a_lone_ctrl_a(self):
        self.write_config(
            "smarthost = localhost:%d\n" % self.default.port + self.tls_keys() +
            "[route gmail]\nsmarthost = localhost:%d\n" % self.gmail.port + self.tls_keys("tls") +
            "senders = @gmail.test\nauth-user = me@gmail.test\n"
            "auth-mechanisms = oauthbearer\nauth-token-command = echo stale\n")
        self.queue(message("bearer"), sender=GMAIL_SENDER)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 75, err)
        self.assertEqual(self.gmail.oauth_answers, [("OAUTHBEARER", b"\x01")])

    def test_failing_token_command_defers(self):
        self.accounts(token_command="exit 1")
        self.queue(message("gmail"), sender=GMAIL_SENDER)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 75, err)
        self.assertRegex(err, r"route-deferred route=gmail .*auth-token-command failed")
        self.assertEqual(self.gmail.oauth_log, [])


class RewriteTests(RoutesTestCase):

    def test_local_senders_get_the_routes_address_others_are_left_alone(self):
        server = self.smarthost(tls="starttls")
        self.write_config("smarthost = localhost:%d\n" % server.port + self.tls_keys() +
                          "rewrite-sender = me@example.org\n")
        for sender in ("root@localhost", "cron@flush.test", OTHER_SENDER):
            self.queue(message("from " + sender), sender=sender)
        rc, out, err, _, _ = self.run_flush()
        self.assertEqual(rc, 0, err)
        senders = sorted(m.mail_from for m in server.messages)
        self.assertEqual(senders, sorted(["me@example.org", "me@example.org", OTHER_SENDER]))


class CheckTests(RoutesTestCase):

    def test_check_reports_one_line_per_route(self):
        default = self.smarthost(tls="starttls", users={"default-user": "default-pass"})
        work = self.smarthost(tls="starttls", users={"work-user": "work-pass"})
        gmail = oauth_smarthost(self, {"me@gmail.test": "ya29.good-token"})
        self.two_accounts(default_port=default.port, work_port=work.port, gmail_port=gmail.port)
        self.queue(message("stays"), sender=WORK_SENDER)
        before = self.spool_files()
        rc, out, err, _, _ = self.run_flush("--check")
        self.assertEqual(rc, 0, err + out)
        lines = out.splitlines()
        self.assertEqual(len(lines), 3, out)
        self.assertRegex(lines[0], r"^route work: ok \(localhost:%d, STARTTLS TLSv1\.[23], "
                                   r"AUTH PLAIN\)$" % work.port)
        self.assertRegex(lines[1], r"^route gmail: ok \(localhost:%d, TLS TLSv1\.[23], "
                                   r"AUTH XOAUTH2\)$" % gmail.port)
        self.assertRegex(lines[2], r"^route default: ok \(localhost:%d, STARTTLS" % default.port)
        self.assertEqual(self.spool_files(), before)  # nothing sent, nothing changed
        self.assertEqual(work.messages, [])

    def test_check_wrong_password_and_unreachable_host(self):
        default = self.smarthost(tls="starttls", users={"default-user": "default-pass"})
        work = self.smarthost(tls="starttls", users={"work-user": "other"})
        self.two_accounts(default_port=default.port, work_port=work.port,
                          gmail_port=free_port())
        rc, out, err, _, _ = self.run_flush("--check")
        self.assertEqual(rc, 75, err + out)
        self.assertRegex(out, r"route work: failed \(localhost:%d: 535" % work.port)
        self.assertRegex(out, r"route gmail: failed \(localhost:\d+: 451 4\.4\.1 cannot connect")
        self.assertRegex(out, r"route default: ok")
        rc, out, err, _, _ = self.run_flush("--check", "--route", "default")
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(len(out.splitlines()), 1)


class ConfigErrorTests(RoutesTestCase):

    def test_each_configuration_error_names_file_line_and_key(self):
        base = "smarthost = localhost:25\n"
        cases = [
            ("[route work]\nsmarthost = a:25\ncolour = blue\n", 4, "colour"),
            ("[route work]\ntls = none\n", 2, "smarthost"),
            ("[route work]\nsmarthost = a:25\n[route work]\nsmarthost = b:25\n", 4, "work"),
            ("[route work]\nsmarthost = a:25\nsenders = work.test\n", 4, "senders"),
            ("[route work]\nsmarthost = a:25\nauth-user = me\n", 4, "auth-user"),
            ("[route work]\nsmarthost = a:25\nauth-mechanisms = gssapi\n", 4, "auth-mechanisms"),
        ]
        for text, line, key in cases:
            with self.subTest(text=text):
                self.write_config(base + text)
                for extra in ((), ("--check",)):
                    rc, out, err, _, _ = self.run_flush(*extra)
                    self.assertEqual(rc, 78, err)
                    self.assertIn("%s:%d" % (self.flush_config, line), err)
                    self.assertIn(key, err)


if __name__ == "__main__":
    unittest.main()
