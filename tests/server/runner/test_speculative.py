"""Speculative decoding in a real runner on the tiny models: a draft model loaded beside the
model, and prompt lookup (n-gram) drafting; either way the output is the plain decoding's,
token for token, and the final chunk says how many drafts were made and accepted."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from server.runner.client import LoadOptions, RunnerClient
from server.runner.engine import DRAFT_TOKEN_COST_ENV
from tests.server.runner.helpers import Result, generate

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROMPTS = ["hello world", "the quick brown fox", "once upon a time there was"]
#: An editing task in miniature: the answer mostly repeats the given text.
EDIT = "Fix the typo: the cat sat on the mat. the cat sat on the mat. the cat sat on the mat. the cat"


def tokens(result: Result) -> list[int]:
    assert result.last.context is not None
    return list(result.last.context)


# ---- a draft model ---------------------------------------------------------------------


async def _runner(model: Path, draft: Path | None) -> RunnerClient:
    # CPU only, as in test_engine: there a batch gives the same logits as single decodes.
    options = LoadOptions(str(model), num_ctx=256, num_parallel=3, num_gpu=0, draft_path=str(draft) if draft else None)
    return await RunnerClient.start(options, load_timeout=60)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def drafted(tiny_model_path: Path, tiny_draft_model_path: Path) -> AsyncIterator[RunnerClient]:
    client = await _runner(tiny_model_path, tiny_draft_model_path)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def self_drafted(tiny_model_path: Path) -> AsyncIterator[RunnerClient]:
    """The model as its own draft: every draft is accepted, so the accept path runs long.
    A self-draft costs more than it saves, so the runner would soon stop drafting
    (`DraftPace`); it is told that drafts are free instead."""
    os.environ[DRAFT_TOKEN_COST_ENV] = "0"
    try:
        client = await _runner(tiny_model_path, tiny_model_path)
    finally:
        del os.environ[DRAFT_TOKEN_COST_ENV]
    yield client
    await client.close()


async def test_draft_model_output_equals_plain_greedy(drafted: RunnerClient) -> None:
    for prompt in PROMPTS:
        plain = await generate(drafted, prompt, num_predict=40, draft_num_predict=0)
        assert plain.last.draft_count == 0
        for n in (1, 4, 7):
            spec = await generate(drafted, prompt, num_predict=40, draft_num_predict=n)
            assert tokens(spec) == tokens(plain), (prompt, n)
            assert spec.text == plain.text and spec.last.eval_count == plain.last.eval_count == 40
            assert 0 <= spec.last.draft_accepted_count <= spec.last.draft_count
            assert spec.last.draft_count > 0


async def test_a_draft_model_that_keeps_missing_drafts_less_and_changes_nothing(drafted: RunnerClient) -> None:
    """The one-layer tiny draft never guesses the tiny model's next token: drafting backs off
    (`DraftPace`) instead of paying for 4 rejected rows at each of the 39 decodes."""
    plain = await generate(drafted, PROMPTS[2], num_predict=40, draft_num_predict=0)
    spec = await generate(drafted, PROMPTS[2], num_predict=40, draft_num_predict=4)
    assert tokens(spec) == tokens(plain)
    assert spec.last.draft_accepted_count == 0  # the fixture's premise: its drafts always miss
    assert 0 < spec.last.draft_count < 4 * 39 // 4


async def test_a_self_draft_is_accepted_and_changes_nothing(self_drafted: RunnerClient) -> None:
    plain = await generate(self_drafted, EDIT, num_predict=37, draft_num_predict=0)
    spec = await generate(self_drafted, EDIT, num_predict=37)  # the default: 4 per step
    assert tokens(spec) == tokens(plain)
    last = spec.last
    # 37 tokens: the first from the prompt's decode, then 7 steps of 4 accepted drafts and the
    # model's own next token (5 each, 36 in all), then one plain step: a draft may not pass the limit.
    assert (last.draft_count, last.draft_accepted_count) == (28, 28)


async def test_sampled_output_with_a_draft_equals_plain_sampling(self_drafted: RunnerClient) -> None:
    """The model's own chain draws each row once: a seed gives what it gives without drafts,
    penalties included."""
    options = {"temperature": 0.9, "seed": 7, "repeat_penalty": 1.3, "top_k": 20, "num_predict": 40}
    plain = await generate(self_drafted, PROMPTS[1], draft_num_predict=0, **options)
    spec = await generate(self_drafted, PROMPTS[1], draft_num_predict=5, **options)
    assert tokens(spec) == tokens(plain)
    assert spec.last.draft_count > 0


async def test_concurrent_drafted_streams_equal_solo_plain_runs(drafted: RunnerClient) -> None:
    solo = [await generate(drafted, p, num_predict=30, draft_num_predict=0) for p in PROMPTS]
    together = await asyncio.gather(*(generate(drafted, p, num_predict=30, draft_num_predict=3) for p in PROMPTS))
    assert [tokens(r) for r in together] == [tokens(r) for r in solo]


async def test_stop_strings_and_limits_with_a_draft(self_drafted: RunnerClient) -> None:
    plain = await generate(self_drafted, PROMPTS[0], num_predict=30, draft_num_predict=0)
    stop = plain.text[10:13]
    expected = await generate(self_drafted, PROMPTS[0], num_predict=30, draft_num_predict=0, stop=(stop,))
    spec = await generate(self_drafted, PROMPTS[0], num_predict=30, draft_num_predict=6, stop=(stop,))
    assert spec.text == expected.text and spec.last.done_reason == "stop"
    for limit in (1, 2, 5):
        short = await generate(self_drafted, PROMPTS[0], num_predict=limit, draft_num_predict=6)
        assert tokens(short) == tokens(plain)[: len(tokens(short))] and short.last.eval_count == limit


# ---- prompt lookup ---------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plain_runner(tiny_model_path: Path) -> AsyncIterator[RunnerClient]:
    client = await _runner(tiny_model_path, None)
    yield client
    await client.close()


async def test_ngram_output_equals_plain_greedy(plain_runner: RunnerClient) -> None:
    accepted = 0
    for prompt in [EDIT, *PROMPTS]:
        plain = await generate(plain_runner, prompt, num_predict=60)
        assert plain.last.draft_count == 0  # no draft model, no draft_ngram: no speculation
        for n in (1, 2, 3):
            spec = await generate(plain_runner, prompt, num_predict=60, draft_ngram=n)
            assert tokens(spec) == tokens(plain), (prompt, n)
            accepted += spec.last.draft_accepted_count
            assert spec.last.draft_accepted_count <= spec.last.draft_count
    assert accepted > 0  # the tiny model's greedy text repeats itself: lookups hit


async def test_ngram_beside_a_draft_model_and_concurrently(drafted: RunnerClient) -> None:
    solo = [await generate(drafted, p, num_predict=30, draft_num_predict=0) for p in PROMPTS]
    together = await asyncio.gather(
        *(generate(drafted, p, num_predict=30, draft_ngram=2, draft_num_predict=4) for p in PROMPTS)
    )
    assert [tokens(r) for r in together] == [tokens(r) for r in solo]
