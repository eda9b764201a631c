"""Pull and push against a real CNCF distribution registry on loopback, in process."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from server.registry.errors import RegistryError
from server.registry.partial import PartialFile
from server.store.manifest import MODEL
from server.store.names import Name
from server.store.store import Store
from tests.server.registry.conftest import FAST, MakeService, local_model, random_bytes, run, run_error
from tests.support.registry import FaultProxy, Faults, RegistryServer, upload_model

WEIGHTS = random_bytes(5_300_000, seed=1)  # six parts of 1 MB with FAST settings
CONFIG = b'{"model_format":"gguf"}'


def seed(
    client: httpx.Client, host: str, repo: str = "library/m", tag: str = "latest", weights: bytes = WEIGHTS
) -> bytes:
    return upload_model(client, f"http://{host}", repo, tag, [(MODEL, weights)], config=CONFIG)


def blob_files(store: Store) -> list[str]:
    return sorted(p.name for p in store.blobs.root.iterdir())


async def test_pull_stores_manifest_byte_for_byte(
    store: Store, make_service: MakeService, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    raw = seed(registry_client, registry.host)
    name = Name.parse(f"{registry.host}/library/m")
    lines = await run(make_service().pull(name, insecure=True))
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer_lines = [
        line for line in lines if line["status"].startswith("pulling ") and line["status"] != "pulling manifest"
    ]
    assert all(line["status"] == f"pulling {line['digest'][7:19]}" for line in layer_lines)
    assert all("completed" not in line or 0 < line["completed"] <= line["total"] for line in layer_lines)
    model = store.require(name)
    assert model.manifest.raw == raw
    assert store.blobs.path(model.manifest.layers[0].digest).read_bytes() == WEIGHTS
    assert not [f for f in blob_files(store) if "partial" in f or f.startswith(".tmp")]

    # Pulled again: everything cached, reported complete at once.
    again = await run(make_service().pull(name, insecure=True))
    cached = [line for line in again if "digest" in line]
    assert all(line["completed"] == line["total"] for line in cached) and len(cached) == 2


async def test_pull_removes_layers_the_new_tag_no_longer_uses(
    store: Store, make_service: MakeService, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    name = Name.parse(f"{registry.host}/library/m")
    seed(registry_client, registry.host, weights=b"old weights")
    await run(make_service().pull(name, insecure=True))
    old = store.require(name).manifest.layers[0].digest
    seed(registry_client, registry.host, weights=b"new weights")
    lines = await run(make_service().pull(name, insecure=True))
    assert [line["status"] for line in lines][-3:] == ["writing manifest", "removing unused layers", "success"]
    assert not store.blobs.exists(old)


@pytest.mark.parametrize(
    ("name", "insecure", "message", "status"),
    [
        ("library/nope", True, "pull model manifest: file does not exist", 404),
        ("library/m", False, "pull model manifest: TLS", 502),  # https to a plain-http registry: no answer came
        ("http://{host}/library/m", False, "insecure protocol http", 500),
    ],
)
async def test_pull_errors(
    store: Store,
    make_service: MakeService,
    registry: RegistryServer,
    registry_client: httpx.Client,
    name: str,
    insecure: bool,
    message: str,
    status: int,
) -> None:
    seed(registry_client, registry.host)
    text = name.format(host=registry.host) if "{host}" in name else f"{registry.host}/{name}"
    _, error = await run_error(make_service().pull(Name.parse(text), insecure=insecure))
    assert message in str(error)
    assert error.status == status
    assert store.list() == []


async def test_unreachable_registry(make_service: MakeService) -> None:
    _, error = await run_error(make_service().pull(Name.parse("127.0.0.1:9/library/m"), insecure=True))
    assert str(error).startswith("pull model manifest: cannot reach 127.0.0.1:9")
    assert error.status == 502


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"<html>not json</html>", "text/html", "not JSON"),
        (
            json.dumps(
                {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
            ).encode(),
            "application/vnd.oci.image.index.v1+json",
            "unsupported manifest media type",
        ),
        (
            json.dumps({"schemaVersion": 1, "name": "x"}).encode(),
            "application/json",
            "unsupported manifest schema version",
        ),
    ],
)
def test_bad_manifests(body: bytes, content_type: str, message: str) -> None:
    from server.registry.pull import parse_manifest

    with pytest.raises(RegistryError, match=message):
        parse_manifest(body, content_type)


@pytest.mark.parametrize("direct_io", [True, False], ids=["direct", "buffered"])
async def test_drops_and_stalls_still_complete(
    store: Store,
    make_service: MakeService,
    registry_client: httpx.Client,
    registry: RegistryServer,
    fault_proxy: FaultProxy,
    direct_io: bool,
) -> None:
    """Each restart resumes at whatever byte the cut left, so writes start and end off the block boundaries."""
    seed(registry_client, registry.host)
    fault_proxy.faults = Faults(drop_after=300_000, drops=4, stall_after=200_000, stalls=2)
    name = Name.parse(f"{fault_proxy.host}/library/m")
    # Faults go to whichever connection gets there first: one part may meet all six of them.
    lines = await run(
        make_service(retry=replace(FAST.retry, max_tries=8), direct_io=direct_io).pull(name, insecure=True)
    )
    assert lines[-1] == {"status": "success"}
    assert fault_proxy.faults.drops == 0 and fault_proxy.faults.stalls == 0  # every fault was hit
    assert store.blobs.path(store.require(name).manifest.layers[0].digest).read_bytes() == WEIGHTS


async def test_a_slow_link_gets_more_lanes_that_split_the_work(
    store: Store,
    make_service: MakeService,
    registry_client: httpx.Client,
    registry: RegistryServer,
    fault_proxy: FaultProxy,
) -> None:
    seed(registry_client, registry.host)
    fault_proxy.faults = Faults(rate=4_000_000)  # about 1.3 s for the weights: lanes are added every 0.25 s
    name = Name.parse(f"{fault_proxy.host}/library/m")
    lines = await run(make_service().pull(name, insecure=True))
    assert lines[-1] == {"status": "success"}
    digest = "sha256:" + hashlib.sha256(WEIGHTS).hexdigest()
    assert store.blobs.path(digest).read_bytes() == WEIGHTS
    weights_gets = [r for r in fault_proxy.requests if digest.encode() in r and r.startswith(b"GET")]
    assert len(weights_gets) >= 2  # the one request for everything, then others that took parts of it
    assert fault_proxy.bytes_down < 1.3 * len(WEIGHTS)  # a lane that hands parts over stops where they begin


async def test_flipped_byte_is_a_digest_mismatch_and_nothing_is_kept(
    store: Store,
    make_service: MakeService,
    registry_client: httpx.Client,
    registry: RegistryServer,
    fault_proxy: FaultProxy,
) -> None:
    seed(registry_client, registry.host)
    fault_proxy.faults = Faults(flips=1)
    name = Name.parse(f"{fault_proxy.host}/library/m")
    lines, error = await run_error(make_service().pull(name, insecure=True))
    assert lines[-1] == {"status": "verifying sha256 digest"}
    digest = "sha256:" + hashlib.sha256(WEIGHTS).hexdigest()
    assert str(error).startswith(f"digest mismatch, file must be downloaded again: want {digest}, got sha256:")
    assert store.get(name) is None
    assert not store.blobs.exists(digest)
    assert not [f for f in blob_files(store) if digest[7:] in f]  # no partial data, no part records


async def test_disk_full_drops_the_partial_and_the_next_pull_starts_over(
    store: Store,
    make_service: MakeService,
    registry_client: httpx.Client,
    registry: RegistryServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bytes that fitted are what filled the disk: kept, they would keep it full (real disks: test_pull_disk_full)."""
    seed(registry_client, registry.host)
    name = Name.parse(f"{registry.host}/library/m")
    digest = "sha256:" + hashlib.sha256(WEIGHTS).hexdigest()
    real = PartialFile.write_at
    written = {"n": 0}

    def full_disk(self: PartialFile, data: bytes, offset: int) -> None:
        if self.final.name == digest.replace(":", "-") and written["n"] >= 2_000_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(data)
        real(self, data, offset)

    monkeypatch.setattr(PartialFile, "write_at", full_disk)
    _, error = await run_error(make_service(parallel=1).pull(name, insecure=True))
    assert str(error) == "writing download: no space left on device; free some disk space and try again"
    assert error.status == 500
    assert store.get(name) is None
    assert not [f for f in blob_files(store) if digest[7:] in f or f.startswith(".tmp")]  # no data, no records

    monkeypatch.setattr(PartialFile, "write_at", real)
    lines = await run(make_service().pull(name, insecure=True))
    assert lines[-1] == {"status": "success"}
    assert store.blobs.path(digest).read_bytes() == WEIGHTS


