"""The `/api/create` progress stream reports layers as Ollama does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import ollama

from tests.support.live_server import LiveServer

TEMPLATE = "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}"


def statuses(server: LiveServer, body: dict[str, Any]) -> list[str]:
    with httpx.stream("POST", server.url + "/api/create", json=body, timeout=60) as r:
        assert r.status_code == 200
        return [json.loads(line)["status"] for line in r.iter_lines() if line]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_uploaded_files_are_existing_layers(live_server: LiveServer, tiny_model_path: Path) -> None:
    """Ollama's `NewLayerFromLayer`: a blob uploaded beforehand is `using existing layer`."""
    model = ollama.Client(host=live_server.url).create_blob(tiny_model_path)
    template = digest_of(TEMPLATE.encode())
    body = {"model": "tiny", "files": {"model.gguf": model}, "template": TEMPLATE}
    assert statuses(live_server, body) == [
        "parsing GGUF",
        f"using existing layer {model}",
        f"creating new layer {template}",
        "writing manifest",
        "success",
    ]
    # Everything exists the second time.
    assert statuses(live_server, {**body, "model": "again"}) == [
        "parsing GGUF",
        f"using existing layer {model}",
        f"using existing layer {template}",
        "writing manifest",
        "success",
    ]


def test_blobs_named_in_an_old_modelfile_are_existing_layers(live_server: LiveServer, tiny_model_path: Path) -> None:
    """The legacy `modelfile` form names uploaded blobs (`FROM @sha256:…`): like `files`, they are
    `using existing layer`; only what the request itself writes is `creating new layer`."""
    model = ollama.Client(host=live_server.url).create_blob(tiny_model_path)
    template = digest_of(b"{{ .Prompt }}")
    body = {"model": "legacy", "modelfile": f'FROM @{model}\nTEMPLATE "{{{{ .Prompt }}}}"\n'}
    first = statuses(live_server, body)
    assert f"using existing layer {model}" in first and f"creating new layer {template}" in first
    second = statuses(live_server, {**body, "model": "legacy2"})
    assert f"using existing layer {model}" in second and f"using existing layer {template}" in second
