"""The scheduler's decisions, as plain functions over plain data (no processes)."""

import math

import pytest

from server.config import load_config
from server.gpu import Device, SystemMemory
from server.scheduler import (
    MemoryEstimate,
    RunnerSpec,
    RunnerState,
    choose_eviction,
    fits,
    free_memory_for,
    max_loaded,
    needs_reload,
    resolve_num_ctx,
)


def spec(**kw: object) -> RunnerSpec:
    return RunnerSpec(model_path=str(kw.pop("path", "/m/a")), **kw)  # type: ignore[arg-type]


def test_same_options_reuse() -> None:
    assert not needs_reload(spec(num_ctx=2048), spec(num_ctx=2048))


@pytest.mark.parametrize(
    "changed",
    [
        {"num_ctx": 1024},
        {"num_batch": 256},
        {"main_gpu": 1},
        {"use_mmap": False},
        {"num_thread": 3},
        {"num_parallel": 4},
        {"path": "/m/b"},
    ],
)
def test_runner_option_change_reloads(changed: dict) -> None:
    assert needs_reload(spec(num_ctx=2048), spec(**{"num_ctx": 2048, **changed}))


def test_auto_num_gpu_matches_anything() -> None:
    assert not needs_reload(spec(num_gpu=20), spec(num_gpu=-1))
    assert needs_reload(spec(num_gpu=20), spec(num_gpu=0))


def test_num_ctx_priority_and_clamp() -> None:
    assert resolve_num_ctx(8192, 2048, 4096) == 4096
    assert resolve_num_ctx(None, 2048, 4096) == 2048
    assert resolve_num_ctx(None, 0, None) == 4096
    assert resolve_num_ctx(1, 0, None) == 4


def test_eviction_prefers_short_keep_alive_and_idle() -> None:
    a = RunnerState(spec(path="/a"), keep_alive=300, refcount=0)
    b = RunnerState(spec(path="/b"), keep_alive=60, refcount=1)
    c = RunnerState(spec(path="/c"), keep_alive=math.inf, refcount=0)
    assert choose_eviction([a, b, c]) is a  # b is shorter but busy
    b.refcount = 0
    assert choose_eviction([a, b, c]) is b
    a.refcount = b.refcount = c.refcount = 2
    assert choose_eviction([a, b, c]) is b  # all busy: the first to wait for
    assert choose_eviction([]) is None


def test_fit_rules() -> None:
    est = MemoryEstimate(weights=700, kv_cache=100, compute=50)
    assert est.total == 850
    assert fits(est, 100, others_loaded=False), "the first model always gets a try"
    assert not fits(est, 1000, others_loaded=True)
    assert fits(est, 1100, others_loaded=True)


def test_free_memory_is_vram_unless_the_model_stays_on_the_cpu() -> None:
    ram = SystemMemory(total=64 << 30, free=40 << 30)
    gpus = [Device("0", "g", "cuda", 24 << 30, 20 << 30), Device("1", "g", "cuda", 24 << 30, 10 << 30)]

    def fresh() -> list[Device]:  # GPU 0 filled since start-up; GPU 1 not re-read
        return [Device("0", "g", "cuda", 24 << 30, 2 << 30)]

    def unread() -> list[Device]:
        raise AssertionError("a CPU-only model or machine needs no fresh GPU reading")

    on_gpu, on_cpu = spec(), spec(num_gpu=0)
    contexts = 2 * (457 << 20)  # each GPU keeps room for the new runner's CUDA context, as Ollama
    assert free_memory_for(on_gpu, gpus, fresh, lambda: ram, 0) == (2 << 30) + (10 << 30) - contexts
    assert free_memory_for(on_gpu, gpus, fresh, lambda: ram, 1 << 30) == (2 << 30) + (10 << 30) - (2 << 30) - contexts
    assert free_memory_for(on_cpu, gpus, unread, lambda: ram, 1 << 30) == 40 << 30
    assert free_memory_for(on_gpu, [], unread, lambda: ram, 0) == 40 << 30


def test_max_loaded_models() -> None:
    config = load_config({}, {})
    assert max_loaded(config, []) == 3
    gpus = [Device(str(i), "g", "cuda", 1, 1) for i in range(2)]
    assert max_loaded(config, gpus) == 6
    assert max_loaded(load_config({"OLLAMA_MAX_LOADED_MODELS": "1"}, {}), gpus) == 1
