"""The Debian package, for real: `cpack -G DEB` in this build directory, lintian, then as root
on this machine (only when no other MTA is installed: the package conflicts with them)
dpkg -i, mail from a throwaway unprivileged user through mail(1) and `sendmail -t`, `mailq`,
a flush into a test smarthost (aiosmtpd on a free loopback port, named in /etc/leafmail.conf
for the time of the test), dpkg -r (spool, configuration and user stay) and dpkg --purge,
after which the machine is as before: files, users, groups, statoverrides, systemd state.

It changes the machine it runs on, so it only runs as root; under CI=true it fails instead
of skipping when it cannot run."""

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
import unittest

from harness import require, wait_until
from smarthost import Smarthost

IN_CI = os.environ.get("CI") == "true"
BUILD_DIR = os.environ.get("LEAFMAIL_BUILD_DIR", "")
VERSION = os.environ.get("LEAFMAIL_VERSION", "")
SPOOL = "/var/spool/leafmail"
AREAS = ("tmp", "queue", "hold", "failed", "corrupt")
PROGRAMS = ("leafmaild", "leafmail-flush", "leafmail-list", "leafmail-sendmail")
CONFFILES = ("/etc/leafmail.conf", "/etc/ppp/ip-up.d/leafmail", "/etc/NetworkManager/dispatcher.d/90-leafmail")
# What a package install touches; compared before and after.
WATCHED = ("/etc", "/usr/sbin", "/usr/bin", "/lib/systemd/system", "/usr/share/doc/leafmail",
           "/usr/share/man/man5", "/usr/share/man/man8", "/var/spool", "/var/lib/systemd")
ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid", "/etc/subgid")
STEP_TIMEOUT = 600


def run(argv, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", STEP_TIMEOUT)
    return subprocess.run(argv, **kwargs)


def run_retrying(argv, **kwargs):
    """run(), again a few times when the account or package databases were locked by another
    program (useradd, groupadd and dpkg refuse at once: "cannot lock ...; try again later")."""
    for attempt in range(6):
        result = run(argv, **kwargs)
        if result.returncode == 0 or not re.search(r"(?i)cannot lock|try again later|lock was locked", text(result)):
            return result
        time.sleep(2 + attempt)
    return result


def text(result):
    return (result.stdout or b"").decode(errors="replace") + (result.stderr or b"").decode(errors="replace")


def installed_mtas():
    """Installed packages that provide mail-transport-agent, and leafmail itself."""
    result = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package}|${Provides}\n"])
    found = []
    for line in result.stdout.decode().splitlines():
        status, package, provides = (line.split("|") + ["", ""])[:3]
        if status.strip() in ("", "un", "pn"):  # not installed, or only purged memory
            continue
        if package == "leafmail" or "mail-transport-agent" in provides:
            found.append(package)
    return found


def why_it_cannot_run():
    if os.geteuid() != 0:
        return "needs root (it installs the package on this machine)"
    if not BUILD_DIR or not VERSION:
        return "LEAFMAIL_BUILD_DIR or LEAFMAIL_VERSION not set (run through ctest)"
    for tool in ("cpack", "dpkg", "dpkg-deb", "dpkg-shlibdeps", "mail", "useradd", "runuser"):
        if not shutil.which(tool):
            return "%s is missing (bash .ci/deps)" % tool
    mtas = installed_mtas()
    if mtas:
        return "another MTA is installed (%s): the package would replace it" % ", ".join(mtas)
    if os.path.lexists("/usr/sbin/sendmail"):
        return "/usr/sbin/sendmail exists outside any package"
    return None


def tree(paths):
    """{path: kind} below the given paths (lock and temporary files of other programs left out)."""
    found = {}
    for top in paths:
        if not os.path.lexists(top):
            continue
        found[top] = "dir"
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                if name.endswith((".lock", "+")):  # locks and shadow-utils temporaries
                    continue
                path = os.path.join(root, name)
                found[path] = "link" if os.path.islink(path) else "dir" if os.path.isdir(path) else "file"
    return found


def account_lines(names):
    """Lines of the account databases that name one of names."""
    lines = []
    for path in ACCOUNT_FILES:
        if os.path.exists(path):
            with open(path) as f:
                lines += [path + ":" + line for line in f
                          if any(re.search(r"(^|[:,])%s([:,]|$)" % re.escape(n), line.strip()) for n in names)]
    return lines


def statoverrides():
    return run(["dpkg-statoverride", "--list"]).stdout.decode()


