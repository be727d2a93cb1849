"""What `make install` puts where (into a DESTDIR, with the modes of the install model), the
man pages against each program's --help, and the contrib/ units and scripts checked by the
tools that can check them (systemd-analyze verify, sh -n, shellcheck)."""

import grp
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

from harness import LEAFMAILD, LEAFMAIL_FLUSH, LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, SOURCE_DIR, require, requires, wait_until

BUILD_DIR = os.environ.get("LEAFMAIL_BUILD_DIR", "")
CONTRIB = os.path.join(SOURCE_DIR, "contrib")
MAN = os.path.join(CONTRIB, "man")
PROGRAMS = {"leafmaild": LEAFMAILD, "leafmail-flush": LEAFMAIL_FLUSH,
            "leafmail-list": LEAFMAIL_LIST, "leafmail-sendmail": LEAFMAIL_SENDMAIL}
UNITS = ("leafmaild.service", "leafmaild.socket", "leafmaild@.service",
         "leafmail-flush.service", "leafmail-flush.timer", "leafmail-watch.service")
SCRIPTS = ("ppp/ip-up.d/leafmail", "NetworkManager/dispatcher.d/90-leafmail")


def install_paths():
    """The install locations this build was configured with (from tests/integration/tools.cmake)."""
    keys = ("SBINDIR", "MANDIR", "SYSCONFDIR", "DOCDIR", "SPOOL_DIR", "UNIT_DIR")
    return {key: os.environ.get("LEAFMAIL_INSTALL_" + key, "") for key in keys}


def man_source(name):
    """A man page's roff source with the escapes that hide flags undone."""
    with open(os.path.join(MAN, name)) as f:
        return f.read().replace("\\-", "-").replace("\\(aq", "'")


def help_sections(program):
    """--help of a program as {section caption: [flags]}; the caption of the configuration
    keys is 'Configuration keys ...' (program_options' layout: caption line, option lines)."""
    text = subprocess.run([PROGRAMS[program], "--help"], capture_output=True, check=True, timeout=60).stdout.decode()
    sections, current = {}, "usage"
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
            continue
        for flag in re.findall(r"(?:^|[\s,(])(--?[A-Za-z][A-Za-z0-9-]*)", line):
            if flag in ("-", "--"):
                continue
            sections.setdefault(current, []).append(flag)
    return sections


class ManPageTest(unittest.TestCase):
    def test_every_flag_of_help_is_in_the_man_page(self):
        conf_page = man_source("leafmail.conf.5")
        for program in PROGRAMS:
            page = man_source(program + ".8")
            for section, flags in help_sections(program).items():
                for flag in flags:
                    with self.subTest(program=program, flag=flag):
                        if section.startswith("Configuration keys"):
                            key = flag.lstrip("-")
                            self.assertRegex(conf_page, r"(?m)^\.B %s$" % re.escape(key),
                                             "%s: key %s missing from leafmail.conf.5" % (program, key))
                        else:
                            self.assertRegex(page, r"(?<![A-Za-z0-9-])%s(?![A-Za-z0-9-])" % re.escape(flag),
                                             "%s: %s missing from %s.8" % (program, flag, program))

    @requires(shutil.which("man") and shutil.which("groff"), "man-db and groff not installed")
    def test_pages_render_without_warnings(self):
        for name in sorted(os.listdir(MAN)):
            with self.subTest(page=name):
                result = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", os.path.join(MAN, name)],
                                        capture_output=True, timeout=60, env=dict(os.environ, MANWIDTH="80"))
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stderr.decode().strip(), "", name)
                self.assertIn(b"NAME", result.stdout)


