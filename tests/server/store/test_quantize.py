"""`/api/create` with `quantize`: real llama.cpp quantization in a child process, through a live server."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import gguf
import httpx
import ollama
import pytest

from server.errors import BadRequest, PollamaError
from server.store import quantize as q
from server.store.blobs import BlobStore
from server.store.manifest import Manifest
from tests.fixtures.gguf_models import PRESETS, write_llama_model, write_truncated_gguf
from tests.support.live_server import LiveServer

GREEDY = {"temperature": 0, "seed": 1, "num_predict": 4}


def upload(server: LiveServer, path: Path) -> str:
    return ollama.Client(host=server.url).create_blob(path)


def create_stream(server: LiveServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", server.url + "/api/create", json=body, timeout=120) as r:
        assert r.status_code == 200
        return [json.loads(line) for line in r.iter_lines() if line]


def model_layer(server: LiveServer, model: str) -> str:
    path = server.models / "manifests/registry.ollama.ai/library" / model / "latest"
    manifest = Manifest.parse(path.read_bytes())
    (layer,) = [layer for layer in manifest.layers if layer.media_type == "application/vnd.ollama.image.model"]
    return layer.digest


def blob_file_type(server: LiveServer, digest: str) -> str:
    reader = gguf.GGUFReader(server.models / "blobs" / digest.replace(":", "-"))
    return gguf.LlamaFileType(int(reader.fields["general.file_type"].contents())).name


def blobs_on_disk(server: LiveServer) -> set[str]:
    return {p.name for p in (server.models / "blobs").iterdir()}


def manifests_on_disk(server: LiveServer) -> list[Path]:
    return [p for p in (server.models / "manifests").rglob("*") if p.is_file()]


def assert_generates(server: LiveServer, model: str) -> None:
    r = httpx.post(
        server.url + "/api/generate",
        json={"model": model, "prompt": "Hello there", "options": GREEDY, "stream": False},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["done"] is True and body["eval_count"] > 0 and body["response"]


def test_quantize_f16_to_q8_0(live_server: LiveServer, small_model_path: Path) -> None:
    source = upload(live_server, small_model_path)
    events = create_stream(live_server, {"model": "small-q8", "files": {"model.gguf": source}, "quantize": "q8_0"})
    statuses = [e["status"] for e in events]

    bars = [e for e in events if e["status"] == "quantizing F16 model to Q8_0"]
    size = small_model_path.stat().st_size
    assert bars and all(e["digest"] == q.PROGRESS_DIGEST and e["total"] == size for e in bars)
    assert [e["completed"] for e in bars] == sorted(e["completed"] for e in bars)
    assert bars[0]["completed"] == 0 and bars[-1]["completed"] == size
    assert len(bars) > 2, "progress is reported as tensors are converted"
    assert statuses[0] == "parsing GGUF"
    assert statuses.index("verifying conversion") > statuses.index(bars[-1]["status"])

    new = model_layer(live_server, "small-q8")
    assert new != source
    assert f"creating new layer {new}" in statuses
    assert not any(source in s for s in statuses[statuses.index("verifying conversion") :]), (
        "the unquantized source is not a layer of the new model"
    )
    assert statuses[-2:] == ["writing manifest", "success"]
    assert blob_file_type(live_server, new) == "MOSTLY_Q8_0"
    assert (live_server.models / "blobs" / new.replace(":", "-")).stat().st_size < size * 0.6

    shown = httpx.post(live_server.url + "/api/show", json={"model": "small-q8"}).json()
    assert shown["details"]["quantization_level"] == "Q8_0"
    tags = httpx.get(live_server.url + "/api/tags").json()["models"]
    assert [m["details"]["quantization_level"] for m in tags] == ["Q8_0"]
    assert not any(b.startswith(".tmp-") for b in blobs_on_disk(live_server))
    assert_generates(live_server, "small-q8")


def test_quantize_f32_to_q4_k_m_from_an_existing_model(live_server: LiveServer, tiny_model_path: Path) -> None:
    """`from` + the deprecated `quantization` key; 64-wide rows make llama.cpp fall back on other types."""
    client = ollama.Client(host=live_server.url)
    source = upload(live_server, tiny_model_path)
    assert client.create(model="base", files={"model.gguf": source}, stream=False).status == "success"
    events = create_stream(live_server, {"model": "tiny-q4", "from": "base", "quantization": "Q4_k_m"})
    statuses = [e["status"] for e in events]
    assert "quantizing F32 model to Q4_K_M" in statuses
    new = model_layer(live_server, "tiny-q4")
    assert new != source and model_layer(live_server, "base") == source
    assert f"creating new layer {new}" in statuses
    assert blob_file_type(live_server, new) == "MOSTLY_Q4_K_M"
    shown = client.show("tiny-q4")
    assert shown.details is not None and shown.details.quantization_level == "Q4_K_M"
    assert shown.details.family == "llama"
    assert_generates(live_server, "tiny-q4")

    # The same request again: llama.cpp's output is deterministic, so the blob is reused.
    again = [
        e["status"] for e in create_stream(live_server, {"model": "tiny-q4b", "from": "base", "quantize": "q4_K_M"})
    ]
    assert f"using existing layer {new}" in again


def test_quantize_to_the_type_the_model_has_is_a_no_op(live_server: LiveServer, tiny_model_path: Path) -> None:
    source = upload(live_server, tiny_model_path)
    events = create_stream(live_server, {"model": "same", "files": {"model.gguf": source}, "quantize": "f32"})
    assert not any(e["status"].startswith("quantizing") for e in events)
    assert model_layer(live_server, "same") == source


def test_refusals_leave_the_store_unchanged(live_server: LiveServer, tmp_path: Path) -> None:
    url = live_server.url + "/api/create"
    refusal = {"error": "quantization is only supported for F16, BF16 and F32 models"}
    q8_path = write_llama_model(tmp_path / "q8.gguf", replace(PRESETS["tiny"], name="tiny-q8", file_type="Q8_0"))
    q8 = upload(live_server, q8_path)
    ollama.Client(host=live_server.url).create(model="q8", files={"model.gguf": q8}, stream=False)
    blobs_before, manifests_before = blobs_on_disk(live_server), manifests_on_disk(live_server)

    r = httpx.post(url, json={"model": "m", "files": {"model.gguf": q8}, "quantize": "q4_K_M", "stream": False})
    assert (r.status_code, r.json()) == (400, refusal)
    streamed = create_stream(live_server, {"model": "m", "files": {"model.gguf": q8}, "quantize": "q4_K_M"})
    assert streamed == [{"status": "parsing GGUF"}, refusal]
    r = httpx.post(url, json={"model": "m", "from": "q8", "quantize": "q4_K_M"})  # streamed, refused before any event
    assert (r.status_code, r.json()) == (400, refusal)

    r = httpx.post(url, json={"model": "m", "files": {"model.gguf": q8}, "quantize": "q9_X"})
    assert r.status_code == 400
    message = r.json()["error"]
    assert message.startswith("unsupported quantization type q9_X - supported types are ")
    for name in (
        "Q4_0",
        "Q4_1",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q2_K",
        "Q3_K_S",
        "Q3_K_M",
        "Q3_K_L",
        "Q4_K_S",
        "Q4_K_M",
        "Q5_K_S",
        "Q5_K_M",
        "Q6_K",
    ):
        assert name in message
    assert (blobs_on_disk(live_server), manifests_on_disk(live_server)) == (blobs_before, manifests_before)


@pytest.mark.parametrize("stream", [False, True])
def test_failed_quantize_leaves_nothing_behind(live_server: LiveServer, tmp_path: Path, stream: bool) -> None:
    """llama.cpp refuses a model it cannot load (here: an architecture it does not know)."""
    bad = write_llama_model(tmp_path / "alien.gguf", "tiny", extra_metadata={"general.architecture": "nonsense"})
    digest = upload(live_server, bad)
    before = blobs_on_disk(live_server)
    body = {"model": "alien", "files": {"model.gguf": digest}, "quantize": "q8_0", "stream": stream}
    if stream:
        events = create_stream(live_server, body)
        assert events[0] == {"status": "parsing GGUF"}
        assert any(e.get("status") == "quantizing F32 model to Q8_0" for e in events)
        error = events[-1]["error"]
    else:
        r = httpx.post(live_server.url + "/api/create", json=body, timeout=120)
        assert r.status_code == 400
        error = r.json()["error"]
    assert error.startswith("quantizing to Q8_0 failed: ") and "nonsense" in error
    assert blobs_on_disk(live_server) == before
    assert manifests_on_disk(live_server) == []
    assert httpx.get(live_server.url + "/api/tags").json()["models"] == []


def test_truncated_source_is_refused_before_quantizing(
    live_server: LiveServer, tmp_path: Path, small_model_path: Path
) -> None:
    cut = write_truncated_gguf(tmp_path / "cut.gguf", small_model_path)
    digest = upload(live_server, cut)
    before = blobs_on_disk(live_server)
    r = httpx.post(
        live_server.url + "/api/create",
        json={"model": "cut", "files": {"model.gguf": digest}, "quantize": "q8_0", "stream": False},
        timeout=120,
    )
    assert r.status_code == 400 and "not a valid GGUF file" in r.json()["error"]
    assert blobs_on_disk(live_server) == before
    assert manifests_on_disk(live_server) == []


def store_with_quantizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> BlobStore:
    """An empty blob store whose quantizer child runs `script` instead (to crash or hang on cue)."""
    monkeypatch.setattr(q, "quantize_command", lambda: [sys.executable, "-c", script])
    blobs = BlobStore(tmp_path / "blobs")
    blobs.root.mkdir()
    return blobs


async def test_a_crashing_quantizer_is_an_error_not_a_dead_server(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child dies of SIGABRT (as on a GGML_ASSERT): a 500 naming the signal, no blob, no temp file."""
    crash = "import os, signal, sys; sys.stderr.write('GGML_ASSERT(x) failed\\n'); os.kill(os.getpid(), signal.SIGABRT)"
    blobs = store_with_quantizer(tmp_path, monkeypatch, crash)
    pinned: list[str] = []
    with pytest.raises(PollamaError) as info:
        async for _ in q.quantize_blob(blobs, tiny_model_path, "F32", "Q8_0", pin=pinned.append):
            pass
    assert info.value.status == 500
    assert "crashed (SIGABRT)" in info.value.message and "GGML_ASSERT(x) failed" in info.value.message
    assert list(blobs.root.iterdir()) == [] and pinned == []


