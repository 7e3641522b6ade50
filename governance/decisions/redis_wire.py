"""A lean EVALSHA for the decision hot path: one send, one receive, nothing around them.

redis-py 8 wraps every command in a pool checkout (a lock, a pid check and a `poll` to see
whether the connection holds stray data), a retry policy, observability
counters and a generic argument packer; with a socket timeout, Python adds a `poll` before
each send and receive as well. A session check needs none of that: it sends one command and
reads one reply. `ScriptWire` holds one connection per thread, packs the command itself,
lets the kernel enforce the timeouts (SO_SNDTIMEO / SO_RCVTIMEO on a blocking socket, so no
`poll`) and parses the reply with hiredis. Anything unexpected closes the connection and
raises `WireError`: the caller fails closed, and the next call connects again.

It speaks plain RESP2 over TCP or a Unix socket, with AUTH and SELECT from the URL. A
`rediss://` URL (TLS) is not served here: `wire_for_url` returns None and the store keeps
using redis-py.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import weakref
from urllib.parse import unquote, urlsplit

import hiredis


class WireError(Exception):
    """The call did not complete: no connection, a timeout, a broken or refused reply."""


class ScriptMissing(WireError):
    """Redis does not hold the script (NOSCRIPT): load it and call again."""


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack(*args: bytes) -> bytes:
    """The RESP form of one command whose arguments are already bytes."""
    return b"*%d\r\n%s" % (len(args), b"".join(_bulk(a) for a in args))


class ScriptWire:
    def __init__(
        self,
        *,
        host: str = "",
        port: int = 6379,
        path: str = "",
        db: int = 0,
        username: str = "",
        password: str = "",
        timeout: float = 0.5,
    ):
        self.host, self.port, self.path = host, port, path
        self.db, self.username, self.password = db, username, password
        self.timeout = timeout
        self._local = threading.local()
        # A forked child must not share its parent's socket: it starts with none.
        forget = weakref.WeakMethod(self._forget)
        os.register_at_fork(after_in_child=lambda: (m := forget()) and m())

    def _forget(self) -> None:
        self._local = threading.local()

    def evalsha(self, sha: bytes, args: tuple[bytes, ...]):
        """Run a loaded script: `args` are the key count, keys and arguments, as bytes."""
        return self.request(pack(b"EVALSHA", sha, *args))

    def request(self, packed: bytes):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
        sock, reader = conn
        try:
            sock.sendall(packed)
            reply = reader.gets()
            while reply is False:
                chunk = sock.recv(65536)
                if not chunk:
                    raise WireError("Redis closed the connection")
                reader.feed(chunk)
                reply = reader.gets()
        except OSError as exc:  # includes the kernel's timeouts (EAGAIN)
            self.close()
            raise WireError(f"Redis call failed: {exc}") from exc
        except (WireError, hiredis.ProtocolError) as exc:
            self.close()
            raise WireError(str(exc)) from exc
        except BaseException:
            # Interrupted between the send and the reply (a signal, a timeout in the
            # server): the reply may still come, and must not answer the next call.
            self.close()
            raise
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            if message.startswith("NOSCRIPT"):
                raise ScriptMissing(message)
            raise WireError(message)
        return reply

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn[0].close()

    def _connect(self):
        sock = None
        try:
            if self.path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(self.path)
            else:  # resolves the name, IPv4 or IPv6
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Blocking from here on, with the timeouts kept by the kernel.
            sock.settimeout(None)
            seconds = int(self.timeout)
            timeval = struct.pack("ll", seconds, int((self.timeout - seconds) * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise WireError(f"cannot connect to Redis: {exc}") from exc
        self._local.conn = (sock, hiredis.Reader())
        if self.password:
            credentials = [self.password.encode()]
            if self.username:
                credentials.insert(0, self.username.encode())
            self._handshake(pack(b"AUTH", *credentials))
        if self.db:
            self._handshake(pack(b"SELECT", str(self.db).encode()))
        return self._local.conn

    def _handshake(self, packed: bytes) -> None:
        """AUTH or SELECT; a refusal closes the connection, so the next call starts over
        instead of reusing a connection that is not set up."""
        try:
            reply = self.request(packed)
        except WireError:
            self.close()
            raise
        if reply != b"OK":
            self.close()
            raise WireError("Redis refused the connection's setup")


def wire_for_url(url: str, *, timeout: float) -> ScriptWire | None:
    """A `ScriptWire` for a redis:// or unix:// URL; None for TLS or anything else."""
    parts = urlsplit(url)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    db = int(query.get("db") or 0)
    username, password = unquote(parts.username or ""), unquote(parts.password or "")
    if parts.scheme == "redis":
        path = (parts.path or "/").lstrip("/")
        return ScriptWire(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(path) if path else db,
            username=username,
            password=password,
            timeout=timeout,
        )
    if parts.scheme == "unix":
        return ScriptWire(
            path=parts.path, db=db, username=username, password=password, timeout=timeout
        )
    return None