async def test_concurrent_pulls_share_one_download(
    store: Store,
    make_service: MakeService,
    registry_client: httpx.Client,
    registry: RegistryServer,
    fault_proxy: FaultProxy,
) -> None:
    seed(registry_client, registry.host)
    fault_proxy.faults = Faults(rate=10_000_000)
    service = make_service()
    name = Name.parse(f"{fault_proxy.host}/library/m")
    a, b = await asyncio.gather(run(service.pull(name, insecure=True)), run(service.pull(name, insecure=True)))
    assert a[-1] == b[-1] == {"status": "success"}
    digest = "sha256:" + hashlib.sha256(WEIGHTS).hexdigest()
    weights_gets = [r for r in fault_proxy.requests if digest.encode() in r and r.startswith(b"GET")]
    # One GET per lane's claim (the first also finds where the blob is), never more than one per part.
    assert 1 <= len(weights_gets) <= 6
    assert fault_proxy.bytes_down < 1.2 * len(WEIGHTS)


@pytest.mark.parametrize("direct_io", [False, True], ids=["buffered", "direct"])
async def test_cancelled_pull_resumes_where_it_stopped(
    store: Store,
    make_service: MakeService,
    registry_client: httpx.Client,
    registry: RegistryServer,
    fault_proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
    direct_io: bool,
) -> None:
    seed(registry_client, registry.host)
    fault_proxy.faults = Faults(rate=2_000_000)
    service = make_service(parallel=2, direct_io=direct_io)
    name = Name.parse(f"{fault_proxy.host}/library/m")
    events = service.pull(name, insecure=True)
    seen = 0
    async for line in events:
        if line.get("total") == len(WEIGHTS):
            seen = line.get("completed", 0)
            if seen > 1_500_000:
                break
    assert isinstance(events, AsyncGenerator)  # pull() is an async generator
    with caplog.at_level(logging.INFO):
        await events.aclose()  # the client went away
        await asyncio.sleep(0.3)
        gc.collect()  # asyncio reports an exception nobody retrieved when its future is collected
    # One quiet line, no traceback: stopping is what a client that goes away asks for.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("stopped at" in r.getMessage() and "resumes" in r.getMessage() for r in caplog.records)
    digest = "sha256:" + hashlib.sha256(WEIGHTS).hexdigest()
    records, _ = PartialFile(store.blobs.root, digest).load()
    saved = sum(p.completed for p in records)
    assert saved >= 1_000_000
    fault_proxy.faults.rate = 0
    fault_proxy.reset_counters()
    lines = await run(service.pull(name, insecure=True))
    assert lines[-1] == {"status": "success"}
    assert fault_proxy.bytes_down <= len(WEIGHTS) - saved + 200_000
    assert store.blobs.path(digest).read_bytes() == WEIGHTS


