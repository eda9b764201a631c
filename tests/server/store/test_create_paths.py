"""`/api/create` never opens a path a request names: model files reach the server as uploaded
blobs, as they do from Ollama's CLI since 0.5.5. Before, the old `modelfile` field with
`FROM /etc/shadow` copied that file into the store, and `HEAD /api/blobs/<digest>` then
confirmed a guess at any file's contents."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import httpx
import ollama
import pytest

from server.errors import BadRequest
from server.store.create import parse_create_request
from tests.support.live_server import LiveServer

SECRET = b"root:$6$not-a-real-hash$abc:19000:0:99999:7:::\n"
NEITHER = "neither 'from' or 'files' was specified"
WHY = "the server does not read files from its disk"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def refused(r: httpx.Response, value: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith(NEITHER) and WHY in error and repr(value) in error, error
    assert "POST /api/blobs/<digest>" in error and "'files'" in error, error


def blob_files(models: Path) -> set[str]:
    blobs = models / "blobs"
    return {p.name for p in blobs.iterdir()} if blobs.is_dir() else set()


@pytest.mark.parametrize(
    "value",
    [
        "/etc/shadow",
        "/dev/zero",
        "/dev/stdin",
        "/proc/self/environ",
        "/",
        ".",
        "..",
        "./model.gguf",
        "../model.gguf",
        "~/model.gguf",
        "~root/.ssh/id_ed25519",
        "model.gguf",
        "weights/model.gguf",
        "pytorch_model.bin",
        "model.safetensors",
        "C:\\Users\\me\\model.gguf",
        "C:/Users/me/model.gguf",
        "\\\\server\\share\\model.gguf",
    ],
)
def test_every_path_in_an_old_modelfile_is_refused_by_its_spelling(value: str) -> None:
    """Decided without the file system: none of these is looked at, whether it exists or not."""
    for command, text in (("FROM", f"FROM {value}\n"), ("ADAPTER", f"FROM llama3.2\nADAPTER {value}\n")):
        with pytest.raises(BadRequest) as raised:
            parse_create_request({"model": "m", "modelfile": text, "path": "/etc/Modelfile"})
        message = raised.value.message
        assert message.startswith(NEITHER) and f"{command} {value!r}" in message and WHY in message, message


def test_model_names_and_uploaded_blobs_in_an_old_modelfile_still_work() -> None:
    model, adapter = digest_of(b"model"), digest_of(b"adapter")
    req = parse_create_request({"model": "m", "modelfile": "FROM library/llama3.2:1b\nSYSTEM hi\n"})
    assert req.from_ == "library/llama3.2:1b" and req.files == {} and req.system == "hi"
    req = parse_create_request({"model": "m", "modelfile": "FROM registry.example.com:5000/a/b\n"})
    assert req.from_ == "registry.example.com:5000/a/b"
    text = f"FROM @{model}\nADAPTER @{adapter.replace(':', '-')}\n"
    req = parse_create_request({"model": "m", "modelfile": text})
    assert req.files == {model.replace(":", "-"): model}
    assert req.adapters == {adapter.replace(":", "-"): adapter}
    with pytest.raises(BadRequest, match="invalid digest format"):
        parse_create_request({"model": "m", "modelfile": "FROM @sha256:nothex\n"})


def test_server_files_named_by_a_request_are_never_copied_into_the_store(
    live_server: LiveServer, tiny_model_path: Path, tmp_path: Path, temp_home: Path
) -> None:
    url = live_server.url
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    folder = tmp_path / "models-here"
    folder.mkdir()
    model_bytes = tiny_model_path.read_bytes()
    (folder / "model.gguf").write_bytes(model_bytes)
    (temp_home / "model.gguf").write_bytes(model_bytes)
    modelfile_path = str(folder / "Modelfile")  # old clients sent it; relative FROMs resolved against it

    for value in (
        str(secret),
        "/proc/self/environ",
        str(folder),
        f"{folder}/model.gguf",
        "./model.gguf",
        "~/model.gguf",
    ):
        r = httpx.post(
            url + "/api/create",
            json={"model": "stolen", "modelfile": f"FROM {value}\n", "path": modelfile_path, "stream": False},
            timeout=30,
        )
        refused(r, value)
    digest = ollama.Client(host=url).create_blob(tiny_model_path)
    assert ollama.Client(host=url).create(model="keep", files={"m.gguf": digest}).status == "success"
    before = blob_files(live_server.models)
    for value in (str(secret), f"{folder}/model.gguf"):
        r = httpx.post(
            url + "/api/create",
            json={"model": "stolen", "modelfile": f"FROM keep\nADAPTER {value}\n", "stream": False},
            timeout=30,
        )
        refused(r, value)

    assert blob_files(live_server.models) == before
    assert httpx.head(f"{url}/api/blobs/{digest_of(SECRET)}").status_code == 404  # no oracle for a guess
    assert [m.model for m in ollama.Client(host=url).list().models] == ["keep:latest"]


def test_a_path_that_would_block_is_answered_at_once_and_never_opened(live_server: LiveServer, tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: a server that opened it would not answer.
    Nor could it have opened it and given up: then a writer would find a reader waiting."""
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    for text in (f"FROM {fifo}\n", f"FROM llama3.2\nADAPTER {fifo}\n"):
        r = httpx.post(
            live_server.url + "/api/create", json={"model": "m", "modelfile": text, "stream": False}, timeout=10
        )
        refused(r, str(fifo))
    r = httpx.post(live_server.url + "/api/create", json={"model": "m", "from": str(fifo), "stream": False}, timeout=10)
    assert r.status_code == 400 and WHY in r.json()["error"], r.text
    with pytest.raises(OSError) as raised:
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: no process has it open for reading
    assert raised.value.errno == errno.ENXIO


def test_old_clients_upload_the_file_and_name_its_blob(live_server: LiveServer, tiny_model_path: Path) -> None:
    """What Ollama's CLI, ollama-js and ollama-python sent before 0.5.5: `FROM @sha256:<hex>`."""
    client = ollama.Client(host=live_server.url)
    digest = client.create_blob(tiny_model_path)
    r = httpx.post(
        live_server.url + "/api/create",
        json={"model": "legacy", "modelfile": f"FROM @{digest}\nSYSTEM Be terse.\n"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    statuses = [json.loads(line).get("status") for line in r.text.splitlines() if line]
    assert f"using existing layer {digest}" in statuses and statuses[-1] == "success", statuses
    shown = httpx.post(live_server.url + "/api/show", json={"model": "legacy"}).json()
    assert shown["system"] == "Be terse." and shown["details"]["family"] == "llama"

    missing = "sha256:" + "0" * 64
    r = httpx.post(
        live_server.url + "/api/create",
        json={"model": "legacy2", "modelfile": f"FROM @{missing}\n", "stream": False},
    )
    assert r.status_code == 400 and f"blob {missing}" in r.json()["error"] and "POST /api/blobs" in r.json()["error"]
