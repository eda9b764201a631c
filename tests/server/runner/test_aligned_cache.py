"""The aligned-chunk rule (`POLLAMA_ALIGNED_CACHE`) in a real runner on the tiny model.

On the tiny model a reused prefix changes the log-probabilities of the greedy tokens in their
last digits, not yet the text (tests/realmodel shows text on Gemma 3 270M); the last test
checks that with the option they are the same bits whatever was cached before. The others
check the rule itself, through the runner's own count of evaluated prompt tokens
(`prompt_eval_count`, which counts what was evaluated, not what was cached): a prefix is
taken over only in whole aligned chunks that were decoded alone, and the partial chunk after
it is evaluated again. With 64-token micro-batches (`num_batch` 64) the chunk boundaries are
the multiples of 64.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from server.runner.client import CompletionRequest, LoadOptions, RunnerClient
from tests.fixtures.images import gradient
from tests.server.runner.helpers import generate

pytestmark = pytest.mark.asyncio

UNIT = 64


async def _runner(path: Path, *, aligned: bool, parallel: int = 1) -> RunnerClient:
    options = LoadOptions(
        str(path), num_ctx=512, num_parallel=parallel, num_batch=UNIT, num_gpu=0, aligned_cache=aligned
    )
    return await RunnerClient.start(options, load_timeout=60)


async def _prompts(client: RunnerClient) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """A 150-token prompt, one sharing its first 140 tokens, one sharing its first 100."""
    words = await client.tokenize(" ".join(f"the cat and the dog number {i} is in the house" for i in range(30)))
    other = await client.tokenize("a red fox jumps over it and runs to the river", add_special=False)
    assert len(words) >= 150 and len(other) >= 20
    base = tuple(words[:150])
    return base, base[:140] + tuple(other[:20]), base[:100] + tuple(other[:20])


async def test_only_whole_aligned_chunks_are_reused(tiny_model_path: Path) -> None:
    client = await _runner(tiny_model_path, aligned=True)
    try:
        a, b, c = await _prompts(client)
        first = await generate(client, a, num_predict=4)
        assert first.last.prompt_eval_count == 150
        # 140 tokens match, but only [0, 128) were computed in whole chunks: 32 evaluated
        after_a = await generate(client, b, num_predict=8)
        assert after_a.last.prompt_eval_count == len(b) - 128
        again = await generate(client, b, num_predict=8)  # itself cached: still from 128
        assert again.last.prompt_eval_count == len(b) - 128
        shorter = await generate(client, c, num_predict=8)  # 100 match: back to the boundary at 64
        assert shorter.last.prompt_eval_count == len(c) - 64
        await generate(client, "zebra", num_predict=2)  # leaves only BOS shared: nothing reused
        fresh = await generate(client, b, num_predict=8)
        assert fresh.last.prompt_eval_count == len(b)
        assert after_a.text == again.text == fresh.text
    finally:
        await client.close()


async def test_without_the_option_the_whole_match_is_reused(tiny_model_path: Path) -> None:
    """The default keeps llama-server's rule: every matching token is taken over."""
    client = await _runner(tiny_model_path, aligned=False)
    try:
        a, b, _ = await _prompts(client)
        await generate(client, a, num_predict=4)
        after_a = await generate(client, b, num_predict=8)
        assert after_a.last.prompt_eval_count == len(b) - 140
    finally:
        await client.close()


async def test_chunks_decoded_beside_another_sequence_are_not_reused(tiny_model_path: Path) -> None:
    """Two slots: a prompt evaluated while another request generates shares every decode with
    that request's rows (llama.cpp cuts micro-batches across both), so none of its entries are
    exact and a later prompt sharing 140 of its tokens evaluates all of them again."""
    client = await _runner(tiny_model_path, aligned=True, parallel=2)
    try:
        a, b, _ = await _prompts(client)
        stream = client.completion(CompletionRequest(prompt="hello world", temperature=0.0, num_predict=40))
        first = await anext(stream)  # the other request is generating from here on
        assert first.content or first.done
        beside = asyncio.ensure_future(generate(client, a, num_predict=4))
        rest = [chunk async for chunk in stream]
        assert rest and rest[-1].done and rest[-1].eval_count == 40
        await beside
        after = await generate(client, b, num_predict=8)
        assert after.last.prompt_eval_count == len(b)
        alone = await generate(client, b, num_predict=8)  # b itself was evaluated alone
        assert alone.last.prompt_eval_count == len(b) - 128
    finally:
        await client.close()


async def test_an_image_is_a_chunk_boundary(tiny_model_path: Path, tiny_projector_path: Path) -> None:
    """Text up to the image (cut at 64 and at the image's start), the image decoded alone, text
    after it: the cache holds exact entries up to the image's end, so the same prompt again
    evaluates only the text after the image, and gives the same text."""
    options = LoadOptions(
        str(tiny_model_path),
        num_ctx=512,
        num_parallel=1,
        num_batch=UNIT,
        num_gpu=0,
        projector_path=str(tiny_projector_path),
        aligned_cache=True,
    )
    client = await RunnerClient.start(options, load_timeout=60)
    try:
        before = " ".join(f"picture {i} of the house" for i in range(14))
        after = " what is in this picture and where is the cat and the dog"
        n_before = len(await client.tokenize(before))
        n_after = len(await client.tokenize(after, add_special=False))
        assert n_before > UNIT and n_after > 1
        image = (base64.b64encode(gradient()).decode(),)
        request = CompletionRequest(prompt=f"{before}[img-0]{after}", images=image, temperature=0.0, num_predict=8)
        first = [chunk async for chunk in client.completion(request)]
        again = [chunk async for chunk in client.completion(request)]
        assert first[-1].prompt_eval_count == first[-1].prompt_count == n_before + 16 + n_after
        assert again[-1].prompt_eval_count == n_after
        assert "".join(c.content for c in again) == "".join(c.content for c in first)
    finally:
        await client.close()


async def _logprobs(client: RunnerClient, prompt: tuple[int, ...]) -> tuple[str, list[float]]:
    """Greedy text and the log-probabilities of its tokens: they show a difference in the last
    bits of the logits that has not flipped a token yet."""
    request = CompletionRequest(prompt=prompt, temperature=0.0, num_predict=12, logprobs=True, top_logprobs=1)
    chunks = [chunk async for chunk in client.completion(request)]
    return "".join(c.content for c in chunks), [float(e["logprob"]) for c in chunks for e in c.logprobs or []]


async def test_greedy_output_is_the_same_bits_after_any_cache_history(tiny_model_path: Path) -> None:
    """Issue 24 item 3 on the tiny model: the same request after a prompt sharing 140 of its
    tokens, after an unrelated one, and after itself gives the same text and the same
    log-probabilities to the last bit. (Without the option the log-probabilities after the
    shared prefix differ on this model, in the sixth or seventh digit.)"""
    client = await _runner(tiny_model_path, aligned=True)
    try:
        a, b, _ = await _prompts(client)
        await generate(client, a, num_predict=4)
        after_shared = await _logprobs(client, b)
        await generate(client, "zebra", num_predict=2)
        after_unrelated = await _logprobs(client, b)
        after_itself = await _logprobs(client, b)
        assert len(after_shared[1]) == 12
        assert after_shared == after_unrelated == after_itself
    finally:
        await client.close()