async def test_push_then_pull_elsewhere(
    store: Store, make_service: MakeService, registry: RegistryServer, registry_client: httpx.Client, tmp_path: Path
) -> None:
    manifest = local_model(store, f"{registry.host}/library/pushed:v1", WEIGHTS)
    name = Name.parse(f"{registry.host}/library/pushed:v1")
    lines = await run(make_service().push(name, insecure=True))
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    assert any(s.startswith("pushing ") and s != "pushing manifest" for s in statuses)
    r = registry_client.get(
        f"{registry.url}/v2/library/pushed/manifests/v1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert r.content == manifest.raw
    # Pushing again only HEADs: every blob reported complete.
    again = await run(make_service().push(name, insecure=True))
    assert again[-1] == {"status": "success"}


async def test_push_mounts_layers_from_another_repository(
    store: Store, make_service: MakeService, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    from server.store.manifest import Layer, Manifest

    base = local_model(store, f"{registry.host}/library/base", WEIGHTS)
    await run(make_service().push(Name.parse(f"{registry.host}/library/base"), insecure=True))
    layer = base.layers[0]
    proxy = FaultProxy(("127.0.0.1", registry.port)).start()  # same registry, seen through a host we can watch
    try:
        derived = Manifest.build(
            base.config, [Layer(layer.media_type, layer.digest, layer.size, f"{proxy.host}/library/base:latest")]
        )
        store.write_manifest(Name.parse(f"{proxy.host}/me/derived"), derived)
        lines = await run(make_service().push(Name.parse(f"{proxy.host}/me/derived"), insecure=True))
    finally:
        proxy.stop()
    assert lines[-1] == {"status": "success"}
    posts = [r for r in proxy.requests if r.startswith(b"POST")]
    patches = [r for r in proxy.requests if r.startswith(b"PATCH")]
    assert any(b"mount=" in r and b"from=library/base" in r for r in posts)
    assert not patches or all(layer.digest.encode() not in r for r in patches)


async def test_push_of_missing_model(make_service: MakeService) -> None:
    _, error = await run_error(make_service().push(Name.parse("127.0.0.1:9/library/none"), insecure=True))
    assert error.status == 404


class RedirectingFront:
    """A registry front that serves manifests from `registry` and sends every blob GET to a CDN on another host.

    With `ignore_range` the CDN answers every GET with 200 and the whole
    blob, at about 8 MB/s (slow enough that a pull would add lanes).
    """

    def __init__(self, registry: RegistryServer, blobs: dict[str, bytes], *, ignore_range: bool = False) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.cdn_requests: list[dict[str, str]] = []
        self.front_blob_gets = 0
        owner = self

        class Front(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if "/blobs/" in self.path:
                    owner.front_blob_gets += 1
                    self.send_response(307)
                    self.send_header("Location", f"http://{owner.cdn_host}/cdn/{self.path.rsplit('/', 1)[1]}?sig=x")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                r = httpx.get(f"{registry.url}{self.path}", headers={"Accept": self.headers.get("Accept", "")})
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("content-type", "application/octet-stream"))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        class Cdn(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.cdn_requests.append(dict(self.headers))
                data = blobs[self.path.split("/cdn/", 1)[1].split("?", 1)[0]]
                if ignore_range:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    for start in range(0, len(data), 64 * 1024):
                        self.wfile.write(data[start : start + 64 * 1024])
                        time.sleep(0.008)
                    return
                first, _, last = self.headers["Range"].removeprefix("bytes=").partition("-")
                start, end = int(first), int(last)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                self.wfile.write(data[start : end + 1])

        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), Front), ThreadingHTTPServer(("127.0.0.1", 0), Cdn)]
        for server in self.servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.servers[0].server_address[1]}"
        self.cdn_host = f"localhost:{self.servers[1].server_address[1]}"

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


