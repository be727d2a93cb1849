"""A real, independent smarthost for leafmail-flush's integration tests: aiosmtpd (Debian's
python3-aiosmtpd) on a free loopback port, in a thread of the test process, with
certificates from a throw-away CA made with `openssl`, STARTTLS or implicit TLS, AUTH PLAIN
and LOGIN, and switchable misbehaviour: per-recipient 4xx/5xx, 5xx after DATA, a connection
dropped in the middle of DATA, a stall, a refused greeting. It records what it received."""

import asyncio
import logging
import os
import socket
import ssl
import subprocess
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

IO_TIMEOUT = 10.0

# aiosmtpd logs every refused handshake with a traceback; the tests assert on outcomes.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)


def free_port():
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestCA:
    """A CA and one server certificate for `localhost` (DNS name only, no IP address, so
    connecting to 127.0.0.1 with verification on is a host name mismatch)."""

    def __init__(self, directory):
        self.directory = directory
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self.cert = os.path.join(directory, "server.pem")
        self.key = os.path.join(directory, "server.key")
        ext = os.path.join(directory, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        csr = os.path.join(directory, "server.csr")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *args: subprocess.run(["openssl", *args], check=True, timeout=60,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run("req", "-x509", *ec, "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2",
            "-subj", "/CN=leafmail test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", *ec, "-keyout", self.key, "-out", csr, "-subj", "/CN=localhost")
        run("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
            "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", ext)

    def server_context(self):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


class Received:
    """One message as the smarthost got it."""

    def __init__(self, envelope, session):
        self.mail_from = envelope.mail_from
        self.mail_options = list(envelope.mail_options)
        self.rcpt_tos = list(envelope.rcpt_tos)
        self.content = envelope.original_content
        self.tls = session.ssl is not None
        self.authenticated_as = getattr(session, "leafmail_user", None)
        self.helo = session.host_name  # the EHLO/HELO argument


class Behaviour:
    """What the smarthost does; tests change the fields before (or while) running."""

    def __init__(self):
        self.rcpt_replies = {}       # address -> reply line, e.g. "450 4.2.0 busy"
        self.data_reply = None       # reply after the final dot instead of 250
        self.data_reply_for = None   # only for messages whose Subject contains this
        self.drop_in_data_after = None  # bytes of DATA to read, then drop the connection
        self.stall_after_data = 0.0  # seconds to sleep before answering the final dot
        self.users = {}              # user -> password for AUTH
        self.max_recipients = None   # per transaction; more get 452 4.5.3 (RFC 5321 4.5.3.1.10)
        self.on_data = None          # called with the envelope after the final dot, before the reply


class _Handler:
    def __init__(self, server):
        self.server = server

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        reply = self.server.behaviour.rcpt_replies.get(address)
        if reply:
            return reply
        limit = self.server.behaviour.max_recipients
        if limit is not None and len(envelope.rcpt_tos) >= limit:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp, session, envelope):
        b = self.server.behaviour
        if b.on_data:
            b.on_data(envelope)
        if b.stall_after_data:
            await asyncio.sleep(b.stall_after_data)
        # Notifications (null sender) are never refused, so a test sees its bounce.
        if b.data_reply and envelope.mail_from != "<>" and (
                b.data_reply_for is None or b.data_reply_for.encode() in envelope.original_content):
            self.server.refused.append(Received(envelope, session))
            return b.data_reply
        with self.server.lock:
            self.server.messages.append(Received(envelope, session))
        return "250 2.0.0 OK queued"


class _SMTP(SMTP):
    """aiosmtpd's server with the one misbehaviour its hooks cannot express."""

    def __init__(self, *args, owner=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    async def smtp_EHLO(self, hostname):
        self.owner.sessions += 1
        return await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname):
        self.owner.sessions += 1
        return await super().smtp_HELO(hostname)

    async def smtp_DATA(self, arg):
        limit = self.owner.behaviour.drop_in_data_after
        if limit is None or not self.envelope.rcpt_tos:
            return await super().smtp_DATA(arg)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        got = 0
        while got < limit:
            chunk = await self._reader.read(min(65536, limit - got))
            if not chunk:
                break
            got += len(chunk)
        self.owner.dropped += 1
        self.transport.close()  # in the middle of DATA, no reply


class _Controller(Controller):
    def __init__(self, owner, *args, **kwargs):
        self.owner = owner
        super().__init__(*args, **kwargs)

    def factory(self):
        return _SMTP(self.handler, owner=self.owner, **self.SMTP_kwargs)


class Smarthost:
    """tls: "none", "starttls" or "implicit". With users, AUTH PLAIN and LOGIN are offered
    (only under TLS unless auth_over_plaintext) and required."""

    def __init__(self, ca=None, tls="none", users=None, size_limit=64 * 1024 * 1024,
                 auth_over_plaintext=False, hostname="smarthost.test", exclude_mechanisms=()):
        self.behaviour = Behaviour()
        self.behaviour.users = dict(users or {})
        self.messages = []
        self.refused = []
        self.auth_attempts = []  # (mechanism, user, success)
        self.dropped = 0
        self.sessions = 0  # EHLO/HELO seen (the controller's own start-up probe says neither)
        self.lock = threading.Lock()
        self.port = free_port()
        kwargs = dict(data_size_limit=size_limit, timeout=60)
        if tls == "starttls":
            kwargs.update(tls_context=ca.server_context(), require_starttls=True)
        if self.behaviour.users:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          # aiosmtpd only counts STARTTLS as TLS; implicit TLS is TLS too.
                          auth_require_tls=not auth_over_plaintext and tls != "implicit",
                          auth_exclude_mechanism=list(exclude_mechanisms))
        self.controller = _Controller(self, _Handler(self), hostname="127.0.0.1", port=self.port,
                                      ssl_context=ca.server_context() if tls == "implicit" else None,
                                      server_hostname="localhost", **kwargs)
        # Controller takes "hostname" for the listening address; the SMTP one goes here.
        self.controller.SMTP_kwargs["hostname"] = hostname

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = self.behaviour.users.get(user) == password
        self.auth_attempts.append((mechanism, user, ok))
        if ok:
            session.leafmail_user = user
        # handled=False: aiosmtpd then answers a refusal with 535 itself (its default, True,
        # means "already answered", and the client would wait for a reply that never comes).
        return AuthResult(success=ok, handled=False)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop(no_assert=True)

    def wait_for_messages(self, count, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.messages) >= count

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SilentServer:
    """Accepts connections and never says a word (a stalled smarthost)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
