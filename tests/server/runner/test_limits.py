"""No load value a runner is sent may kill it: real runner processes, the values that once
did (SIGSEGV, SIGABRT in a llama.cpp assertion, a refused load), and the rules that keep them out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from server.runner.client import LoadOptions, RunnerClient
from server.runner.limits import (
    GGML_MAX_N_THREADS,
    LLAMA_MAX_SEQ,
    MAX_CONTEXT_TOTAL,
    embedding_shape,
    generation_shape,
    sampler_float,
    thread_count,
)
from tests.server.runner.helpers import generate


@pytest.mark.parametrize(
    "options",
    [
        {"num_batch": 2**31},  # SIGSEGV: a 2^31-token batch buffer
        {"num_batch": 2**31 - 1},
        {"num_batch": 1, "num_parallel": 4},  # SIGABRT: fewer batch rows than sequences
        {"num_parallel": 300},  # more sequences than llama.cpp holds: a load error
        {"num_ctx": 3, "num_parallel": 4, "num_batch": 2},
        {"num_thread": 2**31},  # an int32 that wraps negative
        {"num_thread": 10_000},  # past ggml's 512
    ],
)
async def test_generation_runner_takes_extreme_load_options(tiny_model_path: Path, options: dict[str, Any]) -> None:
    client = await RunnerClient.start(LoadOptions(str(tiny_model_path), **options), load_timeout=60)
    try:
        result = await generate(client, "hello world", num_predict=6)
        assert result.last.done and client.alive
        assert client.info is not None
        assert client.info.num_parallel <= LLAMA_MAX_SEQ
        assert client.info.num_parallel <= client.info.n_batch <= client.info.n_ctx_total
        assert 1 <= client.info.n_threads <= GGML_MAX_N_THREADS
    finally:
        await client.close()


@pytest.mark.parametrize("num_ctx", [17, 50, 100, 257, 514, 1000])
async def test_embedding_runner_takes_any_context_size(bert_model_path: Path, num_ctx: int) -> None:
    """A BERT context not a multiple of 16 above 16 aborted in `ggml_can_mul_mat` (514 is
    the trained context of RoBERTa-family embedding models, so their default did too)."""
    client = await RunnerClient.start(LoadOptions(str(bert_model_path), num_ctx=num_ctx), load_timeout=60)
    try:
        inputs = ["one two three four five six seven " * 20, "eight", "nine ten"] * 7
        result = await client.embed(inputs)
        assert len(result.vectors) == len(inputs) and client.alive
        assert all(math.isfinite(x) for v in result.vectors for x in v)
    finally:
        await client.close()


def test_shapes_are_what_llama_cpp_accepts() -> None:
    for ctx in (1, 3, 16, 17, 100, 514, 4096, 2**31, 2**63):
        emb = embedding_shape(ctx)
        assert emb.capacity % emb.n_seq_max == 0 and emb.capacity >= emb.n_ctx
        assert emb.n_seq_max <= emb.capacity <= MAX_CONTEXT_TOTAL
        for parallel in (-1, 1, 4, 300):
            for batch in (-(2**31), 0, 1, 7, 512, 2**31, 2**63):
                shape = generation_shape(ctx, parallel, batch)
                assert 1 <= shape.n_parallel <= LLAMA_MAX_SEQ
                assert shape.n_parallel <= shape.n_batch <= shape.n_ctx_total <= MAX_CONTEXT_TOTAL
                assert 1 <= shape.n_ubatch <= shape.n_batch
    assert embedding_shape(100).capacity == 112 and embedding_shape(100).n_ctx == 100
    assert thread_count(0, 4, 2) == 2 and thread_count(2**31, 1, 64) == 64 and thread_count(-5, 3, 8) == 3
    assert sampler_float(math.nan, 0.8) == 0.8 and math.isfinite(sampler_float(1e300, 0.0))
