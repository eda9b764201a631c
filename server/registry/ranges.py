"""Ranged GETs of blob bytes, read straight into the caller's buffer.

httpx hands a streamed body out as a new 64 KiB `bytes` object per read; at
loopback speed allocating, joining and copying those cost more CPU than the
socket itself (measured on a 262 MB blob: 0.35 s of CPU through httpx, 0.13 s
through http.client `readinto`). Blob bytes are therefore fetched with
http.client into one buffer per request that the caller reuses, over
connections kept alive in a small pool.

This is the fast path only. httpx still does everything else (manifests,
auth challenges, redirects, uploads) and any ranged GET that it must route (a
proxy from the environment) or that needs a fresh token;
`transport.StreamedBody` gives such a response the same `RangeBody` interface,
so the download code does not care which path a request took.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from server.registry.errors import RegistryError, Unreachable

#: What an error response body may contribute to a message.
_ERROR_TEXT = 64 * 1024
#: Idle keep-alive connections kept per host.
_IDLE_PER_HOST = 16
#: Most bytes one read may bring (http.client fills it from several `recv`s); a failed read loses at most
#: this much of a filled buffer. Reads of 256 KiB cost the reading thread about a quarter more CPU than 1 MB.
_STEP = 1024 * 1024


class BodyStalled(RegistryError):
    """No byte arrived within the read timeout (the request is restarted, not counted as a failure)."""


class RangeBody(Protocol):
    """A response to a ranged GET, its body read in place."""

    status: int

    def header(self, name: str) -> str | None: ...

    def readinto(self, view: memoryview) -> int:
        """Fill `view` from the body; fewer bytes only at its end or before a failure, 0 once it is over."""
        ...

    def text(self) -> str:
        """The (short) body of an error response, for the message."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """From another thread: make a blocked `readinto` return now (the download was called off)."""
        ...


def describe_os(exc: BaseException, url: str) -> str:
    """A socket-level failure in the words `transport.describe` uses for httpx's."""
    host = urlsplit(url).netloc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {host} could not be verified ({text}); if the registry uses a private CA, "
            "set SSL_CERT_FILE to a bundle that includes it"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {host} failed: {text}"
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        return f"cannot reach {host}: {text}"
    return f"connection to {host} failed: {text}"


class FillingBody:
    """`readinto` that fills the whole buffer from several reads, and keeps what it got when one fails.

    Bytes that arrived before a dropped connection are returned (the caller
    writes them and the part keeps that progress); the failure is raised on
    the next call.
    """

    _error: RegistryError | None = None

    def _read_some(self, view: memoryview) -> int:
        """One read into `view`: 0 at the end of the body; raises RegistryError."""
        raise NotImplementedError

    def readinto(self, view: memoryview) -> int:
        if self._error is not None:
            raise self._error
        filled = 0
        while filled < len(view):
            try:
                n = self._read_some(view[filled : filled + _STEP])
            except RegistryError as exc:
                if not filled:
                    raise
                self._error = exc
                break
            if not n:
                break
            filled += n
        return filled


class RawBody(FillingBody):
    """A body read by http.client `readinto`: no new `bytes` per read, one copy from the socket."""

    def __init__(
        self,
        pool: ConnectionPool,
        key: tuple[str, str, int],
        conn: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        url: str,
    ) -> None:
        self._pool = pool
        self._key = key
        self._conn = conn
        self._response = response
        self._url = url
        self._broken = False
        self._closed = False
        self.status = response.status

    def header(self, name: str) -> str | None:
        return self._response.getheader(name)

    def _read_some(self, view: memoryview) -> int:
        try:
            return self._response.readinto(view)
        except TimeoutError as exc:
            raise BodyStalled("no data within the read timeout") from exc
        except http.client.IncompleteRead:
            self._broken = True
            return 0  # the connection ended early: the part comes up short, and the caller says so
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(describe_os(exc, self._url)) from exc

    def text(self) -> str:
        with contextlib.suppress(OSError, http.client.HTTPException):
            return self._response.read(_ERROR_TEXT).decode("utf-8", "replace").strip()[:500]
        return ""

    def close(self) -> None:
        """Back to the pool if the body was read to its end and the server keeps the connection."""
        if self._closed:
            return
        self._closed = True
        reusable = not self._broken and self._response.isclosed() and not self._response.will_close
        self._response.close()
        if reusable:
            self._pool.put(self._key, self._conn)
        else:
            self._conn.close()

    def abort(self) -> None:
        self._broken = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class ConnectionPool:
    """Keep-alive http.client connections per (scheme, host, port), each used by one thread at a time."""

    def __init__(self, ssl_context: ssl.SSLContext, *, connect_timeout: float, read_timeout: float) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def put(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < _IDLE_PER_HOST:
                idle.append(conn)
                return
        conn.close()

    def connect(self, key: tuple[str, str, int]) -> http.client.HTTPConnection:
        """A new connection; the connect timeout applies to connecting, the stall timeout to every read after."""
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self.connect_timeout, context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)
        return conn

    def close(self) -> None:
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    def get(self, url: str, headers: Mapping[str, str]) -> RawBody:
        """Send a GET and read its status and headers; raises RegistryError if no response came.

        A kept-alive connection the server has meanwhile closed fails on
        first use; that try is repeated once on a new connection.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        key = (scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self.take(key)
        if conn is not None:
            try:
                return self._send(key, conn, target, headers, url)
            except (OSError, http.client.HTTPException):
                conn.close()
        try:
            conn = self.connect(key)
        except TimeoutError as exc:
            raise Unreachable(f"cannot reach {parts.netloc}: connection timed out") from exc
        except OSError as exc:
            raise Unreachable(describe_os(exc, url)) from exc
        try:
            return self._send(key, conn, target, headers, url)
        except TimeoutError as exc:
            conn.close()
            raise BodyStalled("no response within the read timeout") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise Unreachable(describe_os(exc, url)) from exc

    def _send(
        self,
        key: tuple[str, str, int],
        conn: http.client.HTTPConnection,
        target: str,
        headers: Mapping[str, str],
        url: str,
    ) -> RawBody:
        conn.request("GET", target, headers=dict(headers))
        return RawBody(self, key, conn, conn.getresponse(), url)
