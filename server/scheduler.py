"""Which runners are loaded, for how long, and who waits: Ollama's scheduler (`server/sched.go` `Scheduler.processPending`).

The decisions (reload or reuse, whom to evict, will it fit) are plain
functions over plain data, tested without processes. `Scheduler` is the thin
asyncio layer around them: it loads one model at a time, hands out leases,
runs keep-alive timers, and forgets a runner the moment its process dies.
It knows a runner only as the `server.runner.interface.Runner` protocol, made
by the `StartRunner` it is given: the server's starts processes
(`server.inference.runner_calls.start_runner`), the tests' may start runners
in memory (`server.runner.memory.MemoryRunners`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from server.config import Config
from server.context_length import ContextChoice, explicit_context, fitting_context
from server.errors import PollamaError, RequestCanceled, ServerBusy
from server.gpu import Device, SystemMemory, gpu_devices, system_memory
from server.options import RUNNER_OPTIONS
from server.runner.interface import Runner
from server.runner.limits import GGML_MAX_N_THREADS, INT32_MAX
from server.store.gguf_info import GGUFInfo
from server.store.store import Model
from server.timefmt import far_future, rfc3339

log = logging.getLogger(__name__)

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
DEFAULT_CONTEXT = 4096
MIN_CONTEXT = 4
VISION_MIN_CONTEXT = 2048


# ---- the decision core -------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerSpec:
    """Everything that decides how a runner process is loaded; a change means a reload."""

    model_path: str
    adapters: tuple[str, ...] = ()
    projectors: tuple[str, ...] = ()
    draft: str | None = None  # the draft model (Modelfile DRAFT) the runner loads beside it
    num_ctx: int = DEFAULT_CONTEXT
    num_parallel: int = 1
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int = 0
    use_mmap: bool | None = None
    num_thread: int = 0
    embedding: bool = False
    flash_attention: bool | None = None
    kv_cache_type: str = ""
    aligned_cache: bool = False  # POLLAMA_ALIGNED_CACHE: cache-independent greedy output
    repack: bool = True  # POLLAMA_NO_REPACK unset: llama.cpp repacks CPU weights
    #: Where num_ctx came from ("request", "model", "env", "memory") and why, for /api/ps;
    #: not part of what a reload compares.
    context_source: str = field(default="", compare=False)
    context_reason: str = field(default="", compare=False)

    @property
    def key(self) -> SpecKey:
        return (self.model_path, self.adapters, self.projectors, self.draft)


#: The files a runner loads (weights, adapters, projectors, draft): one runner per key.
SpecKey = tuple[str, tuple[str, ...], tuple[str, ...], str | None]


#: What a runner is loaded with besides the request's runner options (`RUNNER_OPTIONS`):
#: a change in either reloads it.
LOADED_WITH = ("num_parallel", "embedding")


def needs_reload(loaded: RunnerSpec, wanted: RunnerSpec) -> bool:
    """Ollama reloads when runner options differ; `num_gpu=-1` (auto) matches anything."""
    if loaded.key != wanted.key:
        return True
    for name in (*RUNNER_OPTIONS, *LOADED_WITH):
        if name != "num_gpu" and getattr(loaded, name) != getattr(wanted, name):
            return True
    return wanted.num_gpu != -1 and wanted.num_gpu != loaded.num_gpu


def resolve_num_ctx(requested: int | None, config_default: int, trained: int | None, *, vision: bool = False) -> int:
    """Request > model param > OLLAMA_CONTEXT_LENGTH > 4096; at least 4, and 2048 for a model
    with a projector (Ollama's `Scheduler.GetRunner`, server/sched.go: an image alone takes
    hundreds of positions); at most the trained context (`NewLlamaServer`, llm/server.go)."""
    ctx = requested or config_default or DEFAULT_CONTEXT
    if vision:
        ctx = max(ctx, VISION_MIN_CONTEXT)
    if trained:
        ctx = min(ctx, int(trained))
    return max(ctx, MIN_CONTEXT)


@dataclass(frozen=True)
class LoadChoice:
    """The load options of a request after Ollama's clamps; what `RunnerSpec` is made of."""

    num_ctx: int
    num_batch: int
    num_gpu: int
    main_gpu: int
    num_thread: int


