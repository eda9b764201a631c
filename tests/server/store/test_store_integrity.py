"""The store survives crashes and concurrency, and reads a folder Ollama wrote."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import ollama

from server.store.manifest import Manifest
from tests.support.live_server import LiveServer

TEMPLATE = "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}"


def assert_consistent(models: Path, *, allow_orphans: AbstractSet[str] = frozenset()) -> None:
    """Every manifest's blobs exist; no temp files; no unreferenced blobs."""
    blobs = models / "blobs"
    referenced: set[str] = set()
    for path in (models / "manifests").rglob("*"):
        if path.is_file():
            assert not path.name.startswith(".tmp-"), f"leftover temp manifest {path}"
            m = Manifest.parse(path.read_bytes())
            for digest in m.blob_digests():
                blob = blobs / digest.replace(":", "-")
                assert blob.is_file(), f"{path} references missing {digest}"
                assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == digest, f"{blob} is corrupt"
            referenced |= m.blob_digests()
    on_disk = {p.name.replace("-", ":", 1) for p in blobs.iterdir()} if blobs.exists() else set()
    assert not any(n.startswith(".tmp-") for n in on_disk), on_disk
    orphans = on_disk - referenced - set(allow_orphans)
    assert not orphans, f"orphan blobs: {orphans}"


def write_blob(blobs: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.replace(":", "-")).write_bytes(data)
    return digest


def test_reads_a_store_written_by_ollama(models_dir: Path, tiny_model_path: Path) -> None:
    blobs = models_dir / "blobs"
    blobs.mkdir(parents=True)
    model = write_blob(blobs, tiny_model_path.read_bytes())
    template = write_blob(blobs, b"{{ .Prompt }}")
    params = write_blob(blobs, b'{"stop":["<|eot_id|>"],"temperature":0.6}')
    config_bytes = json.dumps(
        {
            "model_format": "gguf",
            "model_family": "llama",
            "model_families": ["llama"],
            "model_type": "1.2M",
            "file_type": "F32",
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    ).encode()
    config = write_blob(blobs, config_bytes)
    # Registry-style manifest bytes: indented, as the registry served them (not how we would write them).
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config,
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.ollama.image.model",
                    "digest": model,
                    "size": tiny_model_path.stat().st_size,
                },
                {"mediaType": "application/vnd.ollama.image.template", "digest": template, "size": 13},
                {"mediaType": "application/vnd.ollama.image.params", "digest": params, "size": 42},
            ],
        },
        indent=3,
    ).encode()
    # Old Ollama versions named blobs with a colon; start-up renames them.
    old_style = blobs / template.replace(":", "-")
    old_style.rename(blobs / template)
    path = models_dir / "manifests/registry.ollama.ai/library/llama3.2/1b"
    path.parent.mkdir(parents=True)
    path.write_bytes(manifest)
    mine = models_dir / "manifests/registry.ollama.ai/jmorgan/tiny/latest"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(manifest)

    server = LiveServer(models_dir).start()
    try:
        client = ollama.Client(host=server.url)
        listed = {m.model: m for m in client.list().models}
        assert set(listed) == {"llama3.2:1b", "jmorgan/tiny:latest"}
        assert listed["llama3.2:1b"].digest == hashlib.sha256(manifest).hexdigest()
        details = listed["llama3.2:1b"].details
        assert details is not None and details.parameter_size == "1.2M"
        shown = client.show("llama3.2:1b")
        assert shown.template == "{{ .Prompt }}"
        assert shown.modelinfo is not None
        assert shown.modelinfo["general.architecture"] == "llama"
        assert (blobs / template.replace(":", "-")).exists()
        assert path.read_bytes() == manifest, "manifests are never rewritten"
    finally:
        server.stop()


def slow_body(data: bytes, chunk: int, delay: float, started: threading.Event) -> Iterator[bytes]:
    for i in range(0, len(data), chunk):
        if i > len(data) // 3:
            started.set()
        yield data[i : i + chunk]
        time.sleep(delay)