async def test_closing_the_stream_kills_the_quantizer(
    tmp_path: Path, small_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that goes away mid-quantize: the child is killed and its temp file removed."""
    hang = "import sys, time; open(sys.argv[2], 'wb').write(b'partial'); print('{\"progress\": 0.5}', flush=True); time.sleep(60)"
    blobs = store_with_quantizer(tmp_path, monkeypatch, hang)
    events = q.quantize_blob(blobs, small_model_path, "F16", "Q8_0", pin=lambda d: None)
    first = await events.__anext__()
    second = await events.__anext__()
    assert (first["completed"], second["completed"]) == (0, small_model_path.stat().st_size // 2)  # type: ignore[index]
    assert [p.name[:5] for p in blobs.root.iterdir()] == [".tmp-"]
    await events.aclose()
    assert list(blobs.root.iterdir()) == []


def test_type_names() -> None:
    import llama_cpp

    for name, constant in q.QUANT_TYPES.items():
        assert isinstance(getattr(llama_cpp, constant), int), name
        assert q.parse_quant_type(name.lower()) == name
    assert q.parse_quant_type(" q4_k ") == "Q4_K_M"
    with pytest.raises(BadRequest):
        q.parse_quant_type("IQ2_XXS")  # needs an importance matrix, which create has no way to take
    for ok in q.SOURCE_TYPES:
        q.check_source(ok)
    with pytest.raises(BadRequest, match="^quantization is only supported for F16, BF16 and F32 models$"):
        q.check_source("Q8_0")