def clamp_load_options(
    options: dict[str, Any], config_default: int, trained: int | None, *, vision: bool = False
) -> LoadChoice:
    """Each load option within what the runner can be asked for, as Ollama clamps them:
    num_ctx by `resolve_num_ctx`; num_batch at most num_ctx (`NewLlamaServer`, llm/server.go)
    and at least 1 (`NewOllamaEngineServer`, same file); a negative num_gpu is "as many
    layers as fit" (-1) and main_gpu is used only when positive (Ollama passes `--main-gpu`
    only then); num_thread 0 or less is "pick for me" (0). The runner still enforces
    llama.cpp's own limits (`server/runner/limits.py`) on whatever it is sent."""
    num_ctx = resolve_num_ctx(options.get("num_ctx"), config_default, trained, vision=vision)
    num_batch = max(1, min(int(options.get("num_batch", 512)), num_ctx))
    num_gpu = int(options.get("num_gpu", -1))
    return LoadChoice(
        num_ctx=num_ctx,
        num_batch=num_batch,
        num_gpu=-1 if num_gpu < 0 else min(num_gpu, INT32_MAX),
        main_gpu=min(max(int(options.get("main_gpu", 0)), 0), INT32_MAX),
        num_thread=min(max(int(options.get("num_thread", 0)), 0), GGML_MAX_N_THREADS),
    )


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute


def estimate_memory(spec: RunnerSpec, info: GGUFInfo | None, file_sizes: int) -> MemoryEstimate:
    """Weights + f16 KV cache for num_ctx × num_parallel + a compute buffer."""
    ctx = spec.num_ctx * spec.num_parallel
    bytes_per = {"q8_0": 1.0625, "q4_0": 0.5625}.get(spec.kv_cache_type, 2.0)
    kv = info.kv_cache_bytes(ctx, bytes_per) if info else 0
    n_vocab = 0
    embd = 0
    if info:
        tokens = info.get("tokenizer.ggml.tokens")
        n_vocab = (
            len(tokens) if isinstance(tokens, list) and tokens else int(info.arch_value("vocab_size", 32000) or 32000)
        )
        embd = int(info.embedding_length or 0)
    # logits for one batch + activations; llama.cpp's graph buffers are of this order.
    compute = spec.num_batch * (n_vocab + 4 * embd) * 4 + 16 * 1024 * 1024
    return MemoryEstimate(file_sizes, kv, compute)


def fits(estimate: MemoryEstimate, free: int, *, others_loaded: bool) -> bool:
    """The first model always gets a try; with others resident keep 20 % headroom."""
    return not others_loaded or estimate.total <= free * 0.8


@dataclass
class RunnerState:
    """What the decisions need to know about a loaded runner."""

    spec: RunnerSpec
    keep_alive: float
    refcount: int = 0

    @property
    def idle(self) -> bool:
        return self.refcount == 0


def choose_eviction(runners: list[RunnerState]) -> RunnerState | None:
    """Shortest keep-alive first (then path); an idle one if any, else the first to wait for."""
    if not runners:
        return None
    ordered = sorted(runners, key=lambda r: (r.keep_alive, r.spec.model_path))
    for r in ordered:
        if r.idle:
            return r
    return ordered[0]


def free_memory_for(
    spec: RunnerSpec,
    devices: list[Device],
    fresh: Callable[[], list[Device]],
    memory: Callable[[], SystemMemory],
    gpu_overhead: int,
) -> int:
    """Memory a model would load into: the GPUs' free VRAM (as `fresh` reads it now, less the
    configured overhead and the new runner's own context on each GPU), or system memory
    without GPUs or for a CPU-only model."""
    if not devices or spec.num_gpu == 0:
        return memory().free
    now = {d.id: d for d in fresh()}
    return sum(now.get(d.id, d).free_memory - d.context_reserve - gpu_overhead for d in devices)


