"""Every HTTP request the UI makes, none of them blocking the event loop.

Requests go through one `QNetworkAccessManager`, which runs them inside Qt's
event loop; streamed answers (pull and create progress, NDJSON) arrive as
`received` signals line by line (a chat answer arrives the same way). Hashing a dropped `.gguf` runs on the thread
pool. The UI is a client of the HTTP API like any other program: it works
the same against the embedded server and against one already running.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QFile, QIODevice, QObject, QRunnable, QThreadPool, QUrl, Signal
from PySide6.QtNetwork import QNetworkAccessManager, QNetworkProxy, QNetworkReply, QNetworkRequest

from ui.errors import ApiError

log = logging.getLogger("pollama.ui.client")

DEFAULT_TIMEOUT_MS = 60_000
_STATUS = QNetworkRequest.Attribute.HttpStatusCodeAttribute


class Call(QObject):
    """One request in flight. Emits `received` per NDJSON line when streaming, then `succeeded` or `failed`.

    `succeeded` carries the parsed JSON body (None when empty); for a stream, the last event.
    """

    succeeded = Signal(object)
    failed = Signal(object)
    received = Signal(object)
    ended = Signal()

    def __init__(self, parent: QObject | None = None, *, streaming: bool = False) -> None:
        super().__init__(parent)
        self.streaming = streaming
        self.finished = False
        self.result: Any = None
        self.error: ApiError | None = None
        self._reply: QNetworkReply | None = None
        self._buffer = b""
        self._last: Any = None
        self._status = 0

    # -- lifecycle -----------------------------------------------------------------
    def attach(self, reply: QNetworkReply) -> None:
        self._reply = reply
        reply.readyRead.connect(self._on_ready_read)
        reply.finished.connect(self._on_finished)

    def abort(self) -> None:
        """Stop waiting; the call fails with a 'cancelled' error (a no-op once finished)."""
        if self.finished:
            return
        if self._reply is not None:
            self._reply.abort()
        else:
            self.fail(ApiError(0, "", "cancelled"))

    def succeed(self, result: Any) -> None:
        if self.finished:
            return
        self.finished, self.result = True, result
        self.succeeded.emit(result)
        self.ended.emit()

    def fail(self, error: ApiError) -> None:
        if self.finished:
            return
        self.finished, self.error = True, error
        log.info("request failed: %s (%s)", error.message or error.network, error.status)
        self.failed.emit(error)
        self.ended.emit()

    # -- reply handling -----------------------------------------------------------------
    def _http_status(self) -> int:
        if self._reply is None:
            return 0
        value = self._reply.attribute(_STATUS)
        return int(value) if value is not None else 0

    def _on_ready_read(self) -> None:
        assert self._reply is not None
        self._status = self._status or self._http_status()
        self._buffer += bytes(self._reply.readAll().data())
        if self.streaming and 200 <= self._status < 300:
            self._emit_lines(final=False)

    def _emit_lines(self, *, final: bool) -> None:
        *lines, rest = self._buffer.split(b"\n")
        if final:
            lines.append(rest)
            rest = b""
        self._buffer = rest
        for line in lines:
            if not line.strip() or self.finished:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("error"):
                self.fail(ApiError(self._status or 200, str(obj["error"])))
                return
            self._last = obj
            self.received.emit(obj)

    def _on_finished(self) -> None:
        reply = self._reply
        assert reply is not None
        self._status = self._http_status() or self._status
        if reply.isOpen():
            self._buffer += bytes(reply.readAll().data())
        network_error = reply.error()
        reply.deleteLater()
        self._reply = None
        if self._status == 0 or (network_error != QNetworkReply.NetworkError.NoError and not 400 <= self._status < 600):
            cancelled = network_error == QNetworkReply.NetworkError.OperationCanceledError
            self.fail(ApiError(0, "", "cancelled" if cancelled else reply.errorString()))
            return
        if self._status >= 400:
            self.fail(ApiError(self._status, _error_text(self._buffer)))
            return
        if self.streaming:
            self._emit_lines(final=True)
            self.succeed(self._last)
            return
        body = self._buffer.strip()
        try:
            self.succeed(json.loads(body) if body else None)
        except ValueError:
            self.succeed(body.decode("utf-8", "replace"))


def _error_text(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return text
    if isinstance(obj, dict) and "error" in obj:
        return str(obj["error"])
    return text


class _HashSignals(QObject):
    done = Signal(str)
    failed = Signal(str)


class _HashJob(QRunnable):
    """SHA-256 of a file on the thread pool (a multi-GB `.gguf` takes seconds)."""

    def __init__(self, path: Path, signals: _HashSignals) -> None:
        super().__init__()
        self.path, self.signals = path, signals

    def run(self) -> None:
        try:
            h = hashlib.sha256()
            with open(self.path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError as exc:
            self.signals.failed.emit(f"cannot read {self.path.name}: {exc.strerror or exc}")
            return
        self.signals.done.emit("sha256:" + h.hexdigest())


class UploadCall(Call):
    """Hash a file, ask whether the server has it (`HEAD /api/blobs`), upload it if not. Succeeds with the digest."""

    def __init__(self, client: ApiClient, path: Path) -> None:
        super().__init__(client)
        self.client, self.path, self.digest = client, path, ""
        self._signals = _HashSignals(self)
        self._signals.done.connect(self._hashed)
        self._signals.failed.connect(lambda msg: self.fail(ApiError(400, msg)))
        QThreadPool.globalInstance().start(_HashJob(path, self._signals))

    def abort(self) -> None:
        self.fail(ApiError(0, "", "cancelled"))

    def _hashed(self, digest: str) -> None:
        if self.finished:
            return
        self.digest = digest
        head = self.client.request("HEAD", f"/api/blobs/{digest}")
        head.succeeded.connect(lambda _: self.succeed(digest))
        head.failed.connect(self._maybe_upload)

    def _maybe_upload(self, error: ApiError) -> None:
        if error.status != 404:
            self.fail(error)
            return
        file = QFile(str(self.path), self)
        if not file.open(QIODevice.OpenModeFlag.ReadOnly):
            self.fail(ApiError(400, f"cannot read {self.path.name}"))
            return
        req = self.client.build_request(f"/api/blobs/{self.digest}", timeout_ms=0)
        req.setHeader(QNetworkRequest.KnownHeaders.ContentTypeHeader, "application/octet-stream")
        req.setHeader(QNetworkRequest.KnownHeaders.ContentLengthHeader, file.size())
        post = Call(self.client)
        post.attach(self.client.manager.post(req, file))
        post.succeeded.connect(lambda _: self.succeed(self.digest))
        post.failed.connect(self.fail)
        post.ended.connect(file.close)


class ApiClient(QObject):
    """The server's HTTP API as Qt calls. `base_url` may change (the server moved ports)."""

    def __init__(self, base_url: str, parent: QObject | None = None, *, api_key: str | None = None) -> None:
        super().__init__(parent)
        self.base_url = base_url.rstrip("/")
        #: Sent as `Authorization: Bearer` when the server has API keys (`POLLAMA_API_KEYS`); may change on restart.
        self.api_key = api_key
        self.manager = QNetworkAccessManager(self)
        # The server is (almost always) on loopback: a system proxy must not see these requests.
        self.manager.setProxy(QNetworkProxy(QNetworkProxy.ProxyType.NoProxy))
        self._live: set[Call] = set()

    def build_request(self, path: str, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> QNetworkRequest:
        req = QNetworkRequest(QUrl(self.base_url + path))
        req.setTransferTimeout(timeout_ms)
        req.setRawHeader(b"Accept", b"application/json, application/x-ndjson")
        if self.api_key:
            req.setRawHeader(b"Authorization", b"Bearer " + self.api_key.encode("ascii", "replace"))
        req.setAttribute(
            QNetworkRequest.Attribute.RedirectPolicyAttribute, QNetworkRequest.RedirectPolicy.ManualRedirectPolicy
        )
        return req

    def request(
        self, method: str, path: str, body: Any = None, *, stream: bool = False, timeout_ms: int | None = None
    ) -> Call:
        call = Call(self, streaming=stream)
        req = self.build_request(path, timeout_ms=0 if stream else (timeout_ms or DEFAULT_TIMEOUT_MS))
        data = QByteArray(json.dumps(body).encode()) if body is not None else QByteArray()
        if body is not None:
            req.setHeader(QNetworkRequest.KnownHeaders.ContentTypeHeader, "application/json")
        if method == "GET":
            reply = self.manager.get(req)
        elif method == "HEAD":
            reply = self.manager.head(req)
        elif method == "POST":
            reply = self.manager.post(req, data)
        else:
            reply = self.manager.sendCustomRequest(req, method.encode(), data)
        call.attach(reply)
        self._keep(call)
        return call

    def _keep(self, call: Call) -> None:
        self._live.add(call)
        call.ended.connect(lambda: self._live.discard(call))

    def abort_all(self) -> None:
        for call in list(self._live):
            call.abort()

    # -- the API, one method per route -------------------------------------------------
    def tags(self) -> Call:
        return self.request("GET", "/api/tags")

    def show(self, model: str) -> Call:
        return self.request("POST", "/api/show", {"model": model})

    def delete(self, model: str) -> Call:
        return self.request("DELETE", "/api/delete", {"model": model})

    def copy(self, source: str, destination: str) -> Call:
        return self.request("POST", "/api/copy", {"source": source, "destination": destination})

    def create(self, body: dict[str, Any]) -> Call:
        return self.request("POST", "/api/create", {**body, "stream": True}, stream=True)

    def upload_blob(self, path: Path) -> Call:
        call = UploadCall(self, path)
        self._keep(call)
        return call

    def chat(self, body: dict[str, Any]) -> Call:
        """A streamed `/api/chat`; `abort()` closes the connection, which makes the server cancel it."""
        return self.request("POST", "/api/chat", {**body, "stream": True}, stream=True)

    def ps(self) -> Call:
        return self.request("GET", "/api/ps", timeout_ms=10_000)

    def unload(self, model: str) -> Call:
        """Ollama's way to unload: generate with no prompt and keep_alive 0."""
        return self.request("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False})

    def pull(self, model: str, *, insecure: bool = False) -> Call:
        body: dict[str, Any] = {"model": model, "stream": True}
        if insecure:
            body["insecure"] = True
        return self.request("POST", "/api/pull", body, stream=True)

    def devices(self) -> Call:
        return self.request("GET", "/api/pollama/devices", timeout_ms=15_000)

    def recent_requests(self, since: int = 0) -> Call:
        """The server's last requests after `seq` `since` (the Developer page's table)."""
        return self.request("GET", f"/api/pollama/requests?since={int(since)}", timeout_ms=10_000)

    def logs(self, since: int = 0, level: str = "debug") -> Call:
        """The server's log records after `seq` `since`, at `level` or above (the Developer page's tail)."""
        return self.request("GET", f"/api/pollama/logs?since={int(since)}&level={level}", timeout_ms=10_000)

    def estimate(self, model: str, *, insecure: bool = False, options: dict[str, Any] | None = None) -> Call:
        """Memory `model` needs; one not pulled is read from its registry (manifest and GGUF header only)."""
        body: dict[str, Any] = {"model": model}
        if insecure:
            body["insecure"] = True
        if options:
            body["options"] = options
        return self.request("POST", "/api/pollama/estimate", body, timeout_ms=60_000)