@requires(BUILD_DIR and shutil.which("cmake"), "LEAFMAIL_BUILD_DIR not set (run through ctest)")
class InstallTest(unittest.TestCase):
    """`cmake --install` runs the same install script as `make install`, without rebuilding."""

    def install(self, destdir, group):
        env = dict(os.environ, DESTDIR=destdir, LEAFMAIL_INSTALL_GROUP=group, LEAFMAIL_INSTALL_USER="nobody")
        result = subprocess.run(["cmake", "--install", BUILD_DIR], env=env, capture_output=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result

    def check_files(self, destdir):
        paths = install_paths()
        at = lambda path: destdir + path
        for program in PROGRAMS:
            path = at(os.path.join(paths["SBINDIR"], program))
            self.assertTrue(os.access(path, os.X_OK), path)
        for page in ("leafmaild.8", "leafmail-flush.8", "leafmail-list.8", "leafmail-sendmail.8"):
            self.assertTrue(os.path.isfile(at(os.path.join(paths["MANDIR"], "man8", page))), page)
        self.assertTrue(os.path.isfile(at(os.path.join(paths["MANDIR"], "man5", "leafmail.conf.5"))))
        if os.path.exists(os.path.join(CONTRIB, "leafmail.conf")):
            conf = at(os.path.join(paths["SYSCONFDIR"], "leafmail.conf"))
            self.assertTrue(os.path.isfile(conf), conf)
            self.assertEqual(stat.S_IMODE(os.stat(conf).st_mode), 0o644)
        for unit in UNITS:
            unit_path = at(os.path.join(paths["UNIT_DIR"], unit))
            self.assertTrue(os.path.isfile(unit_path), unit_path)
            with open(unit_path) as f:
                text = f.read()
            for command in re.findall(r"(?m)^ExecStart=(\S+)", text):
                self.assertEqual(os.path.dirname(command), paths["SBINDIR"], unit)
        examples = at(os.path.join(paths["DOCDIR"], "examples"))
        for script in SCRIPTS:
            self.assertTrue(os.access(os.path.join(examples, script), os.X_OK), script)
        self.assertTrue(os.path.isfile(os.path.join(examples, "cron.d", "leafmail")))
        spool = at(paths["SPOOL_DIR"])
        for area in ("", "tmp", "queue", "hold", "failed", "corrupt"):
            mode = stat.S_IMODE(os.stat(os.path.join(spool, area)).st_mode)
            self.assertEqual(mode & 0o777, 0o770, "%s %o" % (area, mode))  # nothing for others
        return at(os.path.join(paths["SBINDIR"], "leafmail-sendmail")), spool

    @requires(os.geteuid() == 0 and shutil.which("groupadd"), "needs root and groupadd")
    def test_install_with_the_group_sets_up_the_setgid_model(self):
        group = "lmig" + str(os.getpid())[-6:]
        subprocess.run(["groupadd", group], check=True, capture_output=True)
        self.addCleanup(subprocess.run, ["groupdel", group], capture_output=True)
        gid = grp.getgrnam(group).gr_gid
        with tempfile.TemporaryDirectory(prefix="leafmail-destdir-") as destdir:
            self.install(destdir, group)
            sendmail, spool = self.check_files(destdir)
            st = os.stat(sendmail)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o2755)
            self.assertEqual(st.st_gid, gid)
            for area in ("", "tmp", "queue"):
                st = os.stat(os.path.join(spool, area))
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o2770)
                self.assertEqual(st.st_gid, gid)
            # Installing again keeps an administrator's configuration file.
            conf = destdir + os.path.join(install_paths()["SYSCONFDIR"], "leafmail.conf")
            if os.path.exists(conf):
                with open(conf, "a") as f:
                    f.write("# edited\n")
                self.install(destdir, group)
                with open(conf) as f:
                    self.assertTrue(f.read().endswith("# edited\n"))

    def test_install_without_the_group_never_leaves_a_setgid_program(self):
        with tempfile.TemporaryDirectory(prefix="leafmail-destdir-") as destdir:
            result = self.install(destdir, "no-such-group-leafmail")
            sendmail, _ = self.check_files(destdir)
            self.assertEqual(stat.S_IMODE(os.stat(sendmail).st_mode), 0o755)
            self.assertIn(b"without its setgid group", result.stdout + result.stderr)


