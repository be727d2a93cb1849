"""Shared pieces of the leafmail-list / leafmail-sendmail integration tests: a fresh spool and
configuration file per test, running the two programs against it, and a scratch user and
group for the tests of the setgid install model (root only; removed afterwards)."""

import json
import os
import pwd
import grp
import shutil
import subprocess
import tempfile

from harness import LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, entry_ids, read_entry  # noqa: F401

AREAS = ("tmp", "queue", "hold", "failed", "corrupt")


class Spool:
    """A temporary spool with its configuration file (spool, hostname, domain)."""

    def __init__(self, config_extra=""):
        self._tmp = tempfile.TemporaryDirectory(prefix="leafmail-tools-")
        self.workdir = self._tmp.name
        self.root = os.path.join(self.workdir, "spool")
        for area in AREAS:
            os.makedirs(os.path.join(self.root, area), exist_ok=True)
        self.config = os.path.join(self.workdir, "leafmail.conf")
        with open(self.config, "w") as f:
            f.write("spool = %s\nhostname = test.leafmail\ndomain = example.org\n%s" % (self.root, config_extra))

    def close(self):
        self._tmp.cleanup()

    def sendmail(self, args, message=b"", program=None, **kwargs):
        """Runs leafmail-sendmail -C <our config> args with message on stdin."""
        command = [program or LEAFMAIL_SENDMAIL, "-C", self.config] + list(args)
        return subprocess.run(command, input=message, capture_output=True, timeout=60, **kwargs)

    def list(self, args=(), **kwargs):
        command = [LEAFMAIL_LIST, "--config", self.config] + list(args)
        return subprocess.run(command, capture_output=True, timeout=120, **kwargs)

    def list_json(self, args=()):
        result = self.list(["--json"] + list(args))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def ids(self, area="queue"):
        return entry_ids(self.root, area)

    def content(self, entry_id, area="queue"):
        return read_entry(self.root, entry_id, area)[0]

    def envelope(self, entry_id, area="queue"):
        return read_entry(self.root, entry_id, area)[1]


def header_of(content):
    """The header block of a spooled message (bytes, CRLF lines), without the empty line."""
    end = content.find(b"\r\n\r\n")
    return content[:end + 2] if end >= 0 else content


def header_names(content):
    return [line.split(b":", 1)[0].lower() for line in header_of(content).split(b"\r\n")
            if line and line[:1] not in (b" ", b"\t")]


class ScratchAccount:
    """A user (not in the group) and a group, created with useradd/groupadd; root only."""

    def __init__(self):
        suffix = str(os.getpid())[-6:]
        self.user = "lmtu" + suffix
        self.group = "lmtg" + suffix
        self._created_user = self._created_group = False
        subprocess.run(["groupadd", self.group], check=True, capture_output=True)
        self._created_group = True
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--comment", "Scratch Tester,,,", "--user-group", self.user],
                       check=True, capture_output=True)
        self._created_user = True
        self.uid = pwd.getpwnam(self.user).pw_uid
        self.gid = grp.getgrnam(self.group).gr_gid

    def run_as_user(self, command, **kwargs):
        """Runs command as the scratch user (runuser, else setpriv), no supplementary groups."""
        if shutil.which("runuser"):
            wrapped = ["runuser", "-u", self.user, "--"] + command
        else:
            pw = pwd.getpwnam(self.user)
            wrapped = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                       "--init-groups", "--"] + command
        return subprocess.run(wrapped, capture_output=True, timeout=60, **kwargs)

    def close(self):
        if self._created_user:
            subprocess.run(["userdel", self.user], capture_output=True)
        if self._created_group:
            subprocess.run(["groupdel", self.group], capture_output=True)


class DefaultConfiguration:
    """Writes the compiled-in default configuration (/etc/leafmail.conf) for the length of a
    test, the only file the setgid injector trusts for users other than root; restores what
    was there before. An flock serializes the tests that need it (ctest -j runs suites at
    once). Root only."""

    PATH = "/etc/leafmail.conf"
    LOCK = "/run/leafmail-test-default-config.lock"

    def __init__(self, text):
        import fcntl
        self._lock = open(self.LOCK, "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._saved = None
        if os.path.lexists(self.PATH):
            with open(self.PATH, "rb") as f:
                self._saved = f.read()
        with open(self.PATH, "w") as f:
            f.write(text)
        os.chmod(self.PATH, 0o644)

    def close(self):
        try:
            if self._saved is None:
                os.unlink(self.PATH)
            else:
                with open(self.PATH, "wb") as f:
                    f.write(self._saved)
        finally:
            self._lock.close()  # releases the flock
