"""The scheduler's asyncio layer with runners in memory (`server.runner.memory`): every path, no processes.

The real-runner tests (`test_scheduler_live.py`, `test_context_length.py`)
show that the scheduler drives llama.cpp runners; these show what it decides
and when, with each load's length, failure and memory figure set by the test.
Models are real store entries (tiny GGUF files), so specs and estimates are
the ones a server computes. Nothing waits on time to pass except keep-alive
expiry, and that waits for the unload itself, not for a duration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.app import build_services, create_app
from server.config import load_config
from server.errors import RequestCanceled, RunnerError, ServerBusy
from server.gpu import SystemMemory
from server.runner.memory import MIB, MemoryRunner, MemoryRunners, RunnerScript
from server.runner.messages import CompletionRequest
from server.scheduler import BUSY_MESSAGE, Lease, Scheduler, estimate_memory
from server.store.manifest import CONFIG_MEDIA_TYPE, MODEL, Layer, Manifest
from server.store.names import Name
from server.store.store import Model, Store

GIB = 1 << 30


# ---- set-up ---------------------------------------------------------------------------------


@pytest.fixture
def store(models_dir: Path) -> Store:
    s = Store(models_dir)
    s.prepare(prune=False)
    return s


def add_model(store: Store, name: str, weights: Path) -> Model:
    data = weights.read_bytes()
    config = b'{"model_format":"gguf"}'
    manifest = Manifest.build(
        Layer(CONFIG_MEDIA_TYPE, store.blobs.write_bytes(config), len(config)),
        [Layer(MODEL, store.blobs.write_bytes(data), len(data))],
    )
    store.write_manifest(Name.parse(name), manifest)
    return store.require(Name.parse(name))


@pytest.fixture
def models(store: Store, tiny_model_path: Path, tiny_model_eos_path: Path, small_model_path: Path) -> list[Model]:
    """Three models of three different files: one runner each."""
    out = [
        add_model(store, n, p) for n, p in (("a", tiny_model_path), ("b", tiny_model_eos_path), ("c", small_model_path))
    ]
    assert len({m.model_path for m in out}) == 3
    return out


class Machine:
    """System memory (no GPUs): `total`, less what the live memory runners say they hold."""

    def __init__(self, runners: MemoryRunners, total: int) -> None:
        self.runners = runners
        self.total = total

    def memory(self) -> SystemMemory:
        return SystemMemory(total=self.total, free=max(0, self.total - self.runners.used()))


def scheduler(runners: MemoryRunners, *, total: int = 64 * GIB, **config_changes: Any) -> Scheduler:
    config = dataclasses.replace(load_config(settings={}), **config_changes)
    return Scheduler(config, runners, memory=Machine(runners, total).memory, devices=lambda: [])


async def lease(s: Scheduler, model: Model, keep_alive: float | None = None, **options: Any) -> Lease:
    spec = s.spec_for(model, {"num_ctx": 512, **options})
    return await s.acquire(model, spec, keep_alive)


def runner_of(held: Lease) -> MemoryRunner:
    runner = held.runner
    assert isinstance(runner, MemoryRunner)
    return runner


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until `condition` holds (a bound on a hang, not a timing assertion)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def settle() -> None:
    """Let every task that can make progress make it."""
    for _ in range(20):
        await asyncio.sleep(0)


def loaded_names(s: Scheduler) -> list[str]:
    return sorted(entry["name"] for entry in s.ps())


# ---- load and reuse -------------------------------------------------------------------------


async def test_a_model_loads_once_and_is_reused(models: list[Model]) -> None:
    a = models[0]
    runners = MemoryRunners(RunnerScript(size=300 * MIB, size_vram=100 * MIB))
    s = scheduler(runners)
    async with await lease(s, a) as first:
        runner = runner_of(first)
        assert runner.info.n_ctx == 512 and runner.spec.model_path == str(a.model_path)
    async with await lease(s, a) as second:
        assert second.runner is runner
    assert runners.attempts == [str(a.model_path)]
    (entry,) = s.ps()
    assert (entry["name"], entry["size"], entry["size_vram"], entry["context_length"]) == (
        "a:latest",
        300 * MIB,
        100 * MIB,
        512,
    )
    assert "devices" not in entry, "only a model split across RPC workers lists its devices"
    await s.close()
    assert not runner.alive and runner.closed_by_request


async def test_a_lease_streams_the_runners_completion(models: list[Model]) -> None:
    runners = MemoryRunners(RunnerScript(pieces=("one", " two", " three")))
    s = scheduler(runners)
    async with await lease(s, models[0]) as held:
        chunks = [c async for c in held.runner.completion(CompletionRequest(prompt="hi", num_predict=2))]
    assert [c.content for c in chunks] == ["one", " two", ""]
    assert (chunks[-1].done, chunks[-1].done_reason, chunks[-1].eval_count, chunks[-1].prompt_count) == (
        True,
        "length",
        2,
        2,
    )
    await s.close()


async def test_concurrent_requests_for_one_model_share_one_load(models: list[Model]) -> None:
    a = models[0]
    runners = MemoryRunners()
    s = scheduler(runners, num_parallel=4)
    runners.hold()
    tasks = [asyncio.create_task(lease(s, a)) for _ in range(4)]
    await until(lambda: runners.loading == 1, "the first request starts the load")
    await settle()
    assert not any(t.done() for t in tasks) and runners.loading == 1
    assert s.queue_depth() == 4, "all four wait for the model to load"
    runners.release()
    leases = await asyncio.gather(*tasks)
    assert len(runners.attempts) == 1
    assert len({id(held.runner) for held in leases}) == 1
    for held in leases:
        held.release()
    await s.close()


async def test_loads_of_different_models_go_one_at_a_time(models: list[Model]) -> None:
    a, b, _ = models
    runners = MemoryRunners()
    s = scheduler(runners)
    runners.hold()
    tasks = [asyncio.create_task(lease(s, m)) for m in (a, b)]
    await until(lambda: runners.loading == 1, "a load starts")
    await settle()
    assert runners.loading == 1 and runners.attempts == [str(a.model_path)]
    runners.release()
    for held in await asyncio.gather(*tasks):
        held.release()
    assert loaded_names(s) == ["a:latest", "b:latest"]
    await s.close()


async def test_requests_beyond_num_parallel_wait_for_a_free_slot(models: list[Model]) -> None:
    a = models[0]
    s = scheduler(MemoryRunners(), num_parallel=2)
    first, second = await lease(s, a), await lease(s, a)
    third = asyncio.create_task(lease(s, a))
    await settle()
    assert not third.done() and s.queue_depth() == 1
    first.release()
    held = await third
    assert held.runner is second.runner and s.queue_depth() == 0
    second.release()
    held.release()
    await s.close()


async def test_a_full_queue_is_refused_at_once(models: list[Model]) -> None:
    a = models[0]
    runners = MemoryRunners()
    s = scheduler(runners, max_queue=2, num_parallel=2)
    runners.hold()
    waiting = [asyncio.create_task(lease(s, a)) for _ in range(2)]
    await until(lambda: s.queue_depth() == 2, "two requests wait for the load")
    with pytest.raises(ServerBusy, match=BUSY_MESSAGE.split(".")[0]):
        await lease(s, a)
    runners.release()
    for held in await asyncio.gather(*waiting):
        held.release()
    await s.close()


async def test_changed_runner_options_reload_once_the_runner_is_idle(models: list[Model]) -> None:
    a = models[0]
    runners = MemoryRunners()
    s = scheduler(runners)
    held = await lease(s, a, num_ctx=512)
    old = runner_of(held)
    reload = asyncio.create_task(lease(s, a, num_ctx=1024))
    await settle()
    assert not reload.done() and old.alive, "the busy runner finishes its request first"
    held.release()
    new = runner_of(await reload)
    assert new is not old and new.info.n_ctx == 1024
    assert not old.alive and old.closed_by_request
    assert [e["context_length"] for e in s.ps()] == [1024]
    await s.close()


# ---- eviction -------------------------------------------------------------------------------


async def test_max_loaded_models_evicts_the_idle_model(models: list[Model]) -> None:
    a, b, _ = models
    s = scheduler(MemoryRunners(), max_loaded_models=1)
    async with await lease(s, a) as held:
        first = runner_of(held)
    async with await lease(s, b):
        pass
    assert not first.alive and loaded_names(s) == ["b:latest"]
    await s.close()


async def test_eviction_waits_for_the_busy_runner_it_has_to_evict(models: list[Model]) -> None:
    a, b, _ = models
    runners = MemoryRunners()
    s = scheduler(runners, max_loaded_models=1)
    held = await lease(s, a)
    waiting = asyncio.create_task(lease(s, b))
    await settle()
    assert not waiting.done() and runners.attempts == [str(a.model_path)]
    held.release()
    (await waiting).release()
    assert not runner_of(held).alive and loaded_names(s) == ["b:latest"]
    await s.close()


async def test_a_model_that_does_not_fit_evicts_the_shortest_keep_alive(models: list[Model]) -> None:
    a, b, c = models
    size = 1 * GIB
    runners = MemoryRunners(RunnerScript(size=size))
    spec = scheduler(runners).spec_for(c, {"num_ctx": 512})
    assert c.model_path is not None
    needed = estimate_memory(spec, c.gguf(), c.model_path.stat().st_size).total
    # room for a and b, and then for c only if one of them goes (the headroom rule: 80 % of free)
    s = scheduler(runners, total=2 * size + needed)
    held_a = await lease(s, a, keep_alive=3600)
    held_b = await lease(s, b, keep_alive=60)
    held_a.release()
    held_b.release()
    async with await lease(s, c):
        pass
    assert loaded_names(s) == ["a:latest", "c:latest"], "b had the shorter keep-alive"
    assert not runner_of(held_b).alive
    await s.close()


async def test_models_that_fit_stay_loaded_together(models: list[Model]) -> None:
    runners = MemoryRunners(RunnerScript(size=1 * GIB))
    s = scheduler(runners, total=64 * GIB)
    for model in models:
        async with await lease(s, model):
            pass
    assert loaded_names(s) == ["a:latest", "b:latest", "c:latest"] and len(runners.live()) == 3
    await s.close()


# ---- keep-alive, expiry, unload ----------------------------------------------------------------


async def test_keep_alive_expiry_unloads_the_idle_runner(models: list[Model]) -> None:
    s = scheduler(MemoryRunners())
    async with await lease(s, models[0], keep_alive=0.05) as held:
        runner = runner_of(held)
    assert runner.alive and s.ps()[0]["expires_at"], "loaded until its keep-alive ends"
    await asyncio.wait_for(runner.gone.wait(), 10)
    assert s.ps() == [] and runner.closed_by_request


async def test_keep_alive_zero_unloads_right_after_the_request(models: list[Model]) -> None:
    s = scheduler(MemoryRunners())
    async with await lease(s, models[0], keep_alive=0) as held:
        runner = runner_of(held)
        assert runner.alive
    await asyncio.wait_for(runner.gone.wait(), 10)
    assert s.ps() == []


async def test_an_infinite_keep_alive_never_expires(models: list[Model]) -> None:
    s = scheduler(MemoryRunners())
    async with await lease(s, models[0], keep_alive=math.inf) as held:
        runner = runner_of(held)
    await settle()
    (entry,) = s.ps()
    assert runner.alive and int(entry["expires_at"][:4]) > 2100
    await s.close()


async def test_expire_unloads_an_idle_model_at_once_and_a_busy_one_when_it_is_done(models: list[Model]) -> None:
    a, b, _ = models
    s = scheduler(MemoryRunners())
    async with await lease(s, a) as held:
        idle = runner_of(held)
    busy_lease = await lease(s, b)
    busy = runner_of(busy_lease)
    assert await s.expire(a) and await s.expire(b)
    assert not idle.alive and busy.alive
    busy_lease.release()
    await asyncio.wait_for(busy.gone.wait(), 10)
    assert s.ps() == []


async def test_unloading_a_busy_model_waits_for_its_request(models: list[Model]) -> None:
    a = models[0]
    s = scheduler(MemoryRunners())
    held = await lease(s, a)
    unload = asyncio.create_task(s.unload_model(a))
    await settle()
    assert not unload.done() and runner_of(held).alive
    held.release()
    await unload
    assert not runner_of(held).alive and s.ps() == []


async def test_close_ends_every_runner(models: list[Model]) -> None:
    runners = MemoryRunners()
    s = scheduler(runners)
    for model in models:
        async with await lease(s, model):
            pass
    await s.close()
    assert len(runners.started) == 3 and runners.live() == [] and s.ps() == []


# ---- failures -------------------------------------------------------------------------------


async def test_a_load_failure_fails_its_request_and_the_next_one_tries_again(models: list[Model]) -> None:
    a, b, _ = models
    runners = MemoryRunners(scripts={str(a.model_path): RunnerScript(load_error="unknown model architecture: 'x'")})
    s = scheduler(runners)
    with pytest.raises(RunnerError, match="failed to load model .*unknown model architecture"):
        await lease(s, a)
    assert s.ps() == [] and s.queue_depth() == 0
    async with await lease(s, b):
        pass
    with pytest.raises(RunnerError):
        await lease(s, a)
    assert runners.attempts == [str(a.model_path), str(b.model_path), str(a.model_path)]
    assert loaded_names(s) == ["b:latest"]
    await s.close()


async def test_a_load_past_the_load_timeout_fails(models: list[Model]) -> None:
    a = models[0]
    runners = MemoryRunners(RunnerScript(load_seconds=3600))
    s = scheduler(runners, load_timeout=0.01)
    with pytest.raises(RunnerError, match="timed out after 0.01s loading"):
        await lease(s, a)
    assert s.ps() == [] and runners.started == []


async def test_a_crashed_runner_fails_its_stream_and_is_replaced(models: list[Model]) -> None:
    a = models[0]
    runners = MemoryRunners()
    s = scheduler(runners)
    async with await lease(s, a) as held:
        runner = runner_of(held)
        stream = runner.completion(CompletionRequest(prompt="hi"))
        assert (await anext(stream)).content == "Hello"
        runner.pause()
        step = asyncio.create_task(anext(stream))
        await settle()
        runner.crash()
        with pytest.raises(RunnerError, match="was killed by SIGKILL unexpectedly"):
            await step
        assert s.ps() == [], "the scheduler forgets a dead runner at once"
    async with await lease(s, a) as again:
        assert again.runner is not runner and again.runner.alive
    assert len(runners.started) == 2
    await s.close()


async def test_a_request_cancelled_while_its_model_loads(models: list[Model]) -> None:
    a = models[0]
    runners = MemoryRunners()
    s = scheduler(runners)
    runners.hold()
    task = asyncio.create_task(lease(s, a))
    await until(lambda: runners.loading == 1, "the load starts")
    task.cancel()
    with pytest.raises(RequestCanceled):
        await task
    assert runners.loading == 0 and runners.started == [] and s.queue_depth() == 0
    runners.release()
    async with await lease(s, a):
        pass
    await s.close()


# ---- what /api/ps reports --------------------------------------------------------------------


async def test_a_model_split_across_rpc_workers_lists_its_devices(models: list[Model]) -> None:
    split = {"RPC0[10.0.0.2:50052]": 700 * MIB, "CPU": 300 * MIB}
    s = scheduler(MemoryRunners(RunnerScript(size=1000 * MIB, device_bytes=split)))
    async with await lease(s, models[0]):
        pass
    (entry,) = s.ps()
    assert entry["devices"] == [{"name": "RPC0[10.0.0.2:50052]", "size": 700 * MIB}, {"name": "CPU", "size": 300 * MIB}]
    assert list(entry).index("devices") == list(entry).index("context_length_reason") - 1
    await s.close()


# ---- a whole server on memory runners --------------------------------------------------------


async def test_a_server_answers_from_memory_runners(models: list[Model]) -> None:
    runners = MemoryRunners(RunnerScript(pieces=("Hello", ",", " world", "!"), size=42 * MIB))
    config = load_config(settings={})
    s = Scheduler(config, runners, memory=Machine(runners, 64 * GIB).memory, devices=lambda: [])
    app = create_app(config, services=build_services(config, scheduler=s))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        r = await client.post("/api/generate", json={"model": "a", "prompt": "hi", "stream": False})
        body = await r.get_json()
        assert r.status_code == 200, body
        assert (body["response"], body["done_reason"], body["eval_count"]) == ("Hello, world!", "stop", 4)
        r = await client.get("/api/ps")
        assert [(m["name"], m["size"]) for m in (await r.get_json())["models"]] == [("a:latest", 42 * MIB)]
    assert runners.live() == [], "the server's shutdown ended its runners"