class ContribTest(unittest.TestCase):
    def test_scripts_parse(self):
        for script in SCRIPTS:
            path = os.path.join(CONTRIB, script)
            with self.subTest(script=script):
                self.assertTrue(os.access(path, os.X_OK), path)
                result = subprocess.run(["sh", "-n", path], capture_output=True, timeout=60)
                self.assertEqual(result.returncode, 0, result.stderr)
                if shutil.which("shellcheck"):
                    result = subprocess.run(["shellcheck", "-s", "sh", path], capture_output=True, timeout=60)
                    self.assertEqual(result.returncode, 0, result.stdout)

    def test_cron_line(self):
        with open(os.path.join(CONTRIB, "cron.d", "leafmail")) as f:
            lines = [line for line in f.read().splitlines() if line.strip() and not line.startswith("#")]
        # A PATH that holds both install places, then one job.
        self.assertEqual(len(lines), 2, lines)
        path = re.match(r"^PATH=(\S+)$", lines[0])
        self.assertIsNotNone(path, lines[0])
        for directory in ("/usr/sbin", "/usr/local/sbin"):
            self.assertIn(directory, path.group(1).split(":"))
        # /etc/cron.d format: five time fields, the user, the command.
        match = re.match(r"^(\S+\s+){5}(\S+)\s+(.+)$", lines[1])
        self.assertIsNotNone(match, lines[1])
        self.assertEqual(match.group(2), "leafmail")
        self.assertIn("leafmail-flush --log syslog", match.group(3))
        self.assertNotIn("%", match.group(3))  # cron turns % into a newline
        result = subprocess.run(["sh", "-n", "-c", match.group(3)], capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)

    def run_link_script(self, script, args, bin_dir, path, expect=""):
        """A contrib script with fake systemctl, runuser, logger on PATH, recording their calls.
        expect: a call the script may make in the background; waited for (bounded)."""
        calls = os.path.join(bin_dir, "calls")
        for tool in ("systemctl", "runuser", "logger"):
            with open(os.path.join(bin_dir, tool), "w") as f:
                f.write('#!/bin/sh\necho "%s $*" >> %s\n' % (tool, calls))
            os.chmod(os.path.join(bin_dir, tool), 0o755)
        result = subprocess.run(["sh", os.path.join(CONTRIB, script)] + args, capture_output=True, timeout=60,
                                env={"PATH": path}, stdin=subprocess.DEVNULL)
        # The script may have started a background job: give it time to record itself. The
        # calls file exists from the moment the shell opens it, before its line is written, so
        # wait for the line itself (on a loaded machine that took more than a moment).
        def recorded():
            with open(calls) if os.path.exists(calls) else open(os.devnull) as f:
                return f.read()
        wait_until(lambda: recorded().endswith("\n") and expect in recorded(), timeout=20)
        return result, recorded()

    def test_link_scripts_find_the_flush_or_say_it_is_missing(self):
        arguments = {"ppp/ip-up.d/leafmail": ["ppp0", "/dev/ttyUSB0", "115200", "10.0.0.2", "10.0.0.1"],
                     "NetworkManager/dispatcher.d/90-leafmail": ["wlan0", "up"]}
        installed = [p for p in ("/usr/sbin/leafmail-flush", "/usr/local/sbin/leafmail-flush") if os.path.exists(p)]
        if installed:
            require(self, False, "leafmail-flush is installed on this machine: %s" % installed)
        for script in SCRIPTS:
            with self.subTest(script=script, case="missing"), \
                    tempfile.TemporaryDirectory(prefix="leafmail-script-") as fake:
                result, calls = self.run_link_script(script, arguments[script], fake, fake + ":/usr/bin:/bin")
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertIn(b"leafmail-flush not found", result.stderr)
                self.assertIn("logger -t leafmail -p mail.err leafmail-flush not found", calls)
            with self.subTest(script=script, case="on PATH"), \
                    tempfile.TemporaryDirectory(prefix="leafmail-script-") as fake:
                flush = os.path.join(fake, "leafmail-flush")
                os.symlink(os.path.abspath(LEAFMAIL_FLUSH), flush)
                expected = ("systemctl start --no-block leafmail-flush.service"
                            if os.path.isdir("/run/systemd/system")
                            else "runuser -u leafmail -- %s --log syslog" % flush)
                result, calls = self.run_link_script(script, arguments[script], fake,
                                                     fake + ":/usr/bin:/bin", expect=expected)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stderr, b"")
                self.assertIn(expected, calls)

    @requires(shutil.which("systemd-analyze"), "systemd-analyze not installed")
    def test_systemd_units_verify(self):
        # systemd-analyze checks that ExecStart exists: point the units at the built programs.
        with tempfile.TemporaryDirectory(prefix="leafmail-units-") as directory:
            for unit in UNITS:
                with open(os.path.join(CONTRIB, "systemd", unit)) as f:
                    text = f.read()
                text = text.replace("/usr/sbin/leafmail-flush", LEAFMAIL_FLUSH)
                text = text.replace("/usr/sbin/leafmaild", LEAFMAILD)
                with open(os.path.join(directory, unit), "w") as f:
                    f.write(text)
            paths = [os.path.join(directory, unit) for unit in UNITS]
            result = subprocess.run(["systemd-analyze", "verify", "--man=no"] + paths,
                                    capture_output=True, timeout=120, cwd=directory)
            output = (result.stdout + result.stderr).decode()
            # Lines about our units only (the host's own units may have problems of their own).
            ours = [line for line in output.splitlines() if "leafmail" in line]
            self.assertEqual(ours, [], output)
            self.assertEqual(result.returncode, 0, output)


if __name__ == "__main__":
    unittest.main()
