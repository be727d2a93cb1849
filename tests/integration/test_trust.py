"""The spool as a trust boundary (issue 10), on the installed layout: a setgid
leafmail-sendmail, a 2770 spool owned by a scratch `leafmail` account, an unprivileged
scratch user, and root starting the daemon and running flushes. Each test reproduces one
finding and checks that nothing outside the spool is touched and nothing forged gets in.
Runs as root; under CI=true a missing precondition fails instead of skipping."""

import ctypes
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import LEAFMAIL_FLUSH, LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, LEAFMAILD, Daemon, entry_ids, require
from tools_support import ScratchAccount

EX_NOPERM, EX_TEMPFAIL, EX_CONFIG = 77, 75, 78
AREAS = ("tmp", "queue", "hold", "failed", "corrupt")
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def have_aiosmtpd():
    try:
        import aiosmtpd  # noqa: F401
        return True
    except ImportError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_id(n):
    return "%016x-%08x-%04x" % (0x1000 + n, 1, n)


class OwnerAccount:
    """The scratch `leafmail` account: a user with its own group; removed afterwards."""

    def __init__(self):
        self.user = "lmto" + str(os.getpid())[-6:]
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group",
                        self.user], check=True, capture_output=True)
        entry = pwd.getpwnam(self.user)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.group = grp.getgrgid(self.gid).gr_name

    def run(self, command, **kwargs):
        kwargs.setdefault("timeout", 60)
        return subprocess.run(["setpriv", "--reuid=%d" % self.uid, "--regid=%d" % self.gid, "--clear-groups",
                               "--"] + command, capture_output=True, **kwargs)

    def close(self):
        subprocess.run(["userdel", self.user], capture_output=True)


class InstalledLayout(unittest.TestCase):
    """Fresh per test: workdir (0755) with bin/ (setgid sendmail), spool/ set up as the
    install rules do (owner:group, 2770 directories, no flush.lock), leafmail.conf (root,
    0644), a victim directory only root may read, and the two scratch accounts."""

    def setUp(self):
        require(self, os.geteuid() == 0, "needs root")
        require(self, all(shutil.which(p) for p in ("useradd", "userdel", "groupdel", "runuser", "setpriv")),
                "needs useradd, userdel, groupdel, runuser and setpriv")
        self.owner = OwnerAccount()
        self.addCleanup(self.owner.close)
        self.user = ScratchAccount()
        self.addCleanup(self.user.close)
        self.workdir = tempfile.mkdtemp(prefix="leafmail-trust-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        os.chmod(self.workdir, 0o755)
        bindir = os.path.join(self.workdir, "bin")
        os.makedirs(bindir)
        for program in (LEAFMAIL_SENDMAIL, LEAFMAIL_LIST, LEAFMAIL_FLUSH):
            shutil.copy(shutil.which(program) or program, bindir)
        self.sendmail = os.path.join(bindir, os.path.basename(LEAFMAIL_SENDMAIL))
        os.chown(self.sendmail, 0, self.owner.gid)
        os.chmod(self.sendmail, 0o2755)  # after chown: a chown clears the setgid bit
        self.spool = os.path.join(self.workdir, "spool")
        for area in ("",) + AREAS:
            path = os.path.join(self.spool, area)
            os.makedirs(path, exist_ok=True)
            os.chown(path, self.owner.uid, self.owner.gid)
            os.chmod(path, 0o2770)
        self.victim = os.path.join(self.workdir, "victim")
        os.makedirs(self.victim)
        os.chmod(self.victim, 0o700)
        self.precious = os.path.join(self.victim, "precious")
        with open(self.precious, "w") as f:
            f.write("root's own\n")
        os.chmod(self.precious, 0o600)
        self.config = self.write_config("leafmail.conf")

    def write_config(self, name, extra="", owner=0):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write("spool = %s\nhostname = real.example\ndomain = example.org\nuser = %s\ntls = none\n%s"
                    % (self.spool, self.owner.user, extra))
        os.chown(path, owner, -1)
        os.chmod(path, 0o644)
        return path

    def names(self, area):
        return sorted(os.listdir(os.path.join(self.spool, area)))

    def inject_as_root(self, subject="hello", recipient="bob@remote.test"):
        result = subprocess.run([self.sendmail, "-C", self.config, recipient],
                                input=b"Subject: %s\n\nbody\n" % subject.encode(), capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)

    def flush_as_root(self, *args, timeout=60):
        return subprocess.run([LEAFMAIL_FLUSH, "--config", self.config, "--log", "stderr"] + list(args),
                              capture_output=True, timeout=timeout)

    def assert_victim_untouched(self):
        st = os.stat(self.precious)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, 0, 0o600))
        with open(self.precious) as f:
            self.assertEqual(f.read(), "root's own\n")

    def daemon(self):
        """leafmaild on this spool, started as root with user = the owner (not yet started)."""
        workdir = os.path.join(self.workdir, "daemon")
        os.makedirs(workdir, exist_ok=True)
        daemon = Daemon(config="user = %s\n" % self.owner.user, workdir=workdir)
        daemon.spool = self.spool
        return daemon

    def smarthost(self):
        require(self, have_aiosmtpd(), "python3-aiosmtpd not installed")
        from smarthost import Smarthost
        server = Smarthost(tls="none").start()
        self.addCleanup(server.stop)
        return server


