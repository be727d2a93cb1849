"""Shared pieces of the integration tests: start the real leafmaild on 127.0.0.1:0 with a
fresh spool and an empty configuration file of its own, read the port it announces, look at
spool entries as spool-format/README.md describes them, and stop only what we started."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

LEAFMAILD = os.environ.get("LEAFMAILD", "leafmaild")
LEAFMAIL_FLUSH = os.environ.get("LEAFMAIL_FLUSH", "leafmail-flush")
LEAFMAIL_LIST = os.environ.get("LEAFMAIL_LIST", "leafmail-list")
LEAFMAIL_SENDMAIL = os.environ.get("LEAFMAIL_SENDMAIL", "leafmail-sendmail")
SOURCE_DIR = os.environ.get("LEAFMAIL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))

# Under CI a test that cannot run must fail, never skip: a skipped security test reads as a
# pass (CTest counts a module whose tests all skipped as passed).
IN_CI = os.environ.get("CI") == "true"

FOOTER_SIZE = 32
QUEUE_ID = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{8}-[0-9a-f]{4}$")


@contextlib.contextmanager
def sanitizer_without_quarantine():
    """For the memory tests, around starting the measured process: under the sanitized build
    (LEAFMAIL_SANITIZED) AddressSanitizer keeps up to 256 MiB of freed memory in quarantine to
    catch use-after-free, which a process streaming through many buffers fills; RSS then
    measures the quarantine, not us. Other tests keep the quarantine."""
    saved = os.environ.get("ASAN_OPTIONS")
    if os.environ.get("LEAFMAIL_SANITIZED"):
        os.environ["ASAN_OPTIONS"] = (saved + ":" if saved else "") + \
            "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved


def require(test, condition, why):
    """Inside a test: skips it when condition is false, with why as the reason; under CI=true
    fails it instead, so that what cannot run there (root, a network namespace, a tmpfs, a
    missing package of .ci/deps) is seen."""
    if condition:
        return
    if IN_CI:
        test.fail("CI=true: this test cannot run here: " + why)
    test.skipTest(why)


def requires(condition, why):
    """Decorator form of require() for a test method or a whole TestCase class."""
    if condition:
        return lambda obj: obj
    if not IN_CI:
        return unittest.skip(why)

    def fail_instead(obj):
        if isinstance(obj, type):
            obj.setUpClass = classmethod(lambda cls: None)
            obj.tearDownClass = classmethod(lambda cls: None)
            obj.setUp = lambda self: require(self, False, why)
            return obj

        def test(self, *args, **kwargs):
            require(self, False, why)

        test.__name__ = obj.__name__
        test.__doc__ = obj.__doc__
        return test

    return fail_instead


def wait_until(predicate, timeout=10.0, interval=0.02):
    """Polls predicate until it is true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Daemon:
    """One leafmaild process with its own temporary spool and configuration file."""

    def __init__(self, config="", args=(), workdir=None):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="leafmail-it-")
            workdir = self._tmp.name
        self.workdir = workdir
        self.spool = os.path.join(workdir, "spool")
        self.config_path = os.path.join(workdir, "leafmail.conf")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.args = list(args)
        self.process = None
        self.lines = []
        self.port = None
        self._reader = None

    # The log line that says the program is ready; a subclass running another long-lived
    # program (the watcher) names its own, and what to take from it in started().
    ready_pattern = r"event=listening address=127\.0\.0\.1:(\d+)"

    def command(self):
        return [LEAFMAILD, "--config", self.config_path, "--spool", self.spool, "--log", "stderr",
                "--hostname", "test.leafmail", "--listen", "127.0.0.1:0"] + self.args

    def start(self, timeout=10.0):
        self.lines = []
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        line = self.wait_for_log(self.ready_pattern, timeout)
        if not line:
            self.kill()
            raise RuntimeError("%s did not start:\n%s"
                               % (os.path.basename(self.command()[0]), "\n".join(self.lines)))
        self.started(line)
        return self

    def started(self, line):
        """Takes what it needs from the ready line: leafmaild's port."""
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))

    def _read_log(self):
        for raw in self.process.stderr:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_for_log(self, pattern, timeout=10.0, start=0):
        """The first log line at index >= start matching pattern, waiting up to timeout."""
        regex = re.compile(pattern)

        def find():
            for line in self.lines[start:]:
                if regex.search(line):
                    return line
            return None

        return wait_until(find, timeout)

    def log_text(self):
        return "\n".join(self.lines)

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit status."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._finish_reader()
        return self.process.returncode if self.process else None

    def _finish_reader(self):
        if self._reader:
            self._reader.join(5)
        if self.process and self.process.stderr:
            self.process.stderr.close()

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._finish_reader()

    def close(self):
        self.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def entry_ids(spool, area="queue"):
    directory = os.path.join(spool, area)
    if not os.path.isdir(directory):
        return []
    return sorted(name for name in os.listdir(directory) if QUEUE_ID.match(name))


def read_entry(spool, entry_id, area="queue"):
    """(content bytes, envelope archive text) of one entry, per spool-format/README.md."""
    with open(os.path.join(spool, area, entry_id), "rb") as f:
        data = f.read()
    footer = data[-FOOTER_SIZE:]
    assert footer.startswith(b"\nLEAFMAIL1 ") and footer.endswith(b"\n"), footer
    offset = int(footer[11:31])
    envelope = data[offset:-FOOTER_SIZE].decode("utf-8", "replace")
    state = os.path.join(spool, area, entry_id + ".env")
    if os.path.exists(state):
        with open(state, encoding="utf-8", errors="replace") as f:
            envelope = f.read()
    return data[:offset], envelope


def content_without_received(content):
    """The message as the client sent it: our Received: field (first, folded) removed."""
    assert content.startswith(b"Received: "), content[:80]
    end = 0
    while True:
        end = content.index(b"\r\n", end) + 2
        if content[end:end + 1] not in (b"\t", b" "):
            return content[end:]


def temp_files(spool):
    directory = os.path.join(spool, "tmp")
    return os.listdir(directory) if os.path.isdir(directory) else []


class SmtpClient:
    """A raw SMTP client: sends exactly the bytes given and reads whole (multi-line) replies.
    A connection reset counts as the server having closed."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout,
                                             source_address=(source, 0) if source else None)
        self.buffer = b""

    @classmethod
    def over_socket(cls, sock, timeout=10.0):
        """A client on a socket that is already connected (a socketpair, for inetd mode)."""
        client = cls.__new__(cls)
        client.timeout, client.sock, client.buffer = timeout, sock, b""
        sock.settimeout(timeout)
        return client

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """(code, list of text lines) of the next reply; (None, lines) when the server closed."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return (None, lines)
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            assert re.match(rb"^\d{3}[ -]", line), line
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] == b" ":
                return (int(line[:3]), lines)

    def code(self):
        return self.reply()[0]

    def command(self, line):
        self.send(line + b"\r\n")
        return self.code()

    def is_closed(self, timeout=None):
        """True when the server closes the connection within timeout (after any pending data)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(self.timeout)

    def start_transaction(self, recipients=(b"rcpt@example.org",), sender=b"sender@example.org"):
        """Greeting, EHLO, MAIL, RCPT..., DATA: asserts every step and stops after the 354."""
        assert self.code() == 220
        assert self.command(b"EHLO client.example") == 250
        assert self.command(b"MAIL FROM:<" + sender + b">") == 250
        for r in recipients:
            assert self.command(b"RCPT TO:<" + r + b">") == 250
        assert self.command(b"DATA") == 354

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
