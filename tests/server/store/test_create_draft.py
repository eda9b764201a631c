"""`/api/create` with a draft model (`draft_files`, Modelfile `DRAFT`): stored as Ollama stores
it (an `image.draft` layer and `draft` in the config), shown in `show --modelfile`, and refused
with a 400 that names the difference when its vocabulary is not the model's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from server.store.modelfile import parse
from tests.support.live_server import LiveServer


def create(server: LiveServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/api/create", json={**body, "stream": False}, timeout=60, trust_env=False)


def manifest_of(server: LiveServer, name: str) -> dict[str, Any]:
    path = server.models / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    return json.loads(path.read_text())


def test_a_draft_becomes_a_draft_layer_and_shows_in_the_modelfile(
    live_server: LiveServer, tiny_model_path: Path, tiny_draft_model_path: Path
) -> None:
    client = ollama.Client(host=live_server.url)
    model, draft = client.create_blob(tiny_model_path), client.create_blob(tiny_draft_model_path)
    r = create(live_server, {"model": "with-draft", "files": {"m.gguf": model}, "draft_files": {"d.gguf": draft}})
    assert r.status_code == 200, r.text
    manifest = manifest_of(live_server, "with-draft")
    drafts = [layer for layer in manifest["layers"] if layer["mediaType"] == "application/vnd.ollama.image.draft"]
    assert [layer["digest"] for layer in drafts] == [draft]
    config_digest = manifest["config"]["digest"].replace(":", "-")
    config = json.loads((live_server.models / "blobs" / config_digest).read_text())
    assert config["draft"] == {"model_format": "gguf", "architecture": "llama"}
    shown = client.show("with-draft").modelfile or ""
    blob = live_server.models / "blobs" / draft.replace(":", "-")
    assert f"\nDRAFT {blob}\n" in shown
    # The Modelfile `show` prints parses back to the same draft.
    assert parse(shown).all("draft") == [str(blob)]
    # A model derived with `from` keeps its draft.
    r = create(live_server, {"model": "derived", "from": "with-draft", "system": "hi"})
    assert r.status_code == 200, r.text
    assert f"\nDRAFT {blob}\n" in (client.show("derived").modelfile or "")


@pytest.mark.parametrize("draft_kind", ["other-vocab", "bert"])
def test_a_draft_with_another_vocabulary_is_refused(
    live_server: LiveServer,
    tiny_model_path: Path,
    tiny_other_vocab_model_path: Path,
    bert_model_path: Path,
    draft_kind: str,
) -> None:
    client = ollama.Client(host=live_server.url)
    model = client.create_blob(tiny_model_path)
    path = tiny_other_vocab_model_path if draft_kind == "other-vocab" else bert_model_path
    draft = client.create_blob(path)
    r = create(live_server, {"model": "bad-draft", "files": {"m.gguf": model}, "draft_files": {"d.gguf": draft}})
    assert r.status_code == 400
    message = r.json()["error"]
    if draft_kind == "other-vocab":
        assert message == (
            "draft model d.gguf does not share the model's vocabulary: the draft has 1536 tokens, the model 1024"
        )
    else:
        assert message == "d.gguf: a draft model must be a text-generation GGUF"
    assert not (live_server.models / "manifests" / "registry.ollama.ai" / "library" / "bad-draft").exists()


def test_draft_request_errors(live_server: LiveServer, tiny_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    model = client.create_blob(tiny_model_path)
    files = {"m.gguf": model}
    cases = [
        ({"draft_quantize": "q8_0"}, "--draft-quantize requires a DRAFT model"),
        ({"draft_files": {"../d.gguf": model}}, "file path must be relative"),
        ({"draft_files": {"d.gguf": ""}}, "invalid digest format"),
        ({"draft_files": {"d.gguf": "sha256:" + "0" * 64}}, None),
    ]
    for extra, message in cases:
        r = create(live_server, {"model": "draft-errors", "files": files, **extra})
        assert r.status_code == 400, (extra, r.text)
        if message is not None:
            assert r.json()["error"] == message
        else:
            assert "not found; upload it with POST /api/blobs/" in r.json()["error"]


def test_the_old_modelfile_form_takes_an_uploaded_draft_and_refuses_a_path(
    live_server: LiveServer, tiny_model_path: Path, tiny_draft_model_path: Path
) -> None:
    client = ollama.Client(host=live_server.url)
    model, draft = client.create_blob(tiny_model_path), client.create_blob(tiny_draft_model_path)
    r = create(live_server, {"model": "legacy-draft", "modelfile": f"FROM @{model}\nDRAFT @{draft}\n"})
    assert r.status_code == 200, r.text
    blob = live_server.models / "blobs" / draft.replace(":", "-")
    assert f"\nDRAFT {blob}\n" in (client.show("legacy-draft").modelfile or "")
    r = create(live_server, {"model": "legacy-draft", "modelfile": f"FROM @{model}\nDRAFT ./draft.gguf\n"})
    assert r.status_code == 400 and "DRAFT './draft.gguf' is a path" in r.json()["error"]
