"""Pulls onto a small, real disk (tmpfs) from a real docker-registry, through a live server.

A pull that does not fit is refused before a byte is written; one that runs
out of space all the same drops what did not fit, keeps the blobs it
verified, and leaves the disk as free as before. Where the disk fills is
made deterministic by a front that holds a blob's bytes back until the test
has filled the disk (`GatedFront`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.registry import partial as partial_module
from server.registry.partial import PartialFile
from server.store.diskspace import MARGIN
from server.store.manifest import MODEL
from server.store.names import Name
from server.store.store import Store
from tests.server.registry.conftest import MakeService, random_bytes, run, run_error
from tests.support.live_server import LiveServer
from tests.support.registry import RegistryServer, upload_model
from tests.support.tmpfs import MiB, fill, free_bytes, mounted_tmpfs, on_disk

CONFIG = b'{"model_format":"gguf"}'
#: Environment of the live server: small parts, so a pull checkpoints often; one lane, so bytes come in order.
PULL_ENV = {"POLLAMA_PULL_PART_SIZE": "1000000", "POLLAMA_PULL_PARALLEL": "1", "POLLAMA_PULL_CHECKPOINT": "0.05"}


class GatedFront:
    """A front to a real registry that forwards every request, but holds back the bytes of one blob.

    Of GETs for `digest` it sends the first `before` body bytes, then
    waits until `open_gate()`; every other request passes straight through.
    It counts the GETs of each blob, so a test can tell that none was made.
    """

    def __init__(self, registry: RegistryServer, digest: str, before: int) -> None:
        self.gate = threading.Event()
        #: Set once the held-back blob's first `before` bytes are sent.
        self.held = threading.Event()
        self.blob_gets: list[str] = []
        owner = self
        budget = [before]
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._forward(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._forward(body=True)

            def _forward(self, *, body: bool) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range", "authorization")}
                gated = body and self.path.endswith("/blobs/" + digest)
                if body and "/blobs/" in self.path:
                    owner.blob_gets.append(self.path.rsplit("/", 1)[1])
                with httpx.Client(trust_env=False, timeout=60) as client:
                    with client.stream(self.command, registry.url + self.path, headers=headers) as r:
                        self.send_response(r.status_code)
                        for key in ("content-type", "content-length", "content-range", "docker-content-digest"):
                            if key in r.headers:
                                self.send_header(key, r.headers[key])
                        self.end_headers()
                        if not body:
                            return
                        for piece in r.iter_raw(64 * 1024):
                            now = len(piece)
                            if gated:
                                with lock:
                                    now = min(budget[0], len(piece))
                                    budget[0] -= now
                            self.wfile.write(piece[:now])
                            if now < len(piece):
                                self.wfile.flush()
                                owner.held.set()
                                owner.gate.wait(120)
                                self.wfile.write(piece[now:])

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a pull that went away while held at the gate: its connection is gone, nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def open_gate(self) -> None:
        self.gate.set()

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs: the live server's models folder is its root (the server log lives beside it)."""
    with mounted_tmpfs(tmp_path / "disk", 12 * MiB) as path:
        yield path


def seed(client: httpx.Client, registry: RegistryServer, repo: str, weights: bytes) -> tuple[str, str]:
    """Put a model of `weights` and CONFIG on the registry; their digests."""
    upload_model(client, registry.url, repo, "latest", [(MODEL, weights)], config=CONFIG)
    return "sha256:" + hashlib.sha256(weights).hexdigest(), "sha256:" + hashlib.sha256(CONFIG).hexdigest()