class InjectorTrust(InstalledLayout):
    """Finding 1: the injector trusts only root's configuration."""

    def test_proc_self_cmdline_as_configuration_is_refused_and_leaves_nothing(self):
        planted = os.path.join(self.spool, "queue", "planted")
        argv0 = ("#\nspool = %s\nhostname = forged.example\nmax-message-size = 5G\n#" % planted)
        script = "import os, sys; os.execv(sys.argv[1], [sys.argv[2]] + sys.argv[3:])"
        result = self.user.run_as_user(["python3", "-c", script, self.sendmail, argv0,
                                        "-C", "/proc/self/cmdline", "bob@remote.test"],
                                       input=b"Subject: eve\n\nx\n")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"/proc/self/cmdline", result.stderr)
        for area in AREAS:
            self.assertEqual(self.names(area), [], area)
        self.assertFalse(os.path.lexists(planted))

    def test_own_configuration_cannot_raise_limits_or_forge_names(self):
        big = b"Subject: big\n\n" + b"x" * 4096 + b"\n"
        for owner in (self.user.uid, 0):  # the user's file, and a root file that is not the default
            forged = self.write_config("forged-%d.conf" % owner,
                                       "hostname = forged.example\nmax-message-size = 5G\n", owner=owner)
            with open(forged) as f:
                text = f.read().replace("hostname = real.example\n", "")
            with open(forged, "w") as f:
                f.write(text)
            result = self.user.run_as_user([self.sendmail, "-C", forged, "bob@remote.test"], input=big)
            self.assertEqual(result.returncode, EX_NOPERM, result.stderr)
            self.assertEqual(self.names("queue"), [])
            self.assertEqual(self.names("tmp"), [])


