"""Runners in memory: the `Runner` protocol without a process or llama.cpp, for tests of what sits above it.

As httpx ships `MockTransport` beside its real transports, pollama ships this
beside `RunnerClient`, so that the scheduler (and anything holding a lease) is
tested with runners whose every figure is set by the test: how long a load
takes or whether it fails, how much memory a runner says it holds, what a
completion streams; and a runner can be made to die, or to pause mid-stream,
at the moment a test chooses. A test reads back what each runner was asked.

`MemoryRunners` is a scheduler's `StartRunner`; each load makes a
`MemoryRunner` by the `RunnerScript` of its model file. Nothing here imitates a
model: a completion streams its script's pieces, a token is a code point, an
embedding is a sum of code points. The failures speak as `RunnerClient`'s do
(`RunnerError`, the same messages), since code above tells them apart by type.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from server.errors import RunnerError
from server.runner.interface import CompletionChunk, EmbedResult, RerankResult, Runner
from server.runner.messages import CompletionRequest, RunnerInfo

MIB = 1 << 20
#: Every Unicode code point is a token.
VOCABULARY = 0x110000


class LoadSpec(Protocol):
    """What a memory runner reads of the spec it is loaded with (the scheduler's `RunnerSpec` has it all)."""

    @property
    def model_path(self) -> str: ...
    @property
    def num_ctx(self) -> int: ...
    @property
    def num_parallel(self) -> int: ...
    @property
    def num_batch(self) -> int: ...
    @property
    def embedding(self) -> bool: ...


@dataclass(frozen=True)
class RunnerScript:
    """How a model's memory runners behave, from loading to answering."""

    #: What a completion streams, one token each, until `num_predict` or a stop string.
    pieces: tuple[str, ...] = ("Hello", ",", " world", "!")
    #: A load waits this long (and fails as a timeout past the scheduler's load timeout).
    load_seconds: float = 0.0
    #: A load fails with this message (as llama.cpp's refusal would), after `load_seconds`.
    load_error: str | None = None
    #: The memory the runner says it holds (`RunnerInfo.size`), and the part of it in VRAM.
    size: int = 64 * MIB
    size_vram: int = 0
    #: Bytes per device (`RunnerInfo.device_bytes`): `RPC0[host:port]` names a worker.
    device_bytes: Mapping[str, int] = field(default_factory=dict)
    #: What the runner reports it spent per generated token and on the prompt (ns): figures, not measurements.
    token_ns: int = 1_000_000
    prompt_ns: int = 5_000_000
    embedding_length: int = 8


class MemoryRunner:
    """One loaded model, in memory. `crash()` and `pause()` are for tests; the rest is the `Runner` protocol."""

    def __init__(self, spec: LoadSpec, script: RunnerScript, *, load_ns: int = 0) -> None:
        self.spec = spec
        self.script = script
        self._info = RunnerInfo(
            model_path=spec.model_path,
            architecture="memory",
            description="a runner in memory (server.runner.memory)",
            n_ctx=spec.num_ctx,
            n_ctx_total=spec.num_ctx * spec.num_parallel,
            n_ctx_train=spec.num_ctx,
            num_parallel=spec.num_parallel,
            n_batch=spec.num_batch,
            n_threads=1,
            n_vocab=VOCABULARY,
            n_embd=script.embedding_length,
            n_layer=0,
            bos=None,
            eos=None,
            add_bos=False,
            pooling="mean" if spec.embedding else "none",
            embedding_only=spec.embedding,
            can_shift=True,
            vision=False,
            weights_bytes=script.size,
            kv_bytes=0,
            compute_bytes=0,
            size=script.size,
            size_vram=script.size_vram,
            load_duration=load_ns,
            pid=0,  # no process
            device_bytes=dict(script.device_bytes),
        )
        self._alive = True
        self._death: RunnerError | None = None
        self._exit_callbacks: list[Callable[[], None]] = []
        self._flowing = asyncio.Event()
        self._flowing.set()
        #: Set once the runner is gone, closed or crashed.
        self.gone = asyncio.Event()
        #: Every completion asked of it, in order.
        self.requests: list[CompletionRequest] = []
        #: Completions streaming now, and the most there ever were at once.
        self.active = 0
        self.most_active = 0
        self.closed_by_request = False

    # ---- the Runner protocol --------------------------------------------------------

    @property
    def info(self) -> RunnerInfo:
        return self._info

    @property
    def alive(self) -> bool:
        return self._alive

    def on_exit(self, callback: Callable[[], None]) -> None:
        if not self._alive:
            callback()
        else:
            self._exit_callbacks.append(callback)

    async def close(self) -> None:
        if self._alive:
            self.closed_by_request = True
            self._end(RunnerError(f"the runner for {self.spec.model_path} was stopped"))

    async def completion(self, req: CompletionRequest) -> AsyncGenerator[CompletionChunk, None]:
        self._check()
        self.requests.append(req)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            prompt = len(req.prompt)  # code points or token ids: a token each
            limit = len(self.script.pieces) if req.num_predict < 0 else req.num_predict
            produced = 0
            reason, stop = "stop", None
            for piece in self.script.pieces:
                if produced >= limit:
                    reason = "length"
                    break
                await self._flowing.wait()
                self._check()
                if piece in req.stop:
                    stop = piece
                    break
                produced += 1
                yield CompletionChunk(content=piece, eval_count=produced)
            yield CompletionChunk(
                content="",
                done=True,
                done_reason=reason,
                prompt_eval_count=prompt,
                prompt_eval_duration=self.script.prompt_ns,
                prompt_count=prompt,
                eval_count=produced,
                eval_duration=produced * self.script.token_ns,
                stop_sequence=stop,
            )
        finally:
            self.active -= 1

    async def embed(
        self, inputs: list[str], *, truncate: bool = True, normalize: bool = True, dimensions: int | None = None
    ) -> EmbedResult:
        self._check()
        n = self.script.embedding_length
        vectors = []
        for text in inputs:
            vector = [float(sum(ord(c) for c in text[i::n])) for i in range(n)]
            if normalize:
                norm = math.sqrt(sum(x * x for x in vector)) or 1.0
                vector = [x / norm for x in vector]
            vectors.append(vector[:dimensions] if dimensions else vector)
        return EmbedResult(vectors, sum(len(text) for text in inputs))

    async def rerank(self, query: str, documents: list[str], *, truncate: bool = True) -> RerankResult:
        """A document scores the share of the query's words it contains."""
        self._check()
        words = set(query.lower().split())
        scores = [len(words & set(doc.lower().split())) / (len(words) or 1) for doc in documents]
        return RerankResult(scores, len(query) * len(documents) + sum(len(doc) for doc in documents))

    async def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        self._check()
        return [ord(c) for c in text]

    async def token_pieces(
        self, text: str, *, add_special: bool = True, parse_special: bool = True
    ) -> list[tuple[int, str]]:
        self._check()
        return [(ord(c), c) for c in text]

    async def detokenize(self, tokens: list[int] | tuple[int, ...]) -> str:
        self._check()
        return "".join(chr(t) for t in tokens)

    async def health(self, timeout: float = 10.0) -> bool:
        return self._alive

    # ---- for tests --------------------------------------------------------------------

    def crash(self, how: str = "was killed by SIGKILL") -> None:
        """The runner dies as a process would: requests in flight fail, `on_exit` callbacks run."""
        if self._alive:
            self._end(RunnerError(f"the runner for {self.spec.model_path} {how} unexpectedly"))

    def pause(self) -> None:
        """Completions stop before their next piece until `resume()`."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    # ---- inside -----------------------------------------------------------------------

    def _check(self) -> None:
        if self._death is not None:
            raise RunnerError(self._death.message)

    def _end(self, death: RunnerError) -> None:
        self._alive = False
        self._death = death
        self._flowing.set()  # wake paused completions, which then fail
        self.gone.set()
        callbacks, self._exit_callbacks = self._exit_callbacks, []
        for callback in callbacks:
            callback()


class MemoryRunners:
    """A scheduler's `StartRunner` that makes memory runners, each by the script of its model file.

    `hold()` keeps every load waiting until `release()`, so a test decides when a
    load ends without depending on how long anything takes.
    """

    def __init__(
        self, script: RunnerScript | None = None, *, scripts: Mapping[str, RunnerScript] | None = None
    ) -> None:
        self.default = script or RunnerScript()
        self.scripts = dict(scripts or {})
        #: Every runner started, in order (dead ones too).
        self.started: list[MemoryRunner] = []
        #: The model file of every load asked for, in order (failed ones too).
        self.attempts: list[str] = []
        #: Loads under way now.
        self.loading = 0
        self._gate = asyncio.Event()
        self._gate.set()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def live(self) -> list[MemoryRunner]:
        return [runner for runner in self.started if runner.alive]

    def used(self) -> int:
        """The memory the live runners say they hold: what a test's machine has less of."""
        return sum(runner.info.size for runner in self.live())

    async def __call__(self, spec: LoadSpec, load_timeout: float | None) -> MemoryRunner:
        script = self.scripts.get(spec.model_path, self.default)
        self.attempts.append(spec.model_path)
        self.loading += 1
        try:
            await asyncio.wait_for(self._load(script), load_timeout)
        except TimeoutError:
            raise RunnerError(f"timed out after {load_timeout:g}s loading {spec.model_path}") from None
        finally:
            self.loading -= 1
        if script.load_error is not None:
            raise RunnerError(f"failed to load model {spec.model_path}: {script.load_error}")
        runner = MemoryRunner(spec, script, load_ns=int(script.load_seconds * 1e9))
        self.started.append(runner)
        return runner

    async def _load(self, script: RunnerScript) -> None:
        await self._gate.wait()
        if script.load_seconds:
            await asyncio.sleep(script.load_seconds)


if TYPE_CHECKING:  # the type checker proves that a memory runner is a `Runner`
    _: type[Runner] = MemoryRunner
