"""The checkout itself (not frozen) on the bundles' portable llama.cpp build: the runner finds the
CPU variants in llama_cpp/lib although ggml would look beside the Python interpreter, runs a
model, and reports the variant. Uses the build venv that build.py freezes from (cached)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import llama_wheel
import ollama
import pytest
from build_venv import build_venv

from tests.fixtures.gguf_models import cached_model
from tests.packaging.bundles import BUILD_CACHE
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux CPU variants")


def test_checkout_runs_a_model_on_the_all_variants_build(tmp_path: Path) -> None:
    base = llama_wheel.build_wheel(llama_wheel.spec_for("cpu"), BUILD_CACHE)
    python = build_venv(base.path, BUILD_CACHE, "cpu")
    server = LiveServer(tmp_path / "models", command=[str(python), "-m", "app", "serve"]).start(timeout=60)
    try:
        ggml = httpx.get(server.url + "/api/pollama/devices", timeout=120).json()["ggml"]
        assert ggml["dynamic"] is True and ggml["cpu_variant"], ggml
        client = ollama.Client(host=server.url)
        client.create(model="tiny", files={"m.gguf": client.create_blob(cached_model("tiny"))})
        out = client.generate(model="tiny", prompt="hello", raw=True, options={"num_predict": 8, "temperature": 0})
        assert out.response and out.eval_count == 8
    finally:
        server.stop()