class PackageTest(unittest.TestCase):
    def setUp(self):
        reason = why_it_cannot_run()
        if reason:
            if IN_CI:
                self.fail("CI=true: the package test cannot run: " + reason)
            require(self, False, reason)
        self.user = "lmpkg" + str(os.getpid())[-6:]

    def build_package(self):
        arch = run(["dpkg", "--print-architecture"], check=True).stdout.decode().strip()
        deb = os.path.join(BUILD_DIR, "leafmail_%s_%s.deb" % (VERSION, arch))
        if os.path.exists(deb):
            os.unlink(deb)
        result = run(["cpack", "-G", "DEB"], cwd=BUILD_DIR)
        self.assertEqual(result.returncode, 0, text(result))
        self.assertTrue(os.path.isfile(deb), "cpack made no %s: %s" % (deb, text(result)))
        return deb

    def check_control(self, deb):
        fields = {}
        for name in ("Package", "Version", "Provides", "Conflicts", "Replaces", "Depends"):
            fields[name] = run(["dpkg-deb", "-f", deb, name], check=True).stdout.decode().strip()
        self.assertEqual(fields["Package"], "leafmail")
        self.assertEqual(fields["Version"], VERSION)
        for name in ("Provides", "Conflicts", "Replaces"):
            self.assertIn("mail-transport-agent", fields[name], name)
        # dpkg-shlibdeps ran: the C library and the TLS library come from it.
        self.assertRegex(fields["Depends"], r"\blibc6\b")
        self.assertRegex(fields["Depends"], r"\blibssl3\b")
        conffiles = run(["dpkg-deb", "-I", deb, "conffiles"], check=True).stdout.decode().split()
        self.assertEqual(sorted(conffiles), sorted(CONFFILES))
        listing = run(["dpkg-deb", "-c", deb], check=True).stdout.decode()
        for path in ["./usr/sbin/" + p for p in PROGRAMS] + [
                "./usr/sbin/sendmail -> leafmail-sendmail", "./usr/bin/mailq -> ../sbin/leafmail-sendmail",
                "./usr/bin/newaliases -> ../sbin/leafmail-sendmail", "./lib/systemd/system/leafmaild.service",
                "./lib/systemd/system/leafmail-flush.timer", "./usr/share/man/man5/leafmail.conf.5.gz",
                "./usr/share/man/man8/leafmail-sendmail.8.gz", "./etc/leafmail.conf",
                "./etc/ppp/ip-up.d/leafmail", "./etc/NetworkManager/dispatcher.d/90-leafmail"]:
            self.assertIn(path, listing)

    def lint(self, deb):
        if not shutil.which("lintian"):
            if IN_CI:
                self.fail("CI=true: lintian is missing (bash .ci/deps)")
            return
        result = run(["lintian", "--tag-display-limit", "0", deb])
        errors = [line for line in text(result).splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], text(result))

    def check_installed(self):
        leafmail_user, leafmail_group = pwd.getpwnam("leafmail"), grp.getgrnam("leafmail")
        self.assertEqual(leafmail_user.pw_gid, leafmail_group.gr_gid)
        self.assertLess(leafmail_user.pw_uid, 1000, "a system user")
        for path in [SPOOL] + [os.path.join(SPOOL, a) for a in AREAS]:
            st = os.lstat(path)
            self.assertTrue(stat.S_ISDIR(st.st_mode), path)
            self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid),
                             (0o2770, leafmail_user.pw_uid, leafmail_group.gr_gid), path)
        st = os.stat("/usr/sbin/leafmail-sendmail")
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), (0o2755, 0, leafmail_group.gr_gid))
        self.assertIn("root leafmail 2755 /usr/sbin/leafmail-sendmail", statoverrides())
        for link in ("/usr/sbin/sendmail", "/usr/bin/mailq", "/usr/bin/newaliases"):
            self.assertEqual(os.path.realpath(link), "/usr/sbin/leafmail-sendmail", link)
        # The receiver is enabled; no flush runs before a smarthost is configured.
        self.assertTrue(os.path.islink("/etc/systemd/system/multi-user.target.wants/leafmaild.service"))
        self.assertFalse(os.path.lexists("/etc/systemd/system/timers.target.wants/leafmail-flush.timer"))
        conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}", "leafmail"], check=True).stdout.decode()
        for path in CONFFILES:
            self.assertIn(path, conffiles)

    def purge(self):
        if run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "leafmail"]).stdout.decode().strip() not in ("", "un"):
            run_retrying(["dpkg", "--purge", "leafmail"])

    def test_the_package_installs_carries_mail_and_purges_clean(self):
        deb = self.build_package()
        self.check_control(deb)
        self.lint(deb)

        files_before = tree(WATCHED)
        accounts_before = account_lines(["leafmail", self.user])
        overrides_before = statoverrides()
        self.assertEqual(accounts_before, [], "leafmail or the test user already exists")

        self.addCleanup(self.purge)
        result = run_retrying(["dpkg", "-i", deb], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        self.assertEqual(result.returncode, 0, text(result))
        self.check_installed()

        # An unprivileged user hands in mail, as cron and mail(1) do.
        result = run_retrying(["useradd", "--no-create-home", "--shell", "/bin/sh", self.user])
        self.assertEqual(result.returncode, 0, text(result))
        self.addCleanup(run_retrying, ["userdel", self.user])
        result = run(["runuser", "-u", self.user, "--", "mail", "-s", "package test via mail", "bob@example.net"],
                     input=b"hello from mail(1)\n", cwd="/")
        self.assertEqual(result.returncode, 0, text(result))
        result = run(["runuser", "-u", self.user, "--", "sendmail", "-t"], cwd="/",
                     input=b"To: carol@example.net\nSubject: package test via sendmail\n\nhello from sendmail -t\n")
        self.assertEqual(result.returncode, 0, text(result))
        # The user cannot look into the spool (trust model); root's mailq shows both.
        result = run(["runuser", "-u", self.user, "--", "ls", os.path.join(SPOOL, "queue")], cwd="/")
        self.assertNotEqual(result.returncode, 0, "the spool is readable by any user")
        result = run(["mailq"], cwd="/")
        listing = text(result)
        self.assertEqual(result.returncode, 0, listing)
        self.assertIn("<bob@example.net>", listing)
        self.assertIn("<carol@example.net>", listing)
        self.assertRegex(listing, r"(?m)^2 messages")
        self.assertIn("from <%s@" % self.user, listing)

        # The smarthost, named in the conffile for the time of the test.
        smarthost = Smarthost().start()
        self.addCleanup(smarthost.stop)
        with open("/etc/leafmail.conf", "a") as f:
            f.write("\n# package test\nsmarthost = 127.0.0.1:%d\ntls = none\n" % smarthost.port)
        result = run(["runuser", "-u", "leafmail", "--", "leafmail-flush", "--log", "stderr"], cwd="/")
        self.assertEqual(result.returncode, 0, text(result))
        self.assertIn("sent 2, deferred 0, failed 0", text(result))
        self.assertTrue(smarthost.wait_for_messages(2), "the smarthost got %d messages" % len(smarthost.messages))
        contents = b"".join(m.content for m in smarthost.messages)
        self.assertIn(b"hello from mail(1)", contents)
        self.assertIn(b"hello from sendmail -t", contents)
        self.assertEqual(sorted(r for m in smarthost.messages for r in m.rcpt_tos),
                         ["bob@example.net", "carol@example.net"])
        self.assertEqual(os.listdir(os.path.join(SPOOL, "queue")), [])

        # Installing again (an upgrade) keeps the edited conffile.
        result = run_retrying(["dpkg", "-i", deb], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, text(result))
        with open("/etc/leafmail.conf") as f:
            self.assertIn("smarthost = 127.0.0.1:%d" % smarthost.port, f.read())

        # remove keeps the spool (with what waits in it), the configuration and the user.
        result = run(["runuser", "-u", self.user, "--", "sendmail", "dave@example.net"], cwd="/",
                     input=b"Subject: waits\n\nstill queued at removal\n")
        self.assertEqual(result.returncode, 0, text(result))
        result = run_retrying(["dpkg", "-r", "leafmail"])
        self.assertEqual(result.returncode, 0, text(result))
        self.assertEqual(len(os.listdir(os.path.join(SPOOL, "queue"))), 1)
        self.assertTrue(os.path.exists("/etc/leafmail.conf"))
        self.assertFalse(os.path.exists("/usr/sbin/leafmail-sendmail"))
        pwd.getpwnam("leafmail")

        # purge leaves nothing behind.
        result = run_retrying(["dpkg", "--purge", "leafmail"])
        self.assertEqual(result.returncode, 0, text(result))
        self.assertEqual(run_retrying(["userdel", self.user]).returncode, 0)
        self.assertTrue(wait_until(lambda: not os.path.exists(SPOOL), timeout=5))
        self.assertEqual(account_lines(["leafmail", self.user]), [])
        self.assertEqual(statoverrides(), overrides_before)
        files_after = tree(WATCHED)
        self.assertEqual(sorted(set(files_after) - set(files_before)), [], "left behind")
        self.assertEqual(sorted(set(files_before) - set(files_after)), [], "removed by mistake")
        self.assertFalse([name for name in os.listdir("/var/lib/dpkg/info") if name.startswith("leafmail.")])


if __name__ == "__main__":
    unittest.main()
