"""How the runner benchmarks time one completion, so that they all count the same way.

A client's view: the clock starts before the request is sent, the first token is the first
chunk with text, the last is the final chunk. Decode tok/s counts the tokens after the first
over the time since the first, so prompt evaluation is left out (as llama-cpp-python's
in-process stream is timed in bench_engine.py). `engine_decode_tok_s` is the runner's own
figure (`eval_count` over `eval_duration`), without the pipe and the event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from server.runner.client import CompletionChunk, CompletionRequest, RunnerClient


@dataclass(frozen=True)
class StreamTiming:
    """One completion as the client saw it arrive, and its final chunk (stats, context)."""

    tokens: int
    ttft_s: float
    decode_tok_s: float
    engine_decode_tok_s: float
    wall_s: float
    final: CompletionChunk

    def figures(self) -> dict[str, float]:
        """The figures a benchmark's JSON reports for the stream."""
        return {
            "tokens": self.tokens,
            "ttft_s": self.ttft_s,
            "decode_tok_s": self.decode_tok_s,
            "engine_decode_tok_s": self.engine_decode_tok_s,
            "wall_s": self.wall_s,
        }


async def timed_completion(client: RunnerClient, req: CompletionRequest) -> StreamTiming:
    """Run `req` to its end on `client`, timing the chunks as they arrive."""
    start = time.perf_counter()
    first = last = 0.0
    final = None
    async for chunk in client.completion(req):
        now = time.perf_counter()
        if chunk.content and not first:
            first = now
        last = now
        if chunk.done:
            final = chunk
    if final is None:
        raise RuntimeError("the runner's stream ended without a final chunk")
    count = final.eval_count
    return StreamTiming(
        tokens=count,
        ttft_s=first - start if first else last - start,
        decode_tok_s=(count - 1) / (last - first) if first and last > first else 0.0,
        engine_decode_tok_s=count / (final.eval_duration / 1e9) if final.eval_duration else 0.0,
        wall_s=last - start,
        final=final,
    )
