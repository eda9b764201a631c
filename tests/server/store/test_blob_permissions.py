"""A blob is never more readable than the blobs folder it lives in, nor than the umask allows:
a store kept private (a 0700 folder) holds no world-readable file, whether the blob was
uploaded, written by create (config, template, system) or pulled."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import ollama
import pytest

from server.store.manifest import MODEL
from tests.support.live_server import LiveServer
from tests.support.registry import RegistryServer, upload_model

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def blob_modes(models: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in (models / "blobs").iterdir()}


@contextmanager
def server_with(models: Path, folder_mode: int, umask: int) -> Iterator[LiveServer]:
    blobs = models / "blobs"
    blobs.mkdir(parents=True)
    os.chmod(blobs, folder_mode)
    old = os.umask(umask)  # the server inherits it; ours is put back at once
    try:
        server = LiveServer(models).start()
    finally:
        os.umask(old)
    try:
        yield server
    finally:
        server.stop()
    assert stat.S_IMODE(blobs.stat().st_mode) == folder_mode  # the folder itself is left as it was


@pytest.mark.parametrize(
    ("folder_mode", "umask", "expected"),
    [(0o700, 0o022, 0o600), (0o750, 0o022, 0o640), (0o755, 0o022, 0o644), (0o755, 0o077, 0o600)],
)
def test_uploaded_and_created_blobs_are_no_more_readable_than_their_folder(
    models_dir: Path, tiny_model_path: Path, folder_mode: int, umask: int, expected: int
) -> None:
    with server_with(models_dir, folder_mode, umask) as server:
        client = ollama.Client(host=server.url)
        digest = client.create_blob(tiny_model_path)
        out = client.create(
            model="m",
            files={"m.gguf": digest},
            template="{{ .Prompt }}",
            system="Be terse.",
            parameters={"temperature": 0.5},
            stream=False,
        )
        assert out.status == "success"
        modes = blob_modes(models_dir)
    assert len(modes) == 5  # model, template, system, params, config
    assert modes == dict.fromkeys(modes, expected), {k: oct(v) for k, v in modes.items()}


def test_pulled_blobs_are_no_more_readable_than_their_folder(
    models_dir: Path, tiny_model_path: Path, registry: RegistryServer
) -> None:
    with httpx.Client() as c:
        upload_model(c, registry.url, "library/tiny", "latest", [(MODEL, tiny_model_path)], config=b'{"a":1}')
    with server_with(models_dir, 0o700, 0o022) as server:
        client = ollama.Client(host=server.url)
        assert client.pull(f"{registry.host}/library/tiny", insecure=True).status == "success"
        modes = blob_modes(models_dir)
    assert len(modes) == 2
    assert modes == dict.fromkeys(modes, 0o600), {k: oct(v) for k, v in modes.items()}