async def pull_through_front(
    store: Store,
    make_service: MakeService,
    registry: RegistryServer,
    registry_client: httpx.Client,
    *,
    ignore_range: bool = False,
) -> RedirectingFront:
    """Pull the test model through a `RedirectingFront`; checks it arrived whole, returns the front to look at."""
    seed(registry_client, registry.host)
    blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in (WEIGHTS, CONFIG)}
    front = RedirectingFront(registry, blobs, ignore_range=ignore_range)
    name = Name.parse(f"{front.host}/library/m")
    try:
        lines = await run(make_service().pull(name, insecure=True))
    finally:
        front.stop()
    assert lines[-1] == {"status": "success"}
    assert store.blobs.path(store.require(name).manifest.layers[0].digest).read_bytes() == WEIGHTS
    return front


async def test_blob_redirected_to_another_host_is_fetched_there_without_credentials(
    store: Store, make_service: MakeService, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    front = await pull_through_front(store, make_service, registry, registry_client)
    assert front.front_blob_gets == 2  # one per blob: where is it?
    # every byte of the weights and the config from the CDN: one request per lane, never more than one per part
    ranges = [tuple(int(x) for x in h["Range"].removeprefix("bytes=").split("-")) for h in front.cdn_requests]
    assert (0, len(CONFIG) - 1) in ranges and (0, len(WEIGHTS) - 1) in ranges
    assert len(front.cdn_requests) <= 6 + 1
    assert not any("Authorization" in headers for headers in front.cdn_requests)


async def test_a_server_that_ignores_range_gets_one_connection(
    store: Store, make_service: MakeService, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    front = await pull_through_front(store, make_service, registry, registry_client, ignore_range=True)
    # a second lane would have fetched the whole blob again from byte 0 to use its back half
    assert len(front.cdn_requests) == 2
