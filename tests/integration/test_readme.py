"""README.md is the first thing a newcomer runs, so it is tested like code: it opens with a
title and the two commands (demo, then the whole suite); the test command is the very line
.ci/run runs; and the demo, run as written in a fresh `git clone` of the source tree, starts
leafmaild, accepts the swaks and curl messages (250), lists them with leafmail-list and
flushes them into the README's test smarthost.

The demo reuses the binaries of this build instead of compiling again: the build steps of
the first command are checked for shape and replaced by links to the built programs. Ports
2525 and 8025 are used when free, otherwise free ones picked now (in the clone only)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

from harness import LEAFMAILD, LEAFMAIL_FLUSH, LEAFMAIL_LIST, LEAFMAIL_SENDMAIL, SOURCE_DIR, require, wait_until
from smarthost import free_port

IN_CI = os.environ.get("CI") == "true"
STEP_TIMEOUT = 120  # seconds for any one README command
BUILT = {"leafmaild": LEAFMAILD, "leafmail-flush": LEAFMAIL_FLUSH, "leafmail-list": LEAFMAIL_LIST,
         "leafmail-sendmail": LEAFMAIL_SENDMAIL}
QUEUED = re.compile(r"event=accepted .*?id=([0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{4})")


def fenced_blocks(text):
    """[(heading, lines)] for every ``` block, with the "## " heading it sits under ("" before
    the first one)."""
    blocks, heading, current = [], "", None
    for line in text.splitlines():
        if current is None:
            if line.startswith("## "):
                heading = line[3:].strip()
            elif line.startswith("```"):
                current = []
        elif line.startswith("```"):
            blocks.append((heading, current))
            current = None
        else:
            current.append(line)
    return blocks


def top_commands(text):
    """The one-line commands of the fenced blocks above the first section."""
    return [lines for heading, lines in fenced_blocks(text) if heading == ""]


def ci_test_command(run_script):
    """The line of .ci/run that runs the suite through ctest."""
    lines = [line for line in run_script.splitlines() if "ctest" in line and not line.lstrip().startswith("#")]
    return lines


