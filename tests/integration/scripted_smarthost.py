"""A raw, scripted smarthost for leafmail-flush's hardening tests: plain sockets in threads of
the test process, on a free loopback port. It speaks just enough SMTP (EHLO/HELO, STARTTLS,
AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT) to deliver messages, and misbehaves on
purpose at a chosen step: replies written one byte at a time or split at odd offsets,
multi-line greeting and EHLO, garbage, a reply line of 1 MiB without CRLF, a reset (RST) or a
close (FIN), a stall, plaintext in the TLS handshake, no reply to the final dot. A fault hits
the first `faulty_connections` connections only, so the same server then shows that the
deferred message goes out next time. It records every command and every message it got.

Everything is bounded: socket timeouts, stalls capped and cut short by stop()."""

import base64
import socket
import ssl
import struct
import threading
import time

IO_TIMEOUT = 30.0
MAX_LINE = 64 * 1024
MAX_MESSAGE = 64 * 1024 * 1024

# The steps at which a fault can be injected, in the order of a transaction.
STEPS = ("greeting", "ehlo", "starttls", "tls", "auth", "mail", "rcpt", "data", "content", "dot")

# The five sequences a receiver might take for the end of the data (SMTP smuggling research,
# CVE-2023-51764/5/6). A lenient server ends the data at the first of them it finds.
LENIENT_TERMINATORS = (b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n")


class Stopped(Exception):
    pass


class Message:
    def __init__(self, mail_from, rcpt_tos, content, tls, connection):
        self.mail_from = mail_from
        self.rcpt_tos = rcpt_tos
        self.content = content
        self.tls = tls
        self.connection = connection


class Connection:
    """One accepted client; what it saw is kept for the test."""

    def __init__(self, server, sock, index):
        self.server = server
        self.sock = sock
        self.index = index
        self.buffer = b""
        self.tls = False
        self.commands = []        # (command line without CRLF, under TLS?)
        self.events = []          # what the server did: "fault:<step>:<action>", "tls", ...
        self.closed_by_client = False

    # --- byte level -------------------------------------------------------------------------
    def send(self, data, split=None):
        """Writes data whole, or one byte at a time ("bytewise"), or cut at odd offsets ("odd")."""
        split = split if split is not None else self.server.split
        if not split:
            self.sock.sendall(data)
            return
        if split == "bytewise":
            pieces = [data[i:i + 1] for i in range(len(data))]
        else:  # "odd": 1, 2, 3, 5, 7, 11, ... octets
            sizes = [1, 2, 3, 5, 7, 11, 13, 17]
            pieces, at, k = [], 0, 0
            while at < len(data):
                pieces.append(data[at:at + sizes[k % len(sizes)]])
                at += sizes[k % len(sizes)]
                k += 1
        for piece in pieces:
            self.sock.sendall(piece)
            self.server.sleep(self.server.split_delay)

    def reply(self, text):
        """text: one line or a list of lines of one reply ("250-a", "250 b"), CRLF added."""
        lines = [text] if isinstance(text, str) else list(text)
        self.send("".join(line + "\r\n" for line in lines).encode())

    def _fill(self):
        if self.server.stopping.is_set():
            raise Stopped()
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed_by_client = True
            raise ConnectionError("client closed")
        self.buffer += chunk

    def read_line(self):
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise ConnectionError("command line too long")
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def read_data(self):
        """Content up to the end of data, un-dot-stuffed. A strict server only knows
        <CRLF>.<CRLF>; a lenient one ends at the first of LENIENT_TERMINATORS."""
        # The DATA command's CRLF counts as the line end before a "." at the very start.
        raw = b"\r\n"
        terminators = LENIENT_TERMINATORS if self.server.lenient_data_end else (b"\r\n.\r\n",)
        while True:
            ends = sorted((raw.find(t), t) for t in terminators if raw.find(t) >= 0)
            if ends:
                at, t = ends[0]
                self.buffer = raw[at + len(t):] + self.buffer
                # The line end in front of the dot belongs to the content's last line.
                body = raw[2:at] + t[:t.index(b".")] if at >= 2 else b""
                break
            if len(raw) > MAX_MESSAGE:
                raise ConnectionError("message too large")
            if self.buffer:
                raw += self.buffer
                self.buffer = b""
            else:
                self._fill()
        # RFC 5321 section 4.5.2: remove the dot added at the start of each CRLF line.
        lines = body.split(b"\r\n")
        return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)

    def reset(self):
        """Abort with a TCP RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # --- faults -------------------------------------------------------------------------------
    def fault(self, step):
        """The action configured for step on this connection, or None."""
        if self.index >= self.server.faulty_connections:
            return None
        return self.server.faults.get(step)

    def misbehave(self, step, action):
        """Carries out action at step. Returns normally only for actions after which the
        session goes on; raises Ended otherwise."""
        self.events.append("fault:%s:%s" % (step, action if isinstance(action, str) else "custom"))
        self.server.faults_done += 1
        if callable(action):
            action(self)
            raise Ended()
        if action == "reset":
            self.reset()
        elif action == "close":
            self.close()
        elif action == "stall":
            self.server.sleep(self.server.stall_seconds)
            self.close()
        elif action == "garbage":
            self.send(b"hello there, this is not SMTP\r\n")
            self.server.sleep(self.server.stall_seconds)
            self.close()
        elif action == "long":
            # 1 MiB on one line, no CRLF; then wait (the client must give up on its own).
            try:
                self.send(b"250-" + b"x" * (1024 * 1024), split=False)
            except OSError:
                pass
            self.server.sleep(self.server.stall_seconds)
            self.close()
        elif action.startswith("answer:"):
            # Answer this command with the given reply instead, and go on with the session.
            self.send(action[len("answer:"):].encode() + b"\r\n")
            return
        elif action.startswith("reply:"):
            self.send(action[len("reply:"):].encode(), split=None)
            self.server.sleep(self.server.stall_seconds)
            self.close()
        else:
            raise ValueError(action)
        raise Ended()


class Ended(Exception):
    pass


class ScriptedSmarthost:
    """faults: {step: action}; action is "reset", "close", "stall", "garbage", "long",
    "reply:<raw bytes>" or a callable(connection). split: None, "bytewise" or "odd".
    tls_context: offer STARTTLS with it. users: {user: password} for AUTH PLAIN/LOGIN."""

    def __init__(self, faults=None, faulty_connections=1, split=None, split_delay=0.0,
                 greeting=("220 scripted.test ESMTP",), ehlo_extra=(), tls_context=None,
                 users=None, auth_mechanisms="PLAIN LOGIN", plain_continuation=False, stall_seconds=60.0, lenient_data_end=False, data_reply="250 2.0.0 queued",
                 max_recipients=None, eight_bit_mime=True):
        self.faults = dict(faults or {})
        for step in self.faults:
            assert step in STEPS, step
        self.faulty_connections = faulty_connections
        self.split = split
        self.split_delay = split_delay
        self.greeting = list(greeting)
        self.ehlo_extra = list(ehlo_extra)
        self.tls_context = tls_context
        self.users = dict(users or {})
        self.auth_mechanisms = auth_mechanisms
        self.plain_continuation = plain_continuation  # ignore PLAIN's initial response: 334
        self.stall_seconds = stall_seconds
        self.lenient_data_end = lenient_data_end
        self.data_reply = data_reply
        self.max_recipients = max_recipients  # per transaction; more get 452 4.5.3
        self.eight_bit_mime = eight_bit_mime  # offer 8BITMIME (RFC 6152)
        self.connections = []
        self.messages = []   # accepted with the data reply
        self.refused = []    # read whole, then answered by a fault at "dot"
        self.auth_seen = []  # (mechanism, user, ok, under TLS?)
        self.faults_done = 0
        self.errors = []     # unexpected exceptions in the server threads
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)

    def start(self):
        self.acceptor.start()
        return self

    def stop(self):
        self.stopping.set()
        self.acceptor.join(5)
        for c in list(self.connections):
            try:
                c.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv()
            except OSError:
                pass
            c.close()
        for t in self.threads:
            t.join(5)
        self.listener.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def sleep(self, seconds):
        """A stall that stop() cuts short."""
        if seconds and self.stopping.wait(seconds):
            raise Stopped()

    def mail_commands(self, in_clear_only=False):
        return [cmd for c in self.connections for cmd, tls in c.commands
                if cmd.upper().startswith("MAIL") and not (in_clear_only and tls)]

    def _accept(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(IO_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                c = Connection(self, sock, len(self.connections))
                self.connections.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c):
        try:
            self._session(c)
        except (Ended, Stopped, ConnectionError, socket.timeout, ssl.SSLError, OSError):
            pass
        except Exception as e:  # a bug in this fixture: let the test see it
            self.errors.append(repr(e))
        finally:
            c.close()

    def _ehlo_lines(self, c, name):
        caps = (["8BITMIME"] if self.eight_bit_mime else []) + ["SIZE 104857600",
                                                                "ENHANCEDSTATUSCODES"]
        caps += self.ehlo_extra
        if self.tls_context and not c.tls:
            caps.append("STARTTLS")
        if self.users and c.tls:
            caps.append("AUTH " + self.auth_mechanisms)
        lines = ["scripted.test greets " + name] + caps
        return ["250-" + l for l in lines[:-1]] + ["250 " + lines[-1]]

    def _maybe(self, c, step):
        """Misbehaves at step if told to; True when the command was answered already."""
        action = c.fault(step)
        if action is None:
            return False
        c.misbehave(step, action)
        return True

    def _session(self, c):
        if not self._maybe(c, "greeting"):
            c.reply(self.greeting)
        mail_from, rcpts, authed = None, [], not self.users
        while True:
            line = c.read_line()
            text = line.decode("utf-8", "replace")
            c.commands.append((text, c.tls))
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO":
                if not self._maybe(c, "ehlo"):
                    c.reply(self._ehlo_lines(c, text[5:]))
            elif verb == "HELO":
                c.reply("250 scripted.test")
            elif verb == "STARTTLS" and self.tls_context and not c.tls:
                if self._maybe(c, "starttls"):
                    continue
                c.reply("220 2.0.0 go ahead")
                self._maybe(c, "tls")
                c.sock = self.tls_context.wrap_socket(c.sock, server_side=True)
                c.buffer = b""  # RFC 3207 section 4.2: forget plaintext input
                c.tls = True
                c.events.append("tls")
            elif verb == "AUTH":
                if self._maybe(c, "auth"):
                    continue
                authed = self._auth(c, text) or authed
            elif verb == "MAIL":
                if self._maybe(c, "mail"):
                    continue
                if not authed:
                    c.reply("530 5.7.0 authentication required")
                    continue
                mail_from, rcpts = text[10:].split(">")[0].lstrip("<"), []
                c.reply("250 2.1.0 ok")
            elif verb == "RCPT":
                if self._maybe(c, "rcpt"):
                    continue
                if self.max_recipients is not None and len(rcpts) >= self.max_recipients:
                    c.reply("452 4.5.3 too many recipients")  # RFC 5321 section 4.5.3.1.10
                    continue
                rcpts.append(text[8:].split(">")[0].lstrip("<"))
                c.reply("250 2.1.5 ok")
            elif verb == "DATA":
                if self._maybe(c, "data"):
                    continue
                c.reply("354 go ahead")
                action = c.fault("content")
                if action is not None:
                    # Read a part of the content, then misbehave in its middle.
                    while len(c.buffer) < 64:
                        c._fill()
                    c.misbehave("content", action)
                content = c.read_data()
                message = Message(mail_from, rcpts, content, c.tls, c.index)
                if self._maybe(c, "dot"):
                    self.refused.append(message)  # answered otherwise: not accepted
                else:
                    with self.lock:
                        self.messages.append(message)
                    c.reply(self.data_reply)
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                c.reply("250 2.0.0 ok")
            elif verb == "NOOP":
                c.reply("250 2.0.0 ok")
            elif verb == "QUIT":
                c.reply("221 2.0.0 bye")
                if c.tls:
                    # The client should end TLS with close_notify (RFC 8446 section 6.1):
                    # unwrap() answers it and fails on a bare TCP close.
                    try:
                        c.sock.unwrap()
                        c.events.append("close_notify")
                    except (ssl.SSLError, OSError) as e:
                        c.events.append("no close_notify: %r" % e)
                return
            else:
                c.reply("500 5.5.2 unknown command")

    def _auth(self, c, text):
        words = text.split()
        mechanism = words[1].upper() if len(words) > 1 else ""
        if mechanism == "PLAIN":
            if len(words) > 2 and not self.plain_continuation:
                payload = words[2]
            else:
                c.reply("334 ")
                payload = c.read_line().decode()
            try:
                _, user, password = base64.b64decode(payload).split(b"\0", 2)
            except Exception:
                c.reply("501 5.5.2 bad payload")
                return False
        elif mechanism == "LOGIN":
            c.reply("334 VXNlcm5hbWU6")
            user = base64.b64decode(c.read_line())
            c.reply("334 UGFzc3dvcmQ6")
            password = base64.b64decode(c.read_line())
        else:
            c.reply("504 5.5.4 unsupported mechanism")
            return False
        user, password = user.decode("utf-8", "replace"), password.decode("utf-8", "replace")
        ok = self.users.get(user) == password
        self.auth_seen.append((mechanism, user, ok, c.tls))
        c.reply("235 2.7.0 ok" if ok else "535 5.7.8 bad credentials")
        return ok
