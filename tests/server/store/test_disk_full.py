"""Uploads, creates and quantizes onto a small, real disk (tmpfs), through a live server.

Each is refused before it fills the disk, with a 500 that says how much it
needs and how much is free; afterwards the store is as it was (no temp
file, no blob nobody uses, `/api/tags` unchanged), the disk as free as
before, and the server answers the next request.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.errors import StorageError
from server.store import create as create_module
from server.store.create import create_model, parse_create_request
from server.store.diskspace import MARGIN
from server.store.gguf_info import read_gguf
from server.store.quantize import expected_size
from server.store.store import Store
from tests.support.live_server import LiveServer
from tests.support.tmpfs import MiB, fill, free_bytes, mounted_tmpfs, on_disk

TEMPLATE = "{{ .Prompt }}"


@pytest.fixture
def disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of 8 MiB (or `request.param` MiB); the live server's models folder is its root."""
    with mounted_tmpfs(tmp_path / "disk", getattr(request, "param", 8) * MiB) as path:
        yield path


def disk_of(mib: int) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("disk", [mib], indirect=True, ids=[f"{mib}MiB"])


@pytest.fixture
def server(disk: Path) -> Iterator[LiveServer]:
    live = LiveServer(disk).start()
    try:
        yield live
    finally:
        live.stop()


def blob_files(disk: Path) -> list[str]:
    return sorted(p.name for p in (disk / "blobs").iterdir())


def tags(server: LiveServer) -> list[str]:
    return [m["model"] for m in httpx.get(server.url + "/api/tags").json()["models"]]


def sizes_in(message: str) -> tuple[float, float]:
    """(needed, available) in MiB from `… requires more disk space (X MiB) than is available (Y KiB) …`."""
    size = r"([\d.]+) (B|KiB|MiB|GiB)"
    m = re.search(rf"requires more disk space \((?:at least )?{size}\) than is available \({size}\)", message)
    assert m, message
    scale = {"B": 1 / MiB, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
    return float(m.group(1)) * scale[m.group(2)], float(m.group(3)) * scale[m.group(4)]


def upload(server: LiveServer, data: bytes, *, chunked: bool = False) -> httpx.Response:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    return httpx.post(f"{server.url}/api/blobs/{digest}", content=pieces() if chunked else data, timeout=60)


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP response with a Content-Length: (status line and headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, "the server closed the connection without an answer"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)content-length: *(\d+)", head)
    assert found, head
    while len(body) < int(found.group(1)):
        more = sock.recv(65536)
        assert more, "the server closed the connection mid-answer"
        body += more
    return head, body


def test_an_upload_longer_than_the_free_space_is_refused_before_its_body_is_read(
    disk: Path, server: LiveServer
) -> None:
    data = b"x" * 10_000_000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    before = free_bytes(disk)
    # Only the headers: the answer must come without one byte of the body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(
            f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        )
        head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 500")
    message = json.loads(body)["error"]
    assert message.startswith(f"uploading blob {digest} requires more disk space") and "free some disk space" in message
    needed, available = sizes_in(message)
    assert needed == pytest.approx((on_disk(disk, len(data)) + MARGIN) / MiB, abs=0.05)
    assert available == pytest.approx(before / MiB, abs=0.05)
    # A real client sending the body gets the same answer, and its connection keeps working.
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post(f"/api/blobs/{digest}", content=data)
        assert r.status_code == 500 and r.json()["error"] == message
        small = b"fits"
        assert client.post(f"/api/blobs/sha256:{hashlib.sha256(small).hexdigest()}", content=small).status_code == 201
    assert blob_files(disk) == ["sha256-" + hashlib.sha256(small).hexdigest()]
    assert free_bytes(disk) == before - on_disk(disk, len(small))
    assert tags(server) == []


