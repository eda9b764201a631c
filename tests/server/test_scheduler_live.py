"""The scheduler's limits, observed through a live server: eviction and the queue bound."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import httpx
import ollama

from server.scheduler import BUSY_MESSAGE
from tests.support.live_server import LiveServer

TEMPLATE = "{{ .Prompt }}"
GREEDY = {"temperature": 0, "num_predict": 4}


def create(client: ollama.Client, name: str, path: Path) -> None:
    client.create(model=name, files={"m.gguf": client.create_blob(path)}, template=TEMPLATE, stream=False)


def test_max_loaded_models_evicts_the_idle_model(
    models_dir: Path, tiny_model_path: Path, tiny_model_eos_path: Path
) -> None:
    server = LiveServer(models_dir, env={"OLLAMA_MAX_LOADED_MODELS": "1"}).start()
    try:
        client = ollama.Client(host=server.url)
        create(client, "a", tiny_model_path)
        create(client, "b", tiny_model_eos_path)
        client.generate(model="a", prompt="x", options=GREEDY)
        assert [m.model for m in client.ps().models] == ["a:latest"]
        client.generate(model="b", prompt="x", options=GREEDY)
        assert [m.model for m in client.ps().models] == ["b:latest"]
        client.generate(model="a", prompt="x", options=GREEDY)
        assert [m.model for m in client.ps().models] == ["a:latest"]
    finally:
        server.stop()


def test_three_models_fit_by_default(
    models_dir: Path, tiny_model_path: Path, tiny_model_eos_path: Path, small_model_path: Path
) -> None:
    server = LiveServer(models_dir).start()
    try:
        client = ollama.Client(host=server.url)
        for name, path in (("a", tiny_model_path), ("b", tiny_model_eos_path), ("c", small_model_path)):
            create(client, name, path)
            client.generate(model=name, prompt="x", options=GREEDY)
        # the ollama client types every response field Optional
        assert sorted(cast(str, m.model) for m in client.ps().models) == ["a:latest", "b:latest", "c:latest"]
    finally:
        server.stop()


def test_full_queue_answers_503_at_once(models_dir: Path, tiny_model_path: Path) -> None:
    server = LiveServer(models_dir, env={"OLLAMA_MAX_QUEUE": "2"}).start()
    try:
        client = ollama.Client(host=server.url)
        create(client, "a", tiny_model_path)

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as c:
                body = {"model": "a", "prompt": "x", "stream": False, "options": GREEDY}
                return list(await asyncio.gather(*(c.post("/api/generate", json=body) for _ in range(8))))

        responses = asyncio.run(burst())
        statuses = sorted(r.status_code for r in responses)
        busy = [r for r in responses if r.status_code == 503]
        assert busy, statuses
        assert all(r.json() == {"error": BUSY_MESSAGE} for r in busy)
        assert statuses.count(200) >= 2, "the ones that queued are served"
        assert client.generate(model="a", prompt="again", options=GREEDY).done
    finally:
        server.stop()


def test_reload_when_runner_options_change(models_dir: Path, tiny_model_path: Path) -> None:
    server = LiveServer(models_dir).start()
    try:
        client = ollama.Client(host=server.url)
        create(client, "a", tiny_model_path)
        client.generate(model="a", prompt="x", options={**GREEDY, "num_ctx": 512})
        assert client.ps().models[0].context_length == 512
        client.generate(model="a", prompt="x", options={**GREEDY, "num_ctx": 1024})
        ps = client.ps().models
        assert len(ps) == 1 and ps[0].context_length == 1024
        # Without num_ctx the default applies (4096, clamped to the model's trained 2048): another reload.
        client.generate(model="a", prompt="x", options=GREEDY)
        ps = client.ps().models
        assert len(ps) == 1 and ps[0].context_length == 2048
    finally:
        server.stop()