def max_loaded(config: Config, devices: list[Device]) -> int:
    if config.max_loaded_models > 0:
        return config.max_loaded_models
    if config.rpc_workers:  # a worker serves one runner at a time (server/gpu.py `probe_backends`)
        return 1
    return 3 * max(len(devices), 1)


# ---- the asyncio layer ----------------------------------------------------------------------


#: Starts a runner for a spec and returns it loaded; the float is the load timeout (None: no limit).
StartRunner = Callable[[RunnerSpec, float | None], Awaitable[Runner]]


class DeviceShare(TypedDict):
    name: str  # as llama.cpp named the device: `RPC0[host:port]`, `CPU`
    size: int


class WorkerSplit(TypedDict, total=False):
    devices: list[DeviceShare]


class PsEntry(WorkerSplit):
    """One loaded model as `/api/ps` lists it (Ollama's `api.ProcessModelResponse`), in its key order."""

    name: str
    model: str
    size: int
    digest: str
    details: dict[str, Any]
    expires_at: str
    size_vram: int
    context_length: int
    context_length_reason: str


@dataclass
class Loaded:
    state: RunnerState
    model: Model
    client: Runner
    estimate: MemoryEstimate
    size: int
    size_vram: int
    semaphore: asyncio.Semaphore
    idle_event: asyncio.Event = field(default_factory=asyncio.Event)
    expires_at: float | None = None
    timer: asyncio.TimerHandle | None = None
    closing: bool = False

    @property
    def spec(self) -> RunnerSpec:
        return self.state.spec


class Lease:
    """A request's hold on a runner: released on exit, which may start the keep-alive timer."""

    def __init__(self, scheduler: Scheduler, loaded: Loaded, wait_seconds: float) -> None:
        self._scheduler = scheduler
        self.loaded = loaded
        self.load_duration = wait_seconds
        self._released = False

    @property
    def runner(self) -> Runner:
        return self.loaded.client

    @property
    def spec(self) -> RunnerSpec:
        return self.loaded.spec

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._scheduler._release(self.loaded)


