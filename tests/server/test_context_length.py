"""The context length a runner gets when nothing sets one, chosen from free memory and the
model's trained length, and the reason `/api/ps` gives.

The decision is tested as a plain function, then end to end: an app whose scheduler reads
a faked free memory (the estimate's input; llama.cpp is real) loads a tiny model trained for
262144 tokens and the runner really holds the chosen context, on machines of several sizes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.app import build_services, create_app
from server.config import load_config
from server.context_length import AUTO_HEADROOM, explicit_context, fitting_context
from server.gpu import SystemMemory
from server.inference.runner_calls import start_runner
from server.scheduler import Scheduler
from tests.fixtures.gguf_models import PRESETS, cached_model

MIB = 1 << 20
LONG = dataclasses.replace(PRESETS["tiny"], name="tiny-long", n_ctx=262144)


def linear(per_token: int, fixed: int) -> Callable[[int], int]:
    return lambda n: fixed + per_token * n


# ---- the decision ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "trained", "chosen"),
    [
        (100 * MIB, 262144, 262144),  # everything fits: the top of the ladder
        (40 * MIB, 262144, 65536),  # 24 MiB at 65536; 40 MiB at 131072 is over the 32 MiB budget
        (10 * MIB, 262144, 4096),  # nothing fits: the shortest default, Ollama's own
        (100 * MIB, 2048, 2048),  # never past the trained length, even when the floor is higher
        (100 * MIB, 50000, 50000),  # a trained length between two rungs is a rung itself
        (100 * MIB, None, 262144),  # no trained length known: the ladder alone
    ],
)
def test_longest_context_that_fits(free: int, trained: int | None, chosen: int) -> None:
    cost = linear(256, 8 * MIB)  # the tiny model: 256 bytes of KV cache a token
    choice = fitting_context(trained, free, cost)
    assert choice.num_ctx == chosen and choice.source == "memory"
    if cost(chosen) <= free * AUTO_HEADROOM:
        assert "chosen from free memory" in choice.reason
    else:
        assert "shortest default" in choice.reason


def test_the_chosen_rung_is_the_longest_within_the_headroom() -> None:
    cost = linear(1024, 0)
    free = int(65536 * 1024 / AUTO_HEADROOM)  # exactly 65536 tokens' worth inside the headroom
    assert fitting_context(262144, free, cost).num_ctx == 65536
    assert fitting_context(262144, free - 1, cost).num_ctx == 32768


def test_explicit_context_sources() -> None:
    params = {"num_ctx": 3072}
    assert explicit_context({"num_ctx": 3072}, params, 8192).source == "model"  # type: ignore[union-attr]
    request = explicit_context({"num_ctx": 1024}, params, 8192)
    assert request is not None and (request.num_ctx, request.source) == (1024, "request")
    env = explicit_context({}, {}, 8192)
    assert env is not None and (env.num_ctx, env.source, env.reason) == (8192, "env", "OLLAMA_CONTEXT_LENGTH=8192")
    assert explicit_context({}, {}, 0) is None


# ---- end to end: real runners, faked free memory ----------------------------------------------


class Machine:
    """The memory a scheduler sees (a CPU-only machine: the model loads into system RAM)."""

    def __init__(self, free: int) -> None:
        self.free = free

    def memory(self) -> SystemMemory:
        return SystemMemory(total=max(self.free, 1) * 2, free=self.free)


async def serve(models_dir: Path, machine: Machine, **config_changes: Any) -> tuple[Any, Scheduler]:
    config = dataclasses.replace(load_config(settings={}), **config_changes)
    scheduler = Scheduler(config, start_runner, memory=machine.memory, devices=lambda: [])
    return create_app(config, services=build_services(config, scheduler=scheduler)), scheduler


async def create(client: Any, name: str, path: Path, parameters: dict[str, Any] | None = None) -> None:
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    r = await client.post(f"/api/blobs/{digest}", data=path.read_bytes())
    assert r.status_code in (200, 201)
    body: dict[str, Any] = {"model": name, "files": {"m.gguf": digest}, "stream": False}
    if parameters:
        body["parameters"] = parameters
    r = await client.post("/api/create", json=body)
    assert r.status_code == 200, await r.get_data()


async def generate(client: Any, name: str, **options: Any) -> None:
    r = await client.post(
        "/api/generate",
        json={"model": name, "prompt": "hello", "stream": False, "options": {"num_predict": 1, **options}},
    )
    assert r.status_code == 200, await r.get_data()


async def ps(client: Any) -> list[dict[str, Any]]:
    r = await client.get("/api/ps")
    assert r.status_code == 200
    return list((await r.get_json())["models"])


@pytest.mark.parametrize(
    ("free_mib", "chosen"),
    [
        (10, 4096),  # a small machine: the estimate (~20 MiB at 4096) never fits, Ollama's default
        (40, 32768),  # 27 MiB at 32768, 35 MiB at 65536 over the 32 MiB budget
        (70, 131072),
        (120, 262144),  # the whole trained context
    ],
)
async def test_machines_of_different_sizes(models_dir: Path, free_mib: int, chosen: int) -> None:
    machine = Machine(free_mib * MIB)
    app, scheduler = await serve(models_dir, machine)
    try:
        async with app.test_app() as test_app:
            client = test_app.test_client()
            await create(client, "long", cached_model(LONG))
            await generate(client, "long")
            (entry,) = await ps(client)
            assert entry["context_length"] == chosen
            assert f"{chosen} tokens" in entry["context_length_reason"]
            assert "(trained for 262144)" in entry["context_length_reason"]
            (loaded,) = scheduler._loaded.values()
            assert loaded.client.info.n_ctx == chosen  # the runner really holds it
            # its own memory is not free any more; the next request must not shrink and reload it
            pid = loaded.client.pid
            machine.free = 1 * MIB
            await generate(client, "long")
            (again,) = scheduler._loaded.values()
            assert again.client.pid == pid and again.spec.num_ctx == chosen
    finally:
        await scheduler.close()


async def test_explicit_settings_win_and_say_so(models_dir: Path, tiny_model_path: Path) -> None:
    machine = Machine(10 * 1024 * MIB)
    app, scheduler = await serve(models_dir, machine, context_length=1536)
    try:
        async with app.test_app() as test_app:
            client = test_app.test_client()
            await create(client, "long", cached_model(LONG))
            await create(client, "pinned", cached_model(LONG), parameters={"num_ctx": 3072})
            await create(client, "tiny", tiny_model_path)
            await generate(client, "long")
            assert {e["model"]: e["context_length_reason"] for e in await ps(client)} == {
                "long:latest": "OLLAMA_CONTEXT_LENGTH=1536"
            }
            await generate(client, "pinned")
            await generate(client, "tiny", num_ctx=100000)
            reasons = {e["model"]: (e["context_length"], e["context_length_reason"]) for e in await ps(client)}
            assert reasons["pinned:latest"] == (3072, "num_ctx 3072 from the model's parameters")
            assert reasons["tiny:latest"] == (
                2048,
                "num_ctx 100000 from the request; capped at the model's trained context (2048)",
            )
    finally:
        await scheduler.close()
