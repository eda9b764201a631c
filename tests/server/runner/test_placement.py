"""Running sequences kept in consecutive slots, through a real runner on the tiny model.

With one KV stream per slot llama.cpp decodes a step in one pass over the weights per run of
consecutive sequence ids (`server/runner/slots.py` `place`). A new request therefore goes
next to the running ones, and where that slot holds another conversation's cache, the cache
is copied to the stream the least-recently-used rule gave up. These tests check the copy is
a real one: the moved conversation resumes from its cache with the same tokens and
log-probabilities as one whose cache never moved.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.runner.client import CompletionRequest, LoadOptions, RunnerClient
from tests.server.runner.helpers import Result, generate

pytestmark = pytest.mark.asyncio

A = "a conversation about the weather in the mountains"
B = "another conversation, this one about cooking rice"
C = "a long story that keeps the third slot busy for a while"
D = "an unrelated question that matches no cached prompt"
B_AGAIN = B + " with beans and a little salt"


async def start(tiny_model_path: Path) -> RunnerClient:
    return await RunnerClient.start(
        LoadOptions(str(tiny_model_path), num_ctx=256, num_parallel=3, num_gpu=0), load_timeout=60
    )


def slot_of(runner: RunnerClient, request_count: int) -> int:
    """The slot the runner's log gives the `request_count`-th completion (1-based)."""
    lines = [line for line in runner.stderr_tail(400) if re.search(r"request \d+: slot \d+", line)]
    found = re.search(r"slot (\d+)", lines[request_count - 1])
    assert found is not None
    return int(found.group(1))


async def test_a_moved_cache_resumes_as_if_it_had_never_moved(tiny_model_path: Path) -> None:
    moved = await start(tiny_model_path)
    try:
        await generate(moved, A, num_predict=8)
        await generate(moved, B, num_predict=8)
        assert (slot_of(moved, 1), slot_of(moved, 2)) == (0, 1)
        long_run = moved.completion(CompletionRequest(prompt=C, temperature=0.0, num_predict=200))
        first = await long_run.__anext__()  # C is decoding in slot 2 now
        assert first is not None
        unrelated = await generate(moved, D, num_predict=8)
        rest = [chunk async for chunk in long_run]
        assert rest and rest[-1].done
        assert unrelated.text
        # D went next to C (slot 1), and B's cache went to the slot LRU gave up (slot 0, A's)
        assert slot_of(moved, 4) == 1
        assert any("slot 1's" in line and "copied to slot 0" in line for line in moved.stderr_tail(400))
        n_b = len(await moved.tokenize(B_AGAIN))
        resumed = await generate(moved, B_AGAIN, num_predict=16, logprobs=True, top_logprobs=3)
        assert slot_of(moved, 5) == 0
    finally:
        await moved.close()

    still = await start(tiny_model_path)
    try:
        await generate(still, A, num_predict=8)
        await generate(still, B, num_predict=8)
        control = await generate(still, B_AGAIN, num_predict=16, logprobs=True, top_logprobs=3)
        assert slot_of(still, 3) == 1
    finally:
        await still.close()

    assert resumed.last.prompt_eval_count == control.last.prompt_eval_count < n_b  # the cache was reused
    assert resumed.text == control.text and resumed.text
    assert logprobs(resumed) == logprobs(control)


def logprobs(result: Result) -> list[object]:
    return [entry for chunk in result.chunks for entry in (chunk.logprobs or ())]