class RootNeverWorksInside(InstalledLayout):
    """Findings 2, 3 and 8: root runs follow nothing the owner controls and leave nothing
    the owner cannot use."""

    def test_symlinked_tmp_is_not_followed_by_a_root_flush_or_daemon(self):
        os.rename(os.path.join(self.spool, "tmp"), os.path.join(self.spool, "tmp.real"))
        os.symlink(self.victim, os.path.join(self.spool, "tmp"))
        result = self.flush_as_root("--smarthost", "127.0.0.1:%d" % free_port())
        self.assertNotEqual(result.returncode, 0)
        self.assert_victim_untouched()
        daemon = subprocess.Popen([LEAFMAILD, "--config", self.config, "--log", "stderr",
                                   "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE)
        try:
            daemon.wait(5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
        daemon.stderr.close()
        self.assert_victim_untouched()

    def test_symlinked_flush_lock_creates_nothing(self):
        target = os.path.join(self.workdir, "nologin")
        os.symlink(target, os.path.join(self.spool, "flush.lock"))
        result = self.flush_as_root("--smarthost", "127.0.0.1:%d" % free_port())
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"flush.lock", result.stderr)
        self.assertFalse(os.path.lexists(target))

    def test_chown_race_touches_nothing_outside_the_spool(self):
        inside = os.path.join(self.spool, "a")
        link = os.path.join(self.spool, "b")
        os.makedirs(inside)
        with open(os.path.join(inside, "precious"), "w") as f:
            f.write("x")
        os.symlink(self.victim, link)
        # Plenty of other files widen the window between the walk and the chowns, as a busy
        # spool does; the race then needs only a few hundred swaps.
        for n in range(3000):
            open(os.path.join(self.spool, "hold", "filler-%d" % n), "w").close()
        libc = ctypes.CDLL(None, use_errno=True)
        swaps = [0]

        def swap():  # the owner's side of the race: a few hundred swaps spread over the start
            for _ in range(400):
                libc.renameat2(AT_FDCWD, inside.encode(), AT_FDCWD, link.encode(), RENAME_EXCHANGE)
                swaps[0] += 1
                time.sleep(0.0005)

        for attempt in range(10):
            thread = threading.Thread(target=swap)
            thread.start()
            daemon = self.daemon()
            try:
                daemon.start()
            except RuntimeError:
                pass
            finally:
                thread.join(30)
                daemon.stop()
            self.assert_victim_untouched()
        self.assertGreater(swaps[0], 1000)

    def test_root_flush_then_owner_flush_delivers(self):
        self.inject_as_root("deferred first")
        result = self.flush_as_root("--smarthost", "127.0.0.1:%d" % free_port())
        self.assertEqual(result.returncode, EX_TEMPFAIL, result.stderr)
        for area in ("", "queue"):
            for name in os.listdir(os.path.join(self.spool, area)):
                st = os.lstat(os.path.join(self.spool, area, name))
                self.assertEqual(st.st_uid, self.owner.uid, name)
        server = self.smarthost()
        owner_flush = self.owner.run([LEAFMAIL_FLUSH, "--config", self.config, "--log", "stderr",
                                      "--smarthost", "127.0.0.1:%d" % server.port])
        self.assertEqual(owner_flush.returncode, 0, owner_flush.stderr)
        self.assertTrue(server.wait_for_messages(1))
        self.assertEqual(self.names("corrupt"), [])
        self.assertEqual(self.names("queue"), [])

    def test_root_refuses_a_spool_owned_by_someone_else(self):
        os.chown(self.spool, self.user.uid, -1)
        result = self.flush_as_root("--smarthost", "127.0.0.1:%d" % free_port())
        self.assertEqual(result.returncode, EX_CONFIG, result.stderr)
        self.assertIn(self.owner.user.encode(), result.stderr)
        listing = subprocess.run([LEAFMAIL_LIST, "--config", self.config], capture_output=True, timeout=60)
        self.assertEqual(listing.returncode, EX_CONFIG, listing.stderr)

    def test_daemon_started_as_root_with_user_starts_50_of_50_under_injection(self):
        stop = threading.Event()
        injected = [0]

        def inject():  # bounded: stops when told, or after 2000 messages
            while not stop.is_set() and injected[0] < 2000:
                subprocess.run([self.sendmail, "-C", self.config, "bob@remote.test"],
                               input=b"Subject: load\n\nx\n", capture_output=True, timeout=60)
                injected[0] += 1

        threads = [threading.Thread(target=inject) for _ in range(2)]
        for t in threads:
            t.start()
        started = 0
        try:
            for attempt in range(50):
                daemon = self.daemon()
                try:
                    daemon.start()
                    started += 1
                except RuntimeError as e:
                    print("attempt %d: %s" % (attempt, e))
                finally:
                    daemon.stop()
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        print("figure: leafmaild as root with user= started %d of 50 while %d messages were injected"
              % (started, injected[0]))
        self.assertEqual(started, 50)
        self.assertGreater(injected[0], 0)


class StraysInTheQueue(InstalledLayout):
    """Finding 5: a FIFO, a directory or a symlink named like an entry."""

    def test_fifo_directory_and_symlink_are_moved_aside_and_the_rest_delivered(self):
        self.inject_as_root("the real one")
        queue = os.path.join(self.spool, "queue")
        os.mkfifo(os.path.join(queue, fake_id(1)))
        os.mkdir(os.path.join(queue, fake_id(2)))
        os.symlink(self.precious, os.path.join(queue, fake_id(3)))
        for n in (1, 2, 3):  # made by the owner (or its group): the only ones who can write there
            os.lchown(os.path.join(queue, fake_id(n)), self.owner.uid, self.owner.gid)
        listing = subprocess.run([LEAFMAIL_LIST, "--config", self.config, "--json"], capture_output=True,
                                 timeout=30)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        server = self.smarthost()
        started = time.monotonic()
        result = self.flush_as_root("--smarthost", "127.0.0.1:%d" % server.port, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertLess(time.monotonic() - started, 20)
        self.assertTrue(server.wait_for_messages(1))
        self.assertEqual(self.names("queue"), [])
        self.assertEqual(sorted(n for n in self.names("corrupt")), [fake_id(1), fake_id(2), fake_id(3)])
        self.assert_victim_untouched()


class SubmitterAndConfiguration(InstalledLayout):
    """Findings 6, 7 and 4."""

    def test_bs_entries_record_the_submitter(self):
        transcript = (b"HELO client.example\r\nMAIL FROM:<root@example.org>\r\nRCPT TO:<bob@remote.test>\r\n"
                      b"DATA\r\nSubject: over -bs\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        result = subprocess.run([self.sendmail, "-C", self.config, "-bs"], input=transcript,
                                capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"\r\n250 ", result.stdout)
        [entry] = json.loads(subprocess.run([LEAFMAIL_LIST, "--config", self.config, "--json"],
                                            capture_output=True, check=True, timeout=60).stdout)
        self.assertEqual(entry["client_address"], "uid=0")
        self.assertEqual(entry["origin"], "local")
        [name] = [n for n in self.names("queue") if not n.endswith(".env")]
        with open(os.path.join(self.spool, "queue", name), "rb") as f:
            self.assertIn(b"(from root@localhost)", f.read(400))

    def test_a_directory_as_configuration_exits_78(self):
        directory = os.path.join(self.workdir, "conf.d")
        os.mkdir(directory)
        daemon = subprocess.run([LEAFMAILD, "--config", directory, "--log", "stderr", "--listen", "127.0.0.1:0"],
                                capture_output=True, timeout=30)
        self.assertEqual(daemon.returncode, EX_CONFIG, daemon.stderr)
        self.assertIn(directory.encode(), daemon.stderr)
        sendmail = subprocess.run([self.sendmail, "-C", directory, "a@example.org"], input=b"x\n",
                                  capture_output=True, timeout=30)
        self.assertEqual(sendmail.returncode, EX_CONFIG, sendmail.stderr)

    def test_sighup_with_a_directory_as_configuration_keeps_the_old_one(self):
        with Daemon(config="max-message-size = 200\n") as daemon:
            os.unlink(daemon.config_path)
            os.mkdir(daemon.config_path)
            mark = len(daemon.lines)
            daemon.process.send_signal(signal.SIGHUP)
            self.assertTrue(daemon.wait_for_log(r"event=reload-failed", start=mark))
            import smtplib
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
                with self.assertRaises(smtplib.SMTPException):
                    client.sendmail("a@example.org", ["b@example.net"], b"Subject: big\r\n\r\n" + b"x" * 2000)
            os.rmdir(daemon.config_path)

    def test_setup_spool_sets_explicit_modes_and_refuses_a_foreign_tree(self):
        fresh = os.path.join(self.workdir, "fresh", "spool")
        config = self.write_config("fresh.conf", "spool = %s\n" % fresh)
        with open(config) as f:
            text = f.read().replace("spool = %s\n" % self.spool, "", 1)
        with open(config, "w") as f:
            f.write(text)
        result = subprocess.run(["/bin/sh", "-c", 'umask 022; exec "$@"', "sh", LEAFMAILD, "--config", config,
                                 "--setup-spool"], capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        for area in ("",) + AREAS:
            st = os.lstat(os.path.join(fresh, area))
            self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
                             (self.owner.uid, self.owner.gid, 0o2770), area)
        st = os.lstat(os.path.join(fresh, "flush.lock"))
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (self.owner.uid, 0o640))
        os.chown(os.path.join(fresh, "queue"), self.user.uid, -1)
        refused = subprocess.run([LEAFMAILD, "--config", config, "--setup-spool"], capture_output=True, timeout=30)
        self.assertEqual(refused.returncode, EX_CONFIG, refused.stderr)
        self.assertEqual(os.lstat(os.path.join(fresh, "queue")).st_uid, self.user.uid)

    def test_the_owner_creates_a_missing_spool_and_an_empty_one_lists_as_empty(self):
        home = os.path.join(self.workdir, "home")
        os.mkdir(home)
        os.chown(home, self.owner.uid, self.owner.gid)
        missing = os.path.join(home, "new", "spool")
        empty_config = os.path.join(self.workdir, "empty.conf")
        open(empty_config, "w").close()
        os.chmod(empty_config, 0o644)
        result = self.owner.run([LEAFMAILD, "--config", empty_config, "--spool", missing, "--log", "stderr",
                                 "--inetd"], input=b"QUIT\r\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(os.path.isdir(os.path.join(missing, "queue")))
        self.assertEqual(stat.S_IMODE(os.stat(missing).st_mode), 0o2770)
        empty = os.path.join(self.workdir, "empty")
        os.mkdir(empty)
        os.chown(empty, self.owner.uid, self.owner.gid)
        listing = subprocess.run([LEAFMAIL_LIST, "--config", self.config, "--spool", empty],
                                 capture_output=True, timeout=30)
        self.assertEqual((listing.returncode, listing.stdout), (0, b"spool is empty\n"), listing.stderr)
        as_json = subprocess.run([LEAFMAIL_LIST, "--config", self.config, "--spool", empty, "--json"],
                                 capture_output=True, timeout=30)
        self.assertEqual(json.loads(as_json.stdout), [])
        flush = self.flush_as_root("--spool", os.path.join(self.workdir, "nowhere"), "--smarthost", "127.0.0.1:1")
        self.assertEqual(flush.returncode, EX_CONFIG, flush.stderr)
        self.assertIn(b"--setup-spool", flush.stderr)


if __name__ == "__main__":
    unittest.main()
