"""`packaging/make_catalog.py` refreshes the catalog from a real registry's manifests (docker-registry on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import make_catalog  # packaging/ is on sys.path (tests/packaging/conftest.py)
import pytest

from tests.support.registry import RegistryServer, upload_model
from ui.catalog import parse_catalog
from ui.resources import resource_path

MODEL = "application/vnd.ollama.image.model"
PARAMS = "application/vnd.ollama.image.params"
PROJECTOR = "application/vnd.ollama.image.projector"
CONFIG = b'{"model_format":"gguf"}'


def test_sizes_context_and_capabilities_come_from_the_registry(
    registry: RegistryServer,
    registry_client: httpx.Client,
    tiny_model_path: Path,
    small_model_path: Path,
    bert_model_path: Path,
    tiny_projector_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    params = b'{"temperature": 0.7}'
    upload_model(registry_client, registry.url, "library/alpha", "1b", [(MODEL, tiny_model_path)], CONFIG)
    upload_model(
        registry_client,
        registry.url,
        "library/alpha",
        "3b",
        [(MODEL, small_model_path), (PROJECTOR, tiny_projector_path), (PARAMS, params)],
        CONFIG,
    )
    upload_model(registry_client, registry.url, "library/beta", "latest", [(MODEL, bert_model_path)], CONFIG)
    curated = {
        "about": "people wrote this",
        "source": "knowledge",
        "models": [
            {
                "name": "alpha",
                "description": "Alpha.",
                "capabilities": ["tools"],
                "context_length": 1,
                "default_tag": "3b",
                "tags": [{"tag": "1b", "size": 1}, {"tag": "3b", "size": 2}, {"tag": "70b", "size": 3}],
            },
            {"name": "beta", "description": "Beta.", "capabilities": [], "tags": [{"tag": "latest", "size": 1}]},
            {"name": "gone", "description": "Not there.", "tags": [{"tag": "latest", "size": 1}]},
        ],
    }
    source, out = tmp_path / "in.json", tmp_path / "out.json"
    source.write_text(json.dumps(curated))

    assert make_catalog.main(["--registry", registry.url, "--headers", "--in", str(source), "--out", str(out)]) == 0

    fresh = json.loads(out.read_text())
    assert out.read_text() == make_catalog.render(fresh)
    assert fresh["source"] == "registry" and registry.host in fresh["about"]
    alpha, beta = fresh["models"]
    assert [m["name"] for m in fresh["models"]] == ["alpha", "beta"]
    one = tiny_model_path.stat().st_size + len(CONFIG)
    three = small_model_path.stat().st_size + tiny_projector_path.stat().st_size + len(params) + len(CONFIG)
    assert alpha["tags"] == [{"tag": "1b", "size": one}, {"tag": "3b", "size": three}]
    assert alpha["context_length"] == 4096  # the `small` model's header (the default tag, 3b)
    assert alpha["capabilities"] == ["tools", "vision"]  # curated, plus the projector layer's proof
    assert beta["capabilities"] == ["embedding"] and beta["context_length"] == 2048
    assert alpha["description"] == "Alpha." and alpha["default_tag"] == "3b"
    err = capsys.readouterr().err
    assert "alpha:70b: model" in err and "not found" in err and "gone: no tag left; model dropped" in err
    assert [m.name for m in parse_catalog(out.read_text()).models] == ["alpha", "beta"]  # the app reads it


def test_the_shipped_catalog_is_in_the_scripts_format() -> None:
    text = resource_path("catalog.json").read_text(encoding="utf-8")
    assert text == make_catalog.render(json.loads(text))