class Scheduler:
    def __init__(
        self,
        config: Config,
        start_runner: StartRunner,
        *,
        memory: Callable[[], SystemMemory] = system_memory,
        devices: Callable[[], list[Device]] = gpu_devices,
    ) -> None:
        self.config = config
        self._start_runner = start_runner
        self._memory = memory
        self._devices = devices
        self._loaded: dict[SpecKey, Loaded] = {}
        self._load_lock = asyncio.Lock()
        self._pending = 0
        self._waiting_for_slot = 0
        self._device_cache: list[Device] | None = None

    # -- public -------------------------------------------------------------------------------

    def spec_for(self, model: Model, options: dict[str, Any], *, embedding: bool = False) -> RunnerSpec:
        path = model.model_path
        if path is None:
            raise PollamaError(f"model '{model.name.display}' has no weights layer")
        adapters = tuple(str(p) for p in model.adapter_paths)
        projectors = tuple(str(p) for p in model.projector_paths)
        return self.spec_from(
            model.gguf(),
            str(path),
            options,
            adapters=adapters,
            projectors=projectors,
            draft=str(model.draft_path) if model.draft_path else None,
            embedding=embedding,
            model_params=model.parameters,
            file_sizes=_file_sizes((str(path), *projectors, *adapters)),
        )

    def spec_from(
        self,
        info: GGUFInfo | None,
        model_path: str,
        options: dict[str, Any],
        *,
        adapters: tuple[str, ...] = (),
        projectors: tuple[str, ...] = (),
        draft: str | None = None,
        embedding: bool = False,
        model_params: dict[str, Any] | None = None,
        file_sizes: int = 0,
    ) -> RunnerSpec:
        """The runner a request with `options` would load for weights described by `info`.

        Apart from `spec_for` so that a model not pulled yet (its GGUF header read over
        the network, `/api/pollama/estimate`) gets the very spec the pulled one will.
        `model_params` (the model's own parameters) tell a Modelfile's num_ctx from the
        request's; `file_sizes` (weights, projectors, adapters) feed the estimate that picks
        a context when nothing sets one (`server/context_length.py`)."""
        trained = info.context_length if info else None
        is_embedding = embedding or (info is not None and info.is_embedding)
        spec = RunnerSpec(
            model_path=model_path,
            adapters=adapters,
            projectors=projectors,
            draft=None if embedding or (info is not None and info.is_embedding) else draft,
            num_parallel=1 if is_embedding else self.config.num_parallel,
            use_mmap=options.get("use_mmap"),
            embedding=is_embedding,
            flash_attention=self.config.flash_attention,
            kv_cache_type=self.config.kv_cache_type,
            aligned_cache=self.config.aligned_cache,
            repack=not self.config.no_repack,
        )
        context = explicit_context(options, model_params, self.config.context_length)
        if context is None:
            context = self._context_from_memory(spec, info, options, file_sizes)
        sized = {**options, "num_ctx": context.num_ctx}
        choice = clamp_load_options(sized, self.config.context_length, trained, vision=bool(projectors))
        reason = context.reason
        if choice.num_ctx < context.num_ctx:
            reason += f"; capped at the model's trained context ({choice.num_ctx})"
        elif choice.num_ctx > context.num_ctx:
            reason += f"; raised to {choice.num_ctx}, the least a model with a projector gets"
        return dataclasses.replace(
            spec,
            num_ctx=choice.num_ctx,
            num_batch=choice.num_batch,
            num_gpu=choice.num_gpu,
            main_gpu=choice.main_gpu,
            num_thread=choice.num_thread,
            context_source=context.source,
            context_reason=reason,
        )

    def _context_from_memory(
        self, spec: RunnerSpec, info: GGUFInfo | None, options: dict[str, Any], file_sizes: int
    ) -> ContextChoice:
        """The longest context whose estimate fits the memory this model would load into;
        the one a runner of the same weights already chose while it stays loaded (its own
        memory is no longer free, and choosing again would reload it with less)."""
        loaded = self._loaded.get(spec.key)
        if loaded is not None and not loaded.closing and loaded.spec.context_source == "memory":
            return ContextChoice(loaded.spec.num_ctx, "memory", loaded.spec.context_reason)
        trained = info.context_length if info else None
        probe = dataclasses.replace(spec, num_gpu=int(options.get("num_gpu", -1)))
        free = self._free_memory(probe)
        num_batch = max(1, int(options.get("num_batch", 512)))

        def cost(num_ctx: int) -> int:
            sized = dataclasses.replace(probe, num_ctx=num_ctx, num_batch=min(num_batch, num_ctx))
            return estimate_memory(sized, info, file_sizes).total

        return fitting_context(trained, free, cost)

    async def acquire(self, model: Model, spec: RunnerSpec, keep_alive: float | None) -> Lease:
        """Get a runner for `spec`, loading (and evicting) as needed; waits its turn."""
        started = time.monotonic()
        while True:
            loaded = self._usable(spec)
            if loaded is not None:
                return await self._lease(loaded, keep_alive, started)
            if self._pending >= self.config.max_queue:
                raise ServerBusy(BUSY_MESSAGE)
            self._pending += 1
            try:
                async with self._load_lock:
                    if self._usable(spec) is not None:
                        continue
                    await self._load(model, spec, keep_alive)
            except asyncio.CancelledError:
                raise RequestCanceled("request canceled") from None
            finally:
                self._pending -= 1

    async def expire(self, model: Model) -> bool:
        """Unload every runner of `model` as soon as it is idle (keep_alive 0 / stop)."""
        found = False
        for loaded in list(self._loaded.values()):
            if loaded.model.digest == model.digest or loaded.spec.model_path == str(model.model_path):
                found = True
                loaded.state.keep_alive = 0
                if loaded.state.idle:
                    await self._unload(loaded)
        return found

    async def unload_model(self, model: Model) -> None:
        """Before a delete: wait for the model's runners to finish, then end them."""
        for loaded in list(self._loaded.values()):
            if loaded.spec.model_path == str(model.model_path):
                loaded.state.keep_alive = 0
                if not loaded.state.idle:
                    await loaded.idle_event.wait()
                await self._unload(loaded)

    def ps(self) -> list[PsEntry]:
        entries: list[PsEntry] = []
        for loaded in self._loaded.values():
            if loaded.closing:
                continue
            if loaded.expires_at is None:
                if math.isinf(loaded.state.keep_alive):
                    expires = rfc3339(far_future())
                else:
                    expires = rfc3339(time.time() + loaded.state.keep_alive)
            else:
                expires = rfc3339(loaded.expires_at)
            name = loaded.model.name.display
            entries.append(
                {
                    "name": name,
                    "model": name,
                    "size": loaded.size,
                    "digest": loaded.model.digest,
                    "details": loaded.model.details(),
                    "expires_at": expires,
                    "size_vram": loaded.size_vram,
                    "context_length": loaded.spec.num_ctx,
                    **_worker_split(loaded.client),
                    "context_length_reason": loaded.spec.context_reason,
                }
            )
        entries.sort(key=lambda e: e["expires_at"], reverse=True)
        return entries

    def queue_depth(self) -> int:
        """Requests waiting: for their model to load (what `OLLAMA_MAX_QUEUE` bounds) and for a
        free slot of a loaded runner (its `OLLAMA_NUM_PARALLEL` all busy). Read by `/metrics`."""
        return self._pending + self._waiting_for_slot

    async def close(self) -> None:
        for loaded in list(self._loaded.values()):
            await self._unload(loaded)

    # -- internals ------------------------------------------------------------------------------

    def _usable(self, spec: RunnerSpec) -> Loaded | None:
        loaded = self._loaded.get(spec.key)
        if loaded is None or loaded.closing or not loaded.client.alive:
            return None
        return None if needs_reload(loaded.spec, spec) else loaded

    async def _lease(self, loaded: Loaded, keep_alive: float | None, started: float) -> Lease:
        loaded.state.refcount += 1
        loaded.idle_event.clear()
        if loaded.timer is not None:
            loaded.timer.cancel()
            loaded.timer = None
        loaded.expires_at = None
        if keep_alive is not None:
            loaded.state.keep_alive = keep_alive
        self._waiting_for_slot += 1
        try:
            await loaded.semaphore.acquire()
        except asyncio.CancelledError:
            self._release(loaded, semaphore_held=False)
            raise RequestCanceled("request canceled") from None
        finally:
            self._waiting_for_slot -= 1
        return Lease(self, loaded, time.monotonic() - started)

    def _release(self, loaded: Loaded, *, semaphore_held: bool = True) -> None:
        if semaphore_held:
            loaded.semaphore.release()
        loaded.state.refcount -= 1
        if loaded.state.refcount > 0:
            return
        loaded.idle_event.set()
        keep = loaded.state.keep_alive
        if keep <= 0:
            asyncio.get_running_loop().create_task(self._unload(loaded))
        elif math.isinf(keep):
            loaded.expires_at = None
        else:
            loaded.expires_at = time.time() + keep
            loaded.timer = asyncio.get_running_loop().call_later(keep, self._expire_if_idle, loaded)

    def _expire_if_idle(self, loaded: Loaded) -> None:
        if loaded.state.idle:
            asyncio.get_running_loop().create_task(self._unload(loaded))

    async def _unload(self, loaded: Loaded) -> None:
        if loaded.closing:
            return
        loaded.closing = True
        if loaded.timer is not None:
            loaded.timer.cancel()
        if self._loaded.get(loaded.spec.key) is loaded:
            del self._loaded[loaded.spec.key]
        log.info("unloading %s", loaded.model.name.display)
        try:
            await loaded.client.close()
        except Exception:
            log.exception("error closing runner for %s", loaded.model.name.display)

    def _forget(self, loaded: Loaded) -> None:
        """A runner process died: drop it so the next request loads a fresh one."""
        if self._loaded.get(loaded.spec.key) is loaded:
            del self._loaded[loaded.spec.key]
            log.warning("runner for %s exited", loaded.model.name.display)
        loaded.closing = True

    def devices(self) -> list[Device]:
        if self._device_cache is None:
            self._device_cache = self._devices()
        return self._device_cache

    async def _load(self, model: Model, spec: RunnerSpec, keep_alive: float | None) -> None:
        existing = self._loaded.get(spec.key)
        if existing is not None:  # same weights, other options: reload when it is idle
            if not existing.state.idle:
                await existing.idle_event.wait()
            await self._unload(existing)
        limit = max_loaded(self.config, self.devices())
        while len(self._loaded) >= limit:
            await self._evict_one()
        info = model.gguf()
        sizes = _file_sizes((spec.model_path, *spec.projectors, *spec.adapters))
        estimate = estimate_memory(spec, info, sizes)
        while self._loaded:
            free = self._free_memory(spec)
            if fits(estimate, free, others_loaded=True):
                break
            log.info("evicting to fit %s (needs %d bytes, %d free)", model.name.display, estimate.total, free)
            await self._evict_one()
        timeout = None if math.isinf(self.config.load_timeout) else self.config.load_timeout
        log.info(
            "loading %s (ctx %d × %d: %s)", model.name.display, spec.num_ctx, spec.num_parallel, spec.context_reason
        )
        client = await self._start_runner(spec, timeout)
        size, size_vram = _reported_sizes(client, estimate)
        loaded = Loaded(
            state=RunnerState(spec, self.config.keep_alive if keep_alive is None else keep_alive),
            model=model,
            client=client,
            estimate=estimate,
            size=size,
            size_vram=size_vram,
            semaphore=asyncio.Semaphore(spec.num_parallel),
        )
        loaded.idle_event.set()
        client.on_exit(lambda: self._forget(loaded))
        self._loaded[spec.key] = loaded

    def _free_memory(self, spec: RunnerSpec) -> int:
        return free_memory_for(spec, self.devices(), self._devices, self._memory, self.config.gpu_overhead)

    async def _evict_one(self) -> None:
        victim_state = choose_eviction([loaded.state for loaded in self._loaded.values()])
        if victim_state is None:
            return
        victim = next(loaded for loaded in self._loaded.values() if loaded.state is victim_state)
        victim.state.keep_alive = 0
        if not victim.state.idle:
            await victim.idle_event.wait()
        await self._unload(victim)


def _worker_split(client: Runner) -> WorkerSplit:
    """`devices` for an /api/ps entry whose model is split across RPC workers: what each
    device holds, by the name llama.cpp gave it (`RPC0[host:port]`, `CPU`). Absent otherwise,
    so /api/ps stays Ollama's for everyone not using workers."""
    placed = client.info.device_bytes
    if not any(name.startswith("RPC") for name in placed):
        return {}
    return {"devices": [{"name": name, "size": size} for name, size in placed.items()]}


def _reported_sizes(client: Runner, estimate: MemoryEstimate) -> tuple[int, int]:
    """Sizes as the runner measured them after loading; the estimate where it measured none."""
    return client.info.size or estimate.total, client.info.size_vram


def _file_sizes(paths: tuple[str, ...]) -> int:
    """Bytes of a model's files: the weights part of its estimate. A file gone missing counts
    nothing here; the runner then says which file it cannot load."""
    total = 0
    for p in paths:
        try:
            total += Path(p).stat().st_size
        except OSError:
            pass
    return total
