"""Registry test servers on loopback: CNCF distribution (`docker-registry`), a token server, a fault proxy.

All of them run on free 127.0.0.1 ports with temporary storage, and say what
they saw (requests, bytes), so tests can assert on the wire and not only on
results.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import itertools
import json
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.live_server import free_port

REGISTRY_BINARY = "docker-registry"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"


def registry_available() -> bool:
    return shutil.which(REGISTRY_BINARY) is not None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---- distribution --------------------------------------------------------------------------


class RegistryServer:
    """`docker-registry serve` with its own config, storage folder and port."""

    def __init__(self, root: Path, *, auth: dict[str, Any] | None = None, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.auth = auth
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.auth:
            lines.append("auth:")
            for kind, options in self.auth.items():
                lines.append(f"  {kind}:")
                for key, value in options.items():
                    lines.append(f"    {key}: {value}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> RegistryServer:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "config.yml"
        path.write_text(self.config())
        log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()}")
            try:
                if httpx.get(self.url + "/v2/", timeout=1.0).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"docker-registry did not start: {self.log()}")

    def log(self) -> str:
        try:
            return (self.root / "registry.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """A bcrypt htpasswd file (distribution accepts only bcrypt)."""
    out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True)
    path.write_bytes(out.stdout)
    return path


# ---- uploading test models straight to a registry (no pollama involved) ------------------------


def upload_blob(client: httpx.Client, base: str, repo: str, data: bytes | Path) -> tuple[str, int]:
    """Monolithic upload (POST then PUT ?digest=); returns (digest, size)."""
    if isinstance(data, Path):
        h = hashlib.sha256()
        with open(data, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        digest, size = "sha256:" + h.hexdigest(), data.stat().st_size
    else:
        digest, size = "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
    if client.head(f"{base}/v2/{repo}/blobs/{digest}").status_code == 200:
        return digest, size
    r = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = httpx.URL(base).join(r.headers["location"])
    sep = "&" if "?" in str(location) else "?"
    if isinstance(data, Path):
        with open(data, "rb") as f:
            r = client.put(f"{location}{sep}digest={digest}", content=f, headers={"Content-Length": str(size)})
    else:
        r = client.put(f"{location}{sep}digest={digest}", content=data)
    assert r.status_code == 201, r.text
    return digest, size


def upload_model(
    client: httpx.Client, base: str, repo: str, tag: str, layers: list[tuple[str, bytes | Path]], config: bytes = b"{}"
) -> bytes:
    """Upload layers (media type, bytes or file) and a config, then the manifest; returns the manifest bytes."""
    out = []
    for media_type, data in layers:
        digest, size = upload_blob(client, base, repo, data)
        out.append({"mediaType": media_type, "digest": digest, "size": size})
    cdigest, csize = upload_blob(client, base, repo, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "digest": cdigest, "size": csize},
            "layers": out,
        },
        indent=3,  # registry-style bytes, not how pollama would write them: proves byte-for-byte storage
    ).encode()
    r = client.put(f"{base}/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": MANIFEST_V2})
    assert r.status_code == 201, r.text
    return manifest


# ---- token server (distribution's `auth: token`) ------------------------------------------------


class TokenServer:
    """Issues RS256 JWTs distribution accepts; Basic credentials required (no anonymous access)."""

    def __init__(
        self, root: Path, users: dict[str, str], *, service: str = "test-registry", issuer: str = "test-issuer"
    ) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = users
        self.service = service
        self.issuer = issuer
        self.requests: list[dict[str, Any]] = []
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pollama test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        root.mkdir(parents=True, exist_ok=True)
        self.bundle = root / "token-bundle.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._der = self.cert.public_bytes(serialization.Encoding.DER)
        self.port = free_port()
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.bundle),
            }
        }

    def issue(self, subject: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def start(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                auth = self.headers.get("Authorization", "")
                server.requests.append({"path": parts.path, "query": query, "authorization": auth})
                user = None
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if server.users.get(name) == password:
                        user = name
                if user is None:
                    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                    self.send_response(401)
                else:
                    token = server.issue(user, query.get("scope", []))
                    body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()


# ---- fault-injecting TCP proxy ---------------------------------------------------------------


@dataclass
class Faults:
    """What the proxy does to the server→client byte stream of each connection."""

    #: Bytes per second over all connections (0: unlimited).
    rate: float = 0.0
    #: Close the connection after this many bytes, for the next `drops` connections that get that far.
    drop_after: int = 0
    drops: int = 0
    #: Stop forwarding (connection left open) after this many bytes, for the next `stalls` connections.
    stall_after: int = 0
    stalls: int = 0
    #: Flip one byte inside the body of the next `flips` responses larger than 64 KiB.
    flips: int = 0


@dataclass
class _Response:
    header: bytearray = field(default_factory=bytearray)
    body_left: int = -1  # -1: reading the header


class FaultProxy:
    """A TCP proxy to `target` (host, port) that can throttle, drop, stall and corrupt.

    It also works as an HTTP forward proxy for plain-http registries: Go's
    server accepts absolute-form request lines, so forwarding bytes is enough.
    """

    def __init__(self, target: tuple[str, int], faults: Faults | None = None) -> None:
        self.target = target
        self.faults = faults or Faults()
        self.port = free_port()
        self.bytes_down = 0
        self.connections = 0
        self.requests: list[bytes] = []
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._lock = threading.Lock()
        self._next_send = 0.0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def main() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
                ready.set()
                async with self._server:
                    await self._server.serve_forever()

            try:
                loop.run_until_complete(main())
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():

            def cancel_all() -> None:
                if self._server is not None:
                    self._server.close()
                for task in asyncio.all_tasks():
                    task.cancel()

            try:
                loop.call_soon_threadsafe(cancel_all)
            except RuntimeError:
                pass
        if self._thread:
            self._thread.join(5)

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_down = 0
            self.requests.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        up = asyncio.create_task(self._pipe_up(reader, up_writer))
        down = asyncio.create_task(self._pipe_down(up_reader, writer))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for task in (up, down):
                task.cancel()
            for w in (writer, up_writer):
                w.close()

    async def _pipe_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            line = data.split(b"\r\n", 1)[0]
            if line[:4] in (b"GET ", b"HEAD", b"POST", b"PUT ", b"PATC"):
                self.requests.append(line)
            writer.write(data)
            await writer.drain()

    def _take(self, kind: str) -> int:
        """Claim one fault of `kind` for a connection; returns its byte threshold (0: none)."""
        with self._lock:
            f = self.faults
            if kind == "drop" and f.drops > 0 and f.drop_after:
                f.drops -= 1
                return f.drop_after
            if kind == "stall" and f.stalls > 0 and f.stall_after:
                f.stalls -= 1
                return f.stall_after
        return 0

    async def _pipe_down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        drop_at = stall_at = 0
        response = _Response()
        while chunk := await reader.read(65536):
            data = bytearray(chunk)
            if (
                not drop_at
                and not stall_at
                and sent + len(data)
                > min(x for x in (self.faults.drop_after or 1 << 62, self.faults.stall_after or 1 << 62))
            ):
                drop_at = self._take("drop")
                if not drop_at:
                    stall_at = self._take("stall")
            if self.faults.flips:
                self._maybe_flip(response, data)
            limit = drop_at or stall_at
            if limit and sent + len(data) >= limit:
                data = data[: max(0, limit - sent)]
            await self._throttle(len(data))
            writer.write(bytes(data))
            await writer.drain()
            sent += len(data)
            with self._lock:
                self.bytes_down += len(data)
            if drop_at and sent >= drop_at:
                writer.transport.abort()
                return
            if stall_at and sent >= stall_at:
                await asyncio.sleep(3600)

    def _maybe_flip(self, response: _Response, data: bytearray) -> None:
        i = 0
        while i < len(data):
            if response.body_left < 0:
                response.header += data[i : i + 1]
                i += 1
                if response.header.endswith(b"\r\n\r\n"):
                    length = 0
                    for line in bytes(response.header).split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    response.header.clear()
                    response.body_left = length
                    response.__dict__["flip_pending"] = length > 65536
                continue
            take = min(response.body_left, len(data) - i)
            if response.__dict__.get("flip_pending") and take > 0:
                with self._lock:
                    if self.faults.flips > 0:
                        self.faults.flips -= 1
                        data[i] ^= 0xFF
                response.__dict__["flip_pending"] = False
            i += take
            response.body_left -= take
            if response.body_left == 0:
                response.body_left = -1

    async def _throttle(self, n: int) -> None:
        rate = self.faults.rate
        if rate <= 0 or n == 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next_send)
        self._next_send = start + n / rate
        delay = self._next_send - now
        if delay > 0:
            await asyncio.sleep(delay)
