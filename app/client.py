"""An HTTP client of pollama's (Ollama's) native API, for the CLI.

The CLI is only a client: everything it knows about models it learns over
HTTP, so it behaves the same against a `pollama serve`, the tray app, or a
real Ollama. Failures become two exception types a command can print as
`Error: <message>`: `APIError` (the server answered with an error) and
`ServerUnreachable` (nothing answered at `OLLAMA_HOST`).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from server import __version__

UNREACHABLE = "could not connect to pollama server — start it with `pollama serve` or the pollama app"


class ClientError(Exception):
    """Anything the CLI reports as `Error: <message>` with exit code 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class APIError(ClientError):
    """The server answered with an error (`{"error": ...}`, or a non-JSON body)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ServerUnreachable(ClientError):
    def __init__(self, message: str = UNREACHABLE) -> None:
        super().__init__(message)


def base_url(env: dict[str, str] | None = None) -> str:
    """The server URL from `OLLAMA_HOST`, parsed with the server's own rules (plus a client path)."""
    from server.config import ConfigError, clean, parse_host

    raw = (env if env is not None else os.environ).get("OLLAMA_HOST", "")
    try:
        address = parse_host(raw)
    except ConfigError as exc:
        raise ClientError(str(exc)) from None
    text = clean(raw)
    rest = text.split("://", 1)[1] if "://" in text else text
    path = "/" + rest.split("/", 1)[1] if "/" in rest else ""
    return address.url + path.rstrip("/")


def _is_loopback(url: str) -> bool:
    host = httpx.URL(url).host
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.startswith("127.")


def user_agent() -> str:
    return f"pollama/{__version__} ({platform.machine()} {sys.platform}) Python/{platform.python_version()}"


def api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The key the CLI sends as `Authorization: Bearer`: `OLLAMA_API_KEY` (what ollama-python sends),
    else the first of `POLLAMA_API_KEYS`, so `pollama list` works beside a `pollama serve` that has keys."""
    from server.config import ConfigError, clean, parse_api_keys

    env = os.environ if environ is None else environ
    if clean(env.get("OLLAMA_API_KEY", "")):
        return clean(env["OLLAMA_API_KEY"])
    if not clean(env.get("POLLAMA_API_KEYS", "")):
        return None
    try:
        keys = parse_api_keys(env["POLLAMA_API_KEYS"])
    except ConfigError as exc:
        raise ClientError(str(exc)) from None
    return keys[0] if keys else None


class Client:
    """One connection pool to the server; every method is one API call."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or base_url()
        headers = {"User-Agent": user_agent(), "Accept": "application/json"}
        key = api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(None, connect=10.0),
            headers=headers,
            # Like Go's ProxyFromEnvironment, never send a loopback server through a proxy.
            trust_env=not _is_loopback(self.url),
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        try:
            if body is not None:
                kwargs["json"] = body
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ServerUnreachable() from None
        except httpx.TransportError as exc:
            raise ClientError(f"connection to {self.url} failed: {exc}") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def json(self, method: str, path: str, body: Any = None) -> Any:
        response = self.request(method, path, body)
        if not response.content.strip():
            return {}
        return response.json()

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST and yield each NDJSON object; an `{"error"}` line raises APIError.

        Closing the generator (or a KeyboardInterrupt inside the loop) closes
        the connection, which is how the server learns to stop generating.
        """
        try:
            with self._http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        raise APIError(f"unexpected server response: {line[:200]}") from None
                    if isinstance(event, dict) and event.get("error"):
                        raise APIError(str(event["error"]), response.status_code)
                    yield event
        except httpx.ConnectError:
            raise ServerUnreachable() from None
        except httpx.TransportError as exc:
            raise ClientError(f"connection to {self.url} lost: {exc}") from None

    # -- API ------------------------------------------------------------------

    def version(self) -> str:
        """pollama's version; a server without `/api/pollama/version` (Ollama) gives its own."""
        try:
            return str(self.json("GET", "/api/pollama/version").get("version", ""))
        except APIError:  # it answered, without the route: not pollama
            return str(self.json("GET", "/api/version").get("version", ""))

    def list(self) -> list[dict[str, Any]]:
        return list(self.json("GET", "/api/tags").get("models") or [])

    def ps(self) -> builtins.list[dict[str, Any]]:
        return list(self.json("GET", "/api/ps").get("models") or [])

    def show(
        self, model: str, *, verbose: bool = False, system: str | None = None, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model}
        if verbose:
            body["verbose"] = True
        if system:
            body["system"] = system
        if options:
            body["options"] = options
        return dict(self.json("POST", "/api/show", body))

    def delete(self, model: str) -> None:
        self.request("DELETE", "/api/delete", {"model": model})

    def copy(self, source: str, destination: str) -> None:
        self.request("POST", "/api/copy", {"source": source, "destination": destination})

    def pull(self, model: str, *, insecure: bool = False) -> Iterator[dict[str, Any]]:
        return self.stream("/api/pull", {"model": model, "insecure": insecure, "stream": True})

    def push(self, model: str, *, insecure: bool = False) -> Iterator[dict[str, Any]]:
        return self.stream("/api/push", {"model": model, "insecure": insecure, "stream": True})

    def create(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        return self.stream("/api/create", {**body, "stream": True})

    def generate(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        return self.stream("/api/generate", {**body, "stream": True})

    def chat(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        return self.stream("/api/chat", {**body, "stream": True})

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.json("POST", "/api/embed", body))

    def blob_exists(self, digest: str) -> bool:
        try:
            self.request("HEAD", f"/api/blobs/{digest}")
        except APIError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create_blob(self, path: Path, digest: str, on_progress: Callable[[int], None] | None = None) -> None:
        """Upload a local file as a blob unless the server already has it."""
        if self.blob_exists(digest):
            if on_progress:
                on_progress(path.stat().st_size)
            return

        def chunks() -> Iterator[bytes]:
            sent = 0
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    sent += len(chunk)
                    yield chunk
                    if on_progress:
                        on_progress(sent)

        self.request(
            "POST", f"/api/blobs/{digest}", content=chunks(), headers={"Content-Type": "application/octet-stream"}
        )


def file_digest(path: Path, on_progress: Callable[[int], None] | None = None) -> str:
    """`sha256:<hex>` of a file, read in chunks (model files are gigabytes)."""
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
            done += len(chunk)
            if on_progress:
                on_progress(done)
    return "sha256:" + h.hexdigest()


def _error_from(response: httpx.Response) -> APIError:
    """Ollama's client rule: the JSON `error` field if there is one, else the raw body."""
    status = response.status_code
    text = response.text.strip()
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("error"):
        return APIError(str(data["error"]), status)
    ctype = response.headers.get("content-type", "")
    if not text or "html" in ctype or text.lstrip().startswith("<"):
        return APIError(f"{status} {response.reason_phrase}".strip(), status)
    return APIError(text, status)