def blob_files(models: Path) -> list[str]:
    root = models / "blobs"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def pull_lines(server: LiveServer, model: str) -> Iterator[dict[str, Any]]:
    with httpx.stream("POST", server.url + "/api/pull", json={"model": model, "insecure": True}, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line:
                yield json.loads(line)


def pull_answer(server: LiveServer, model: str) -> httpx.Response:
    return httpx.post(server.url + "/api/pull", json={"model": model, "insecure": True, "stream": False}, timeout=120)


def sizes_in(message: str) -> tuple[float, float]:
    """(needed, available) in MiB from `… requires more disk space (X MiB) than is available (Y KiB) …`."""
    size = r"([\d.]+) (B|KiB|MiB|GiB)"
    m = re.search(rf"requires more disk space \((?:at least )?{size}\) than is available \({size}\)", message)
    assert m, message
    scale = {"B": 1 / MiB, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
    return float(m.group(1)) * scale[m.group(2)], float(m.group(3)) * scale[m.group(4)]


def test_a_pull_bigger_than_the_free_space_is_refused_before_a_byte_is_written(
    disk: Path, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    """Counting what a partial download holds already: a resumed pull needs only the rest."""
    weights = random_bytes(8_000_000, seed=21)
    digest, _ = seed(registry_client, registry, "library/big", weights)
    front = GatedFront(registry, digest, before=4_000_000)
    server = LiveServer(disk, env=PULL_ENV).start()
    try:
        model = f"{front.host}/library/big"
        filler = fill(disk, leave=6 * MiB)  # the model needs 7.6 MiB and the margin
        before = free_bytes(disk)
        r = pull_answer(server, model)
        assert r.status_code == 500
        message = r.json()["error"]
        assert (
            message.startswith(f"pulling {model}:latest requires more disk space") and "free some disk space" in message
        )
        needed, available = sizes_in(message)
        assert needed == pytest.approx(
            (on_disk(disk, len(weights)) + on_disk(disk, len(CONFIG)) + MARGIN) / MiB, abs=0.05
        )
        assert available == pytest.approx(6.0, abs=0.05)
        streamed = list(pull_lines(server, model))  # streamed: the manifest line, then the same error
        assert streamed == [{"status": "pulling manifest"}, {"error": message}]
        assert front.blob_gets == []  # not a byte asked for
        assert blob_files(disk) == [] and free_bytes(disk) == before
        assert httpx.get(server.url + "/api/tags").json() == {"models": []}

        # With room, a pull that goes away halfway keeps what it wrote: 4 MB held back at the gate.
        filler.unlink()
        with httpx.stream("POST", server.url + "/api/pull", json={"model": model, "insecure": True}) as r:
            for line in r.iter_lines():
                if line and json.loads(line).get("completed", 0) >= 3_000_000 and json.loads(line)["digest"] == digest:
                    break
        held = held_bytes(disk, digest, server)
        assert held >= 3_000_000
        # Now less is free than the whole model needs, but enough for the rest of it: the pull goes through.
        rest = on_disk(disk, len(weights)) - held + on_disk(disk, len(CONFIG)) + MARGIN
        filler = fill(disk, leave=rest + 64 * 1024)
        assert free_bytes(disk) < on_disk(disk, len(weights)) + MARGIN
        front.open_gate()
        assert pull_answer(server, model).json() == {"status": "success"}
        assert (disk / "blobs" / digest.replace(":", "-")).read_bytes() == weights
    finally:
        server.stop()
        front.stop()


def held_bytes(disk: Path, digest: str, server: LiveServer) -> int:
    """What the partial download of `digest` holds, once the server has saved its records (it answers meanwhile)."""
    data = disk / "blobs" / (digest.replace(":", "-") + "-partial")
    records = sorted((disk / "blobs").glob(digest.replace(":", "-") + "-partial-*"))
    for _ in range(200):  # the server calls the download off when it sees the client gone
        httpx.get(server.url + "/api/version")
        records = sorted((disk / "blobs").glob(digest.replace(":", "-") + "-partial-*"))
        claimed = sum(json.loads(p.read_bytes())["Completed"] for p in records if p.read_bytes())
        if claimed >= 3_000_000:
            return data.stat().st_blocks * 512
        threading.Event().wait(0.05)
    raise AssertionError(f"no saved progress for {digest}: {records}")


def test_a_disk_that_fills_during_the_pull_drops_the_blob_that_did_not_fit(
    disk: Path, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    weights = random_bytes(6_000_000, seed=22)
    digest, config = seed(registry_client, registry, "library/fill", weights)
    front = GatedFront(registry, digest, before=2_500_000)
    server = LiveServer(disk, env=PULL_ENV).start()
    filler: Path | None = None
    try:
        model = f"{front.host}/library/fill"
        before = free_bytes(disk)
        seen: dict[str, int] = {}
        error = None
        for line in pull_lines(server, model):
            if "error" in line:
                error = line["error"]
                break
            if "digest" in line:
                seen[line["digest"]] = line.get("completed", 0)
            # The free-space check passed long ago, the config is in and 1 MB of the weights is written:
            # another program takes the rest of the disk, then the registry sends the rest of the bytes.
            if filler is None and seen.get(config) == len(CONFIG) and seen.get(digest, 0) >= 1_000_000:
                filler = fill(disk)
                front.open_gate()
        assert filler is not None, seen
        assert error is not None and "no space left on device; free some disk space and try again" in error

        # The partial data and its records are gone; the config blob, verified, stays; no temp file.
        assert blob_files(disk) == [config.replace(":", "-")]
        assert (disk / "blobs" / config.replace(":", "-")).read_bytes() == CONFIG
        filler.unlink()
        assert free_bytes(disk) == before - on_disk(disk, len(CONFIG))
        assert httpx.get(server.url + "/api/tags").json() == {"models": []}

        # The server is fine: with the disk free again the pull completes.
        assert pull_answer(server, model).json() == {"status": "success"}
        assert (disk / "blobs" / digest.replace(":", "-")).read_bytes() == weights
        assert [m["model"] for m in httpx.get(server.url + "/api/tags").json()["models"]] == [f"{model}:latest"]
    finally:
        server.stop()
        front.stop()


def test_a_pull_is_refused_when_it_fits_only_without_the_downloads_already_running(
    disk: Path, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    first, second = random_bytes(6_500_000, seed=23), random_bytes(6_500_000, seed=24)
    first_digest, _ = seed(registry_client, registry, "library/first", first)
    second_digest, _ = seed(registry_client, registry, "library/second", second)
    front = GatedFront(registry, first_digest, before=1_500_000)
    server = LiveServer(disk, env=PULL_ENV).start()
    try:
        lines = pull_lines(server, f"{front.host}/library/first")
        for line in lines:
            if line.get("digest") == first_digest and line.get("completed", 0) >= 1_000_000:
                break
        # Either model fits on the 12 MiB disk alone, not both: the first still has ~4.8 MiB to write.
        r = pull_answer(server, f"{front.host}/library/second")
        assert r.status_code == 500
        assert "(with 1 download already running) requires more disk space" in r.json()["error"]
        assert not [f for f in blob_files(disk) if second_digest[7:] in f]
        front.open_gate()
        assert list(lines)[-1] == {"status": "success"}
        # With the first model gone again, the second fits.
        delete = httpx.request("DELETE", server.url + "/api/delete", json={"model": f"{front.host}/library/first"})
        assert delete.status_code == 200
        assert pull_answer(server, f"{front.host}/library/second").json() == {"status": "success"}
    finally:
        server.stop()
        front.stop()


# ---- in process: what a pull that fails for space leaves of the other blobs, and what a failed sync means ----


async def test_the_other_blobs_called_off_keep_records_that_claim_only_bytes_on_disk(
    store: Store,
    make_service: MakeService,
    registry: RegistryServer,
    registry_client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One blob meets ENOSPC (injected) while another, held at the gate, is halfway: the pull fails, the first
    blob's partial goes, the second's stays for a resume, and only once it has settled does the pull answer."""
    full, halfway = random_bytes(3_000_000, seed=25), random_bytes(4_000_000, seed=26)
    upload_model(
        registry_client,
        registry.url,
        "library/two",
        "latest",
        [(MODEL, full), ("application/vnd.ollama.image.projector", halfway)],
        config=CONFIG,
    )
    full_name = "sha256-" + hashlib.sha256(full).hexdigest()
    halfway_digest = "sha256:" + hashlib.sha256(halfway).hexdigest()
    front = GatedFront(registry, halfway_digest, before=1_500_000)
    real = PartialFile.write_at
    written = {"n": 0}

    def full_disk(self: PartialFile, data: bytes, offset: int) -> None:
        # On the fetch's writer thread: once 1 MB of the first blob is in, wait for the other to be
        # held halfway, then fail. Checking `held` without waiting let a busy machine finish the
        # first blob before the other had started; that one then waited at the gate for ever.
        if self.final.name == full_name:
            if written["n"] >= 1_000_000:
                assert front.held.wait(60), "the second blob never reached the gate"
                raise OSError(errno.ENOSPC, "No space left on device")
            written["n"] += len(data)
        real(self, data, offset)

    monkeypatch.setattr(PartialFile, "write_at", full_disk)
    try:
        _, error = await run_error(
            make_service(parallel=1).pull(Name.parse(f"{front.host}/library/two"), insecure=True)
        )
    finally:
        front.stop()
    assert "no space left on device" in str(error)
    names = blob_files(store.blobs.root.parent)
    assert not [f for f in names if f.startswith(full_name)]
    records, size = PartialFile(store.blobs.root, halfway_digest).load()
    assert size == len(halfway) and 1_000_000 <= sum(p.completed for p in records) <= 1_500_000
    data = PartialFile(store.blobs.root, halfway_digest).data.read_bytes()
    for part in records:  # every byte a record claims is the blob's byte, on disk
        assert data[part.offset : part.next_byte] == halfway[part.offset : part.next_byte]
    assert not [f for f in names if f.startswith(".tmp")]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="tells the data file's descriptor by /proc/self/fd")
async def test_a_failed_data_sync_fails_the_pull_and_drops_the_partial(
    store: Store,
    make_service: MakeService,
    registry: RegistryServer,
    registry_client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Linux reports a failed writeback once: the next sync succeeds, and says nothing about the lost bytes.
    So neither the records nor a publish can be trusted after one; the download must start over."""
    weights = random_bytes(3_000_000, seed=27)
    digest, _ = seed(registry_client, registry, "library/sync", weights)
    data_name = digest.replace(":", "-") + "-partial"
    failed: list[int] = []
    real = partial_module.sync_data

    def sync_once_failing(fd: int) -> None:
        if not failed and os.readlink(f"/proc/self/fd/{fd}").endswith(data_name):
            failed.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(partial_module, "sync_data", sync_once_failing)
    name = Name.parse(f"{registry.host}/library/sync")
    _, error = await run_error(make_service().pull(name, insecure=True))
    assert failed and str(error) in (
        "saving download: Input/output error",
        "saving downloaded blob: Input/output error",
    )
    assert store.get(name) is None and not store.blobs.exists(digest)
    assert not [f for f in blob_files(store.blobs.root.parent) if digest[7:] in f]

    lines = await run(make_service().pull(name, insecure=True))  # the one failure is gone: all of it again
    assert lines[-1] == {"status": "success"}
    assert store.blobs.path(digest).read_bytes() == weights