@pytest.mark.parametrize("size", [10_000_000, 7_500_000], ids=["over-free-space", "into-the-margin"])
def test_an_upload_without_length_stops_before_the_disk_is_full(disk: Path, server: LiveServer, size: int) -> None:
    """Chunked, so nothing is known up front: it stops where the next bytes would leave less than the margin.
    7.5 MB would fit on the 8 MiB disk, leaving it all but full: refused too."""
    data = bytes(range(256)) * (size // 256)
    before = free_bytes(disk)
    r = upload(server, data, chunked=True)
    assert r.status_code == 500
    message = r.json()["error"]
    assert "requires more disk space (at least " in message and "free some disk space" in message
    needed, available = sizes_in(message)
    assert needed > available == pytest.approx(before / MiB, abs=0.05)
    assert blob_files(disk) == [] and free_bytes(disk) == before  # the temp file went
    assert upload(server, data[: 2 * MiB], chunked=True).status_code == 201  # the server goes on


@disk_of(4)
def test_create_on_a_nearly_full_disk_is_refused_and_writes_nothing(
    disk: Path, server: LiveServer, tiny_model_path: Path
) -> None:
    model = tiny_model_path.read_bytes()
    assert upload(server, model).status_code == 201
    digest = "sha256:" + hashlib.sha256(model).hexdigest()
    # One block left: room for one of the layers this create writes, not for all of them.
    filler = fill(disk, leave=on_disk(disk, 1))
    before, files = free_bytes(disk), blob_files(disk)
    body = {"model": "tight", "files": {"m.gguf": digest}, "template": TEMPLATE, "system": "Be brief.", "stream": False}
    r = httpx.post(server.url + "/api/create", json=body, timeout=60)
    assert r.status_code == 500
    message = r.json()["error"]
    assert message.startswith("creating tight:latest requires more disk space") and "free some disk space" in message
    assert sizes_in(message)[1] == pytest.approx(before / MiB, abs=0.05)
    assert blob_files(disk) == files and free_bytes(disk) == before and tags(server) == []

    filler.unlink()
    assert httpx.post(server.url + "/api/create", json=body, timeout=60).json() == {"status": "success"}
    assert tags(server) == ["tight:latest"]


@disk_of(20)
def test_quantize_on_a_nearly_full_disk_is_refused_before_it_starts(
    disk: Path, server: LiveServer, small_model_path: Path
) -> None:
    model = small_model_path.read_bytes()  # F16, ~10 MB: its Q8_0 is ~5.4 MiB
    assert upload(server, model).status_code == 201
    digest = "sha256:" + hashlib.sha256(model).hexdigest()
    filler = fill(disk, leave=3 * MiB)
    before, files = free_bytes(disk), blob_files(disk)
    body: dict[str, Any] = {"model": "q", "files": {"model.gguf": digest}, "quantize": "q8_0"}
    with httpx.stream("POST", server.url + "/api/create", json=body, timeout=120) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[0] == {"status": "parsing GGUF"} and len(lines) == 2  # no quantizing progress: never started
    message = lines[1]["error"]
    assert message.startswith("creating q:latest requires more disk space") and "free some disk space" in message
    estimate = expected_size(read_gguf(small_model_path), len(model), "Q8_0")
    needed, available = sizes_in(message)
    assert needed >= (estimate + MARGIN) / MiB - 0.05 and available == pytest.approx(3.0, abs=0.05)
    assert blob_files(disk) == files and free_bytes(disk) == before and tags(server) == []
    assert not [name for name in blob_files(disk) if name.startswith(".tmp")]

    filler.unlink()
    r2 = httpx.post(server.url + "/api/create", json={**body, "stream": False}, timeout=300)
    assert r2.json() == {"status": "success"}
    layer = next(
        layer
        for layer in json.loads((disk / "manifests/registry.ollama.ai/library/q/latest").read_bytes())["layers"]
        if layer["mediaType"].endswith(".model")
    )
    assert layer["size"] <= estimate <= 1.2 * layer["size"]  # the estimate is an upper bound, and a close one


@disk_of(4)
async def test_a_create_that_meets_a_full_disk_anyway_takes_back_what_it_wrote(
    disk: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program fills the disk after the check passed (the check is taken out here to stand for that):
    the template layer fits, the next one does not, and the template blob, which nothing uses, goes again."""
    store = Store(disk)
    store.prepare(prune=False)
    digest = store.blobs.write_bytes(tiny_model_path.read_bytes())
    monkeypatch.setattr(create_module, "require", lambda *args, **kwargs: None, raising=False)
    filler = fill(disk, leave=on_disk(disk, 1))
    before, files = free_bytes(disk), blob_files(disk)
    req = parse_create_request({"model": "t", "files": {"m.gguf": digest}, "template": TEMPLATE, "system": "Brief."})
    with pytest.raises(StorageError, match="no space left on device"):  # the disk itself said no
        async for _ in create_model(store, req):
            pass
    assert blob_files(disk) == files and free_bytes(disk) == before and store.list() == []
    filler.unlink()