def read(path):
    with open(path) as f:
        return f.read()


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def accepts_connections(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class ReadmeShapeTest(unittest.TestCase):
    def setUp(self):
        self.readme = read(os.path.join(SOURCE_DIR, "README.md"))

    def test_it_opens_with_a_title_and_a_sentence(self):
        lines = self.readme.splitlines()
        self.assertTrue(lines and re.match(r"^# \S", lines[0]), "README.md must open with '# title'")
        first_paragraph = next((line for line in lines[1:] if line.strip()), "")
        self.assertFalse(first_paragraph.startswith(("#", "```", "|")), "a sentence must follow the title")

    def test_the_two_commands_come_first(self):
        commands = top_commands(self.readme)
        self.assertEqual(len(commands), 2, "two fenced commands above the first section, got %r" % commands)
        for lines in commands:
            self.assertEqual(len(lines), 1, "each top command is one line: %r" % lines)
        self.assertIn("leafmaild", commands[0][0])
        self.assertIn("ctest", commands[1][0])

    def test_the_test_command_is_what_ci_runs(self):
        commands = top_commands(self.readme)
        self.assertEqual(len(commands), 2)
        ci_lines = ci_test_command(read(os.path.join(SOURCE_DIR, ".ci", "run")))
        self.assertEqual(len(ci_lines), 1, ".ci/run must run ctest on exactly one line: %r" % ci_lines)
        self.assertEqual(commands[1][0], ci_lines[0].strip())


class ReadmeDemoTest(unittest.TestCase):
    """The first command and the demo section, run in a fresh clone."""

    def setUp(self):
        if not shutil.which("git") or not os.path.isdir(os.path.join(SOURCE_DIR, ".git")) and \
                not os.path.isfile(os.path.join(SOURCE_DIR, ".git")):
            if IN_CI:
                self.fail("CI=true: the README demo needs git and a git source tree")
            require(self, False, "not a git checkout")
        for name in ("swaks", "curl"):
            if not shutil.which(name):
                if IN_CI:
                    self.fail("CI=true: %s is missing (bash .ci/deps)" % name)
                require(self, False, name + " not installed")
        self.tmp = tempfile.TemporaryDirectory(prefix="leafmail-readme-")
        self.addCleanup(self.tmp.cleanup)
        self.clone = os.path.join(self.tmp.name, "leafmail")
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", SOURCE_DIR, self.clone],
                       check=True, capture_output=True, timeout=STEP_TIMEOUT)
        self.readme = read(os.path.join(self.clone, "README.md"))
        self.processes = []
        self.addCleanup(self.stop_all)

    # -- processes the demo starts in "another terminal" --------------------------------------

    def start(self, command, **kwargs):
        process = subprocess.Popen(["bash", "-c", command], cwd=self.clone, stdin=subprocess.DEVNULL,
                                   start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def stop_all(self):
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # its own session: only what we started
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=20)
            for stream in (process.stdout, process.stderr):
                if stream:
                    stream.close()

    def run_line(self, line):
        return subprocess.run(["bash", "-c", line], cwd=self.clone, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=STEP_TIMEOUT)

    # -- the pieces of the README -------------------------------------------------------------

    def demo_command_steps(self):
        """The first command split at '&&': deps, configure, build, run."""
        steps = [step.strip() for step in top_commands(self.readme)[0][0].split("&&")]
        self.assertEqual(steps[0], "bash .ci/deps", steps)
        run = steps[-1]
        match = re.match(r"^(\S+)/src/leafmaild\s", run)
        self.assertTrue(match, "the first command must end by running <build>/src/leafmaild: %r" % run)
        build = match.group(1)
        configure = [s for s in steps if re.match(r"^cmake -S \. -B %s(\s|$)" % re.escape(build), s)]
        compile_ = [s for s in steps if re.match(r"^cmake --build %s(\s|$)" % re.escape(build), s)]
        self.assertEqual(len(configure), 1, "the first command must configure %s: %r" % (build, steps))
        self.assertEqual(len(compile_), 1, "the first command must build %s: %r" % (build, steps))
        self.assertEqual(len(steps), 4, steps)
        return steps[0], build, run

    def demo_section(self):
        blocks = [lines for heading, lines in fenced_blocks(self.readme) if "demo" in heading.lower()]
        self.assertTrue(blocks, "no demo section with commands")
        commands = [line for lines in blocks for line in lines if line.strip() and not line.startswith("leafmaild:")]
        return commands

    def test_the_demo_runs_as_written_in_a_fresh_clone(self):
        deps, build, run = self.demo_command_steps()
        demo = self.demo_section()
        swaks = [c for c in demo if c.startswith("swaks ")]
        curl = [c for c in demo if "curl " in c and "smtp://" in c]
        listing = [c for c in demo if "leafmail-list" in c]
        smarthost = [c for c in demo if "aiosmtpd" in c]
        flush = [c for c in demo if "leafmail-flush" in c]
        for name, found in (("swaks", swaks), ("curl", curl), ("leafmail-list", listing),
                            ("aiosmtpd", smarthost), ("leafmail-flush", flush)):
            self.assertTrue(found, "the demo has no %s line" % name)

        # The dependency step: CI ran it just before the suite; a test does not install
        # packages, so here it is only checked to be a valid script of the clone.
        result = self.run_line("bash -n .ci/deps")
        self.assertEqual(result.returncode, 0, result.stderr)
        # The build steps, replaced by this build's programs in the clone's build directory.
        os.makedirs(os.path.join(self.clone, build, "src"))
        for program, path in BUILT.items():
            os.symlink(os.path.abspath(path), os.path.join(self.clone, build, "src", program))

        demo_conf = os.path.join(self.clone, "contrib", "demo.conf")
        conf = read(demo_conf)
        receiver_port = int(re.search(r"(?m)^listen\s*=\s*127\.0\.0\.1:(\d+)", conf).group(1))
        smarthost_port = int(re.search(r"(?m)^smarthost\s*=\s*127\.0\.0\.1:(\d+)", conf).group(1))

        def with_ports(text, receiver, relay):
            return text.replace("127.0.0.1:%d" % receiver_port, "127.0.0.1:%d" % receiver) \
                       .replace("127.0.0.1:%d" % smarthost_port, "127.0.0.1:%d" % relay)

        relay = smarthost_port if port_is_free(smarthost_port) else free_port()
        receiver, daemon, log = receiver_port if port_is_free(receiver_port) else free_port(), None, []
        for attempt in range(3):  # the port may be taken between our check and leafmaild's bind
            with open(demo_conf, "w") as f:
                f.write(with_ports(conf, receiver, relay))
            daemon = self.start(run, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
            os.set_blocking(daemon.stderr.fileno(), False)

            def listening():
                chunk = daemon.stderr.read()
                if chunk:
                    log.append(chunk.decode(errors="replace"))
                return "event=listening" in "".join(log) or daemon.poll() is not None

            wait_until(listening, timeout=30)
            if daemon.poll() is None and "event=listening" in "".join(log):
                break
            self.assertEqual(daemon.poll(), 71, "leafmaild did not start: %s" % "".join(log))
            receiver, log = free_port(), []
        else:
            self.fail("no free port for the demo's leafmaild")
        self.assertTrue(os.path.isdir(os.path.join(self.clone, build, "demo-spool", "queue")),
                        "leafmaild did not create the demo spool")

        def daemon_log():
            try:
                chunk = daemon.stderr.read()
            except (ValueError, OSError):
                chunk = None
            if chunk:
                log.append(chunk.decode(errors="replace"))
            return "".join(log)

        result = self.run_line(with_ports(swaks[0], receiver, relay))
        out = result.stdout.decode(errors="replace")
        self.assertEqual(result.returncode, 0, out + result.stderr.decode(errors="replace"))
        self.assertRegex(out, r"(?m)^<-  250 .*queued as", out)
        result = self.run_line(with_ports(curl[0], receiver, relay))
        self.assertEqual(result.returncode, 0, result.stderr)  # curl fails on anything but 2xx
        self.assertTrue(wait_until(lambda: len(QUEUED.findall(daemon_log())) == 2, timeout=20), daemon_log())
        ids = QUEUED.findall(daemon_log())

        result = self.run_line(with_ports(listing[0], receiver, relay))
        out = result.stdout.decode(errors="replace")
        self.assertEqual(result.returncode, 0, out + result.stderr.decode(errors="replace"))
        for entry_id in ids:
            self.assertIn(entry_id, out)
        self.assertRegex(out, r"(?m)^2 messages")

        # The smarthost of "another terminal", then the flush into it.
        server = self.start(with_ports(smarthost[0], receiver, relay), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.assertTrue(wait_until(lambda: accepts_connections(relay) or server.poll() is not None, timeout=30)
                        and server.poll() is None, "the demo's smarthost did not start")
        result = self.run_line(with_ports(flush[0], receiver, relay))
        out = result.stdout.decode(errors="replace")
        self.assertEqual(result.returncode, 0, out + result.stderr.decode(errors="replace"))
        self.assertRegex(out, r"sent 2, deferred 0, failed 0")
        result = self.run_line(with_ports(listing[-1], receiver, relay))
        self.assertEqual(result.returncode, 0, result.stderr)
        for entry_id in ids:
            self.assertNotIn(entry_id, result.stdout.decode(errors="replace"))
        os.killpg(server.pid, signal.SIGTERM)
        received = server.communicate(timeout=20)[0].decode(errors="replace")
        self.assertIn("hello from swaks", received)
        self.assertIn("hello from curl", received)

        # Ctrl-C ends the demo cleanly.
        os.killpg(daemon.pid, signal.SIGINT)
        self.assertEqual(daemon.wait(timeout=40), 0, daemon_log())
        self.assertIn("event=stopped", daemon_log())


if __name__ == "__main__":
    unittest.main()
