"""The blob-part fast path: http.client bodies read in place, kept-alive connections, and the httpx fallback."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from server.registry.errors import RegistryError
from server.registry.ranges import ConnectionPool, RawBody
from server.registry.transport import StreamedBody
from server.store.manifest import MODEL
from server.store.names import Name
from server.store.store import Store
from tests.server.registry.conftest import MakeService, local_model, random_bytes, run
from tests.support.registry import FaultProxy, RegistryServer, upload_model
from tests.support.registry_plugin import REGISTRY_PASSWORD, REGISTRY_USER

DATA = random_bytes(3_000_000, seed=3)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


class BlobServer:
    """HTTP/1.1 with keep-alive and Range; `mode` makes it misbehave: "short" ends a body early, "stall" never sends one."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.connections = 0
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                owner.connections += 1
                super().setup()

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                start, end = 0, len(DATA) - 1
                if rng := self.headers.get("Range"):
                    first, _, last = rng.removeprefix("bytes=").partition("-")
                    start, end = int(first), int(last)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(DATA)}")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                if owner.mode == "stall":
                    owner.release.wait(30)
                    return
                body = DATA[start : end + 1]
                if owner.mode == "short":
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/blob"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def blob_server() -> Iterator[BlobServer]:
    server = BlobServer()
    yield server
    server.stop()


@pytest.fixture
def pool() -> Iterator[ConnectionPool]:
    p = ConnectionPool(ssl.create_default_context(), connect_timeout=5, read_timeout=5)
    yield p
    p.close()


def read_all(body: RawBody | StreamedBody, size: int = 100_000) -> bytes:
    out = bytearray()
    view = memoryview(bytearray(size))
    while n := body.readinto(view):
        out += view[:n]
    return bytes(out)


def test_parts_share_one_kept_alive_connection(blob_server: BlobServer, pool: ConnectionPool) -> None:
    for start in (0, 1_000_000, 2_000_000):
        body = pool.get(blob_server.url, {"Range": f"bytes={start}-{start + 999_999}"})
        assert body.status == 206 and body.header("content-range") == f"bytes {start}-{start + 999_999}/{len(DATA)}"
        assert read_all(body) == DATA[start : start + 1_000_000]
        body.close()
    assert blob_server.connections == 1


def test_a_connection_the_server_closed_is_replaced(blob_server: BlobServer, pool: ConnectionPool) -> None:
    body = pool.get(blob_server.url, {"Range": "bytes=0-9"})
    read_all(body)
    body.close()
    key = ("http", "127.0.0.1", blob_server.port)
    idle = pool.take(key)
    assert idle is not None and idle.sock is not None
    idle.sock.shutdown(socket.SHUT_RDWR)  # what a server's keep-alive timeout looks like from here
    pool.put(key, idle)
    body = pool.get(blob_server.url, {"Range": "bytes=10-19"})
    assert read_all(body) == DATA[10:20]
    body.close()


def test_a_body_cut_short_keeps_what_came_and_is_not_reused(blob_server: BlobServer, pool: ConnectionPool) -> None:
    blob_server.mode = "short"
    body = pool.get(blob_server.url, {"Range": "bytes=0-999999"})
    view = memoryview(bytearray(1_000_000))
    n = body.readinto(view)
    assert n == 500_000 and bytes(view[:n]) == DATA[:500_000]
    assert body.readinto(view) == 0
    body.close()
    blob_server.mode = "ok"
    assert read_all(pool.get(blob_server.url, {"Range": "bytes=0-9"})) == DATA[:10]
    assert blob_server.connections == 2


def test_abort_wakes_a_blocked_read(blob_server: BlobServer, pool: ConnectionPool) -> None:
    blob_server.mode = "stall"
    body = pool.get(blob_server.url, {"Range": "bytes=0-9"})
    outcome: list[object] = []

    def reader() -> None:
        try:
            outcome.append(body.readinto(memoryview(bytearray(10))))
        except RegistryError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    body.abort()
    thread.join(10)
    assert not thread.is_alive() and outcome
    body.close()


def test_unreachable_host_is_worded_like_httpx(pool: ConnectionPool) -> None:
    with pytest.raises(RegistryError, match="cannot reach 127.0.0.1:9"):
        pool.get("http://127.0.0.1:9/blob", {})


async def test_direct_parts_take_the_fast_path_and_proxied_ones_httpx(
    make_service: MakeService, registry: RegistryServer, registry_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_model(registry_client, registry.url, "library/m", "latest", [(MODEL, DATA)])
    url = f"{registry.url}/v2/library/m/blobs/{DIGEST}"
    direct = make_service().transport.open_range(url, "bytes=5-14", authenticate=True)
    assert isinstance(direct, RawBody) and read_all(direct) == DATA[5:15]
    direct.close()
    proxy = FaultProxy(("127.0.0.1", registry.port)).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")  # httpx reads proxies from os.environ
        for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        service = make_service()
        proxied = service.transport.open_range(url, "bytes=5-14", authenticate=True)
        assert isinstance(proxied, StreamedBody) and read_all(proxied) == DATA[5:15]
        proxied.close()
        assert any(DIGEST.encode() in line for line in proxy.requests)
    finally:
        proxy.stop()


async def test_a_part_answered_401_gets_its_token_through_httpx(
    store: Store, make_service: MakeService, token_registry: RegistryServer
) -> None:
    """A fresh service has no token: the fast path's 401 goes to httpx, which answers the challenge; later parts reuse the token."""
    creds = {"POLLAMA_REGISTRY_USERNAME": REGISTRY_USER, "POLLAMA_REGISTRY_PASSWORD": REGISTRY_PASSWORD}
    name = f"{token_registry.host}/team/m"
    local_model(store, name, DATA)
    assert (await run(make_service(creds).push(Name.parse(name), insecure=True)))[-1] == {"status": "success"}
    transport = make_service(creds).transport
    url = f"{token_registry.url}/v2/team/m/blobs/{DIGEST}"
    first = transport.open_range(url, "bytes=0-9", authenticate=True)
    assert isinstance(first, StreamedBody) and first.status == 206 and read_all(first) == DATA[:10]
    first.close()
    second = transport.open_range(url, "bytes=10-19", authenticate=True)
    assert isinstance(second, RawBody) and second.status == 206 and read_all(second) == DATA[10:20]
    second.close()