def test_sigkill_during_upload_and_create_leaves_nothing_half_written(models_dir: Path, tiny_model_path: Path) -> None:
    server = LiveServer(models_dir).start()
    payload = os.urandom(8 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    started = threading.Event()

    def upload() -> None:
        try:
            httpx.post(
                server.url + f"/api/blobs/{digest}", content=slow_body(payload, 256 * 1024, 0.02, started), timeout=30
            )
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=upload)
    t.start()
    assert started.wait(20)
    assert any(p.name.startswith(".tmp-") for p in (models_dir / "blobs").iterdir()), "upload is in progress"
    server.kill()
    t.join()
    assert not (models_dir / "blobs" / digest.replace(":", "-")).exists()

    server.start()
    assert not any(p.name.startswith(".tmp-") for p in (models_dir / "blobs").iterdir())
    client = ollama.Client(host=server.url)
    model_digest = client.create_blob(tiny_model_path)
    # Kill the server at random moments while creates run; every restart must find a consistent store.
    rng = random.Random(7)
    for round_ in range(4):

        def create(i: int, round_: int = round_) -> None:
            try:
                httpx.post(
                    server.url + "/api/create",
                    json={
                        "model": f"m{round_}-{i}",
                        "files": {"m.gguf": model_digest},
                        "template": TEMPLATE,
                        "system": f"s{i}",
                        "stream": False,
                    },
                    timeout=30,
                )
            except httpx.HTTPError:
                pass

        threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
        for th in threads:
            th.start()
        time.sleep(rng.uniform(0.0, 0.15))
        server.kill()
        for th in threads:
            th.join()
        server.start()
        assert_consistent(models_dir, allow_orphans={model_digest} | _recent_blobs(models_dir))
        for m in client.list().models:
            assert m.model is not None
            assert client.show(m.model).template == TEMPLATE
    server.stop()


def _recent_blobs(models: Path) -> set[str]:
    """Unreferenced blobs younger than the prune age are kept, by design (uploads awaiting create)."""
    return {p.name.replace("-", ":", 1) for p in (models / "blobs").iterdir() if time.time() - p.stat().st_mtime < 3600}


def test_prune_at_startup(models_dir: Path) -> None:
    blobs = models_dir / "blobs"
    blobs.mkdir(parents=True)
    old = write_blob(blobs, b"old orphan")
    new = write_blob(blobs, b"fresh upload")
    stray = blobs / "garbage.txt"
    stray.write_text("x")
    partial = blobs / ("sha256-" + "c" * 64 + "-partial")
    partial.write_bytes(b"resume me")
    past = time.time() - 2 * 3600
    os.utime(blobs / old.replace(":", "-"), (past, past))

    server = LiveServer(models_dir, env={"OLLAMA_NOPRUNE": "1"}).start()
    server.stop()
    assert (blobs / old.replace(":", "-")).exists(), "OLLAMA_NOPRUNE keeps everything"

    server = LiveServer(models_dir).start()
    server.stop()
    assert not (blobs / old.replace(":", "-")).exists()
    assert not stray.exists()
    assert (blobs / new.replace(":", "-")).exists(), "young blobs may be an upload awaiting its create"
    assert partial.exists(), "partial downloads are kept for resume"


def test_fifty_concurrent_mutations_leave_the_store_consistent(live_server: LiveServer, tiny_model_path: Path) -> None:
    url = live_server.url
    client = ollama.Client(host=url)
    digest = client.create_blob(tiny_model_path)
    client.create(model="base", files={"m.gguf": digest}, template=TEMPLATE)
    rng = random.Random(1)

    def op(i: int) -> int:
        kind = rng.choice(["create", "create", "copy", "delete", "list", "derive"])
        name = f"m{rng.randrange(8)}"
        with httpx.Client(base_url=url, timeout=60) as c:
            if kind == "create":
                r = c.post(
                    "/api/create",
                    json={"model": name, "files": {"m.gguf": digest}, "system": f"sys {i}", "stream": False},
                )
            elif kind == "derive":
                r = c.post(
                    "/api/create", json={"model": name, "from": "base", "system": f"derived {i % 3}", "stream": False}
                )
            elif kind == "copy":
                r = c.post("/api/copy", json={"source": "base", "destination": name})
            elif kind == "delete":
                r = c.request("DELETE", "/api/delete", json={"model": name})
            else:
                r = c.get("/api/tags")
            assert r.status_code in (200, 404), r.text
            return r.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(op, range(50)))
    assert len(results) == 50
    assert_consistent(live_server.models)
    for m in client.list().models:
        assert m.model is not None
        client.show(m.model)
