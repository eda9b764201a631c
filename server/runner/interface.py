"""What the server needs of a runner: the `Runner` protocol, and the values a runner answers with.

`server.runner.client.RunnerClient` is the real runner (a process running
llama.cpp, spoken to over a pipe); `server.runner.memory.MemoryRunner` is one in
memory, shipped beside it as httpx ships `MockTransport` beside its transports,
so that what sits above a runner (the scheduler first) is tested without
processes or models. The scheduler and whoever holds a lease see only this
protocol, never the process client.

Requests and what a runner measured on loading are the wire's own types
(`server.runner.messages`: `CompletionRequest`, `RunnerInfo`); the answers below
are what the client turns the wire's replies into.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from server.runner.messages import CompletionRequest, RunnerInfo

__all__ = ["CompletionChunk", "CompletionRequest", "EmbedResult", "RerankResult", "Runner", "RunnerInfo"]


@dataclass(frozen=True)
class CompletionChunk:
    """A piece of a completion; the last one (`done`) carries the counts and durations (ns)."""

    content: str
    logprobs: list[dict[str, Any]] | None = None  # Ollama's logprob objects, as the runner built them
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    context: list[int] | None = None
    prompt_count: int = 0  # the whole prompt's positions (images included), cached or not
    stop_sequence: str | None = None
    draft_count: int = 0  # speculative decoding: tokens drafted, and of those accepted
    draft_accepted_count: int = 0
    truncated_tokens: int = 0  # prompt tokens the runner cut to fit the context


@dataclass(frozen=True)
class EmbedResult:
    vectors: list[list[float]]
    prompt_eval_count: int


@dataclass(frozen=True)
class RerankResult:
    scores: list[float]  # one per document, in the request's order
    prompt_eval_count: int


class Runner(Protocol):
    """A loaded model that answers requests until it is closed or dies.

    A runner is handed out loaded (its `info` is there); it may die at any time, after
    which `alive` is false, every request in flight and every later one fails with
    `RunnerError`, and each `on_exit` callback has been called once.
    """

    @property
    def info(self) -> RunnerInfo:
        """What the runner measured after loading: sizes for /api/ps, limits for requests."""
        ...

    @property
    def alive(self) -> bool: ...

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once when the runner is gone (crash or close); at once if it is."""
        ...

    async def close(self) -> None:
        """End the runner and give back its memory; waits until it has."""
        ...

    def completion(self, req: CompletionRequest) -> AsyncGenerator[CompletionChunk, None]:
        """Stream a completion; closing the stream early cancels it in the runner."""
        ...

    async def embed(
        self, inputs: list[str], *, truncate: bool = True, normalize: bool = True, dimensions: int | None = None
    ) -> EmbedResult: ...

    async def rerank(self, query: str, documents: list[str], *, truncate: bool = True) -> RerankResult: ...

    async def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]: ...

    async def token_pieces(
        self, text: str, *, add_special: bool = True, parse_special: bool = True
    ) -> list[tuple[int, str]]:
        """Each token of `text` with its text as output renders it."""
        ...

    async def detokenize(self, tokens: list[int] | tuple[int, ...]) -> str: ...

    async def health(self, timeout: float = 10.0) -> bool:
        """True when the runner answers and has its model loaded."""
        ...
