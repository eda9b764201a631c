"""The batching engine, exercised through a real runner process on the tiny model.

One runner (4 slots) is shared by the module to keep the suite fast; tests that need
other load options start their own.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from server.errors import BadRequest
from server.runner import messages as m
from server.runner.client import CompletionRequest, LoadOptions, RunnerClient
from tests.server.runner.helpers import generate

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROMPTS = ["hello world", "the quick brown fox", "once upon a time there was", "in the beginning"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runner(tiny_model_path: Path) -> AsyncIterator[RunnerClient]:
    # CPU only (num_gpu 0) everywhere: batched and solo decoding give identical tokens only
    # there (GPU kernels differ per batch size), and it checks that 0 keeps the GPU out.
    client = await RunnerClient.start(
        LoadOptions(str(tiny_model_path), num_ctx=256, num_parallel=4, num_gpu=0), load_timeout=60
    )
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def small_ctx_runner(tiny_model_path: Path) -> AsyncIterator[RunnerClient]:
    client = await RunnerClient.start(LoadOptions(str(tiny_model_path), num_ctx=64, num_parallel=2), load_timeout=60)
    yield client
    await client.close()


async def test_loaded_info(runner: RunnerClient, tiny_model_path: Path) -> None:
    info = runner.info
    assert info is not None
    assert info.model_path == str(tiny_model_path)
    assert (info.n_ctx, info.num_parallel, info.n_ctx_total) == (256, 4, 1024)
    assert info.n_ctx_train == 2048 and info.n_vocab == 1024
    assert info.bos == 1 and info.eos == 4 and info.add_bos
    assert info.weights_bytes > 0 and info.kv_bytes > 0 and info.compute_bytes > 0
    assert info.size == info.weights_bytes + info.kv_bytes + info.compute_bytes
    assert info.size_vram == 0 and info.pid == runner.pid
    assert runner.alive and await runner.health()


async def test_tokenize_detokenize(runner: RunnerClient) -> None:
    tokens = await runner.tokenize("hello world")
    assert tokens[0] == 1 and len(tokens) >= 3
    assert (await runner.tokenize("hello world", add_special=False)) == tokens[1:]
    assert (await runner.detokenize(tokens[1:])).strip() == "hello world"
    assert await runner.tokenize("<|im_start|>", add_special=False) == [3]
    assert await runner.tokenize("<|im_start|>", add_special=False, parse_special=False) != [3]


async def test_greedy_and_seeded_runs_repeat(runner: RunnerClient) -> None:
    a = await generate(runner, "hello world")
    b = await generate(runner, "hello world")
    assert a.text and a.text == b.text
    s1 = await generate(runner, "hello world", temperature=0.9, seed=42, top_k=0, top_p=1.0)
    s2 = await generate(runner, "hello world", temperature=0.9, seed=42, top_k=0, top_p=1.0)
    s3 = await generate(runner, "hello world", temperature=0.9, seed=43, top_k=0, top_p=1.0)
    assert s1.text == s2.text
    assert s1.text != s3.text


async def test_concurrent_streams_match_solo_runs(runner: RunnerClient) -> None:
    solo = [await generate(runner, p, num_predict=40) for p in PROMPTS]
    together = await asyncio.gather(*(generate(runner, p, num_predict=40) for p in PROMPTS))
    assert [r.text for r in together] == [r.text for r in solo]
    assert all(r.last.eval_count == 40 and r.last.done_reason == "length" for r in together)


async def test_a_reader_behind_the_engine_gets_all_tokens_in_fewer_chunks(runner: RunnerClient) -> None:
    """Pieces that queue up while the caller is busy come as one chunk (`coalesce`), with every
    token's text and logprob in order: the same as a caller that keeps up."""
    options = {"temperature": 0.0, "num_predict": 32, "logprobs": True}
    prompt = "a prompt only this test uses, about slow readers"
    # Both timed runs then reuse the same slot's cache for all but the last prompt token, so
    # their log-probabilities agree to the last bit (entries cached from another batch shape
    # differ in their last digits: README, "Reproducible greedy output").
    await generate(runner, prompt, num_predict=1)
    fast = await generate(runner, prompt, **options)
    stream = runner.completion(CompletionRequest(prompt=prompt, **options))  # type: ignore[arg-type]
    first = await stream.__anext__()
    # The runner answers health after the Done it emitted before going idle, so once it
    # reports no request running, every piece of this one is in the client's queue.
    while (await runner._call(lambda rid: m.Health(rid))).active:
        await asyncio.sleep(0.01)
    rest = [chunk async for chunk in stream]
    slow = [first, *rest]
    # first, all the rest merged, the final chunk: 32 tokens would be 33 chunks unmerged. (The
    # "fast" reader is not asserted to get more: on a busy machine it falls behind too.)
    assert len(slow) <= 3
    assert "".join(c.content for c in slow) == fast.text
    assert [e for c in slow for e in c.logprobs or ()] == [e for c in fast.chunks for e in c.logprobs or ()]
    assert slow[-1].done and slow[-1].eval_count == fast.last.eval_count == 32
    assert slow[-2].eval_count == 32 or slow[-2].done  # a merged piece counts its last token


async def test_more_requests_than_slots_queue(runner: RunnerClient) -> None:
    results = await asyncio.gather(*(generate(runner, f"{p} again", num_predict=8) for p in PROMPTS * 2))
    assert all(r.last.eval_count == 8 for r in results)
    assert results[0].text == results[4].text


async def test_num_predict_and_stats(runner: RunnerClient) -> None:
    r = await generate(runner, "the stats of a run", num_predict=7)
    last = r.last
    assert last.done and last.done_reason == "length" and last.eval_count == 7
    assert last.prompt_eval_count > 0 and last.prompt_eval_duration > 0 and last.eval_duration > 0
    tokens = await runner.tokenize("the stats of a run")
    assert last.context is not None and last.context[: len(tokens)] == tokens
    assert len(last.context) == len(tokens) + 7
    assert not any(c.done for c in r.chunks[:-1])


async def test_stop_string_ends_and_never_leaks(runner: RunnerClient) -> None:
    full = await generate(runner, "once upon a time", num_predict=40)
    stop = full.text[12:16]
    expected = full.text[: full.text.find(stop)]
    r = await generate(runner, "once upon a time", num_predict=40, stop=(stop,))
    assert r.text == expected
    assert r.last.done_reason == "stop"
    assert all(stop not in c.content for c in r.chunks)


async def test_prefix_reuse_evaluates_only_the_new_part(runner: RunnerClient) -> None:
    prompt = "a unique prompt about zebras and their many stripes"
    n = len(await runner.tokenize(prompt))
    first = await generate(runner, prompt, num_predict=4)
    second = await generate(runner, prompt, num_predict=4)
    longer = await generate(runner, prompt + " and more", num_predict=4)
    assert first.last.prompt_eval_count >= n - 1  # at most the BOS token was cached
    assert second.last.prompt_eval_count == 1
    assert longer.last.prompt_eval_count < n
    assert first.text == second.text


async def test_schema_grammar_output_parses(runner: RunnerClient) -> None:
    from server.runner import grammar_for_format

    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
        "required": ["ok", "n"],
    }
    r = await generate(runner, "answer in json", grammar=grammar_for_format(schema), num_predict=60)
    value = json.loads(r.text)
    assert isinstance(value["ok"], bool) and isinstance(value["n"], int)
    assert r.last.done_reason == "stop"


async def test_sampled_grammar_output_always_matches_and_repeats_per_seed(runner: RunnerClient) -> None:
    """With temperature the random model draws tokens the grammar mostly rejects: each is
    checked, and a rejected one is drawn again under the grammar. Every seed's output
    matches, batched runs give what solo runs give, and penalties still apply."""
    grammar = 'root ::= "{" ws "\\"n\\":" ws [1-9] [0-9]* ws "}"\nws ::= [ \\t]*'
    options = {"grammar": grammar, "temperature": 1.0, "num_predict": 40, "repeat_penalty": 1.3}
    solo = [await generate(runner, "pick a number", seed=seed, **options) for seed in range(6)]
    batched = await asyncio.gather(*(generate(runner, "pick a number", seed=seed, **options) for seed in range(6)))
    for one, other in zip(solo, batched, strict=True):
        assert one.text == other.text
        assert one.last.done_reason == "stop", one.text
        assert isinstance(json.loads(one.text)["n"], int)
    assert len({r.text for r in solo}) > 1, "seeds draw different numbers"


async def test_invalid_grammar_is_a_bad_request(runner: RunnerClient) -> None:
    with pytest.raises(BadRequest, match="grammar"):
        await generate(runner, "x", grammar="root ::= (")


async def test_logprobs(runner: RunnerClient) -> None:
    r = await generate(runner, "hello world", num_predict=6, logprobs=True, top_logprobs=3)
    entries = [e for c in r.chunks for e in (c.logprobs or [])]
    assert len(entries) == 6
    assert "".join(e["token"] for e in entries) == r.text
    for e in entries:
        assert e["logprob"] <= 0 and bytes(e["bytes"]).decode() == e["token"]
        top = e["top_logprobs"]
        assert len(top) == 3 and top[0]["token"] == e["token"]  # greedy picks the most likely
        assert math.isclose(top[0]["logprob"], e["logprob"])
        assert top[0]["logprob"] >= top[1]["logprob"] >= top[2]["logprob"]
    plain = await generate(runner, "hello world", num_predict=3)
    assert all(c.logprobs is None for c in plain.chunks)


async def test_cancel_frees_the_slot(runner: RunnerClient) -> None:
    streams = [
        runner.completion(CompletionRequest(prompt=f"endless {i}", temperature=0, num_predict=-1)) for i in range(4)
    ]
    for stream in streams:
        for _ in range(3):
            chunk = await stream.__anext__()
            assert not chunk.done
    for stream in streams:
        assert isinstance(stream, AsyncGenerator)  # completion() is an async generator
        await stream.aclose()
    # all four slots were busy; a new request can only finish if cancelling freed them
    r = await asyncio.wait_for(generate(runner, "after cancel", num_predict=3), 20)
    assert r.last.eval_count == 3
    await asyncio.sleep(0.05)
    assert await runner.health()


async def test_token_prompt(runner: RunnerClient) -> None:
    tokens = tuple(await runner.tokenize("hello world"))
    assert (await generate(runner, tokens)).text == (await generate(runner, "hello world")).text


async def test_llama_embeddings(runner: RunnerClient) -> None:
    result = await runner.embed(["hello", "the quick brown fox"], truncate=True, normalize=True, dimensions=None)
    assert len(result.vectors) == 2 and all(len(v) == 64 for v in result.vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in result.vectors)
    assert result.vectors[0] != result.vectors[1]
    assert result.prompt_eval_count == len(await runner.tokenize("hello")) + len(
        await runner.tokenize("the quick brown fox")
    )
    # generation still works afterwards
    assert (await generate(runner, "hello world", num_predict=3)).last.eval_count == 3


MANY = [f"input number {i} of the big request" for i in range(1600)]  # 100 decodes of 16


async def test_a_big_embed_request_holds_up_neither_embeds_nor_streams(runner: RunnerClient) -> None:
    """Embed requests run a decode at a time, in turn with each other and with generation:
    a one-input request and a short stream sent after 1,600 inputs finish before them."""
    finished: list[str] = []

    async def embed(label: str, inputs: list[str]) -> list[list[float]]:
        result = await runner.embed(inputs, truncate=True, normalize=True, dimensions=None)
        finished.append(label)
        return result.vectors

    async def stream() -> str:
        result = await generate(runner, "hello world", num_predict=8)
        finished.append("stream")
        return result.text

    big, small, text = await asyncio.gather(embed("big", MANY), embed("small", ["hello"]), stream())
    assert finished == ["small", "stream", "big"]
    assert len(big) == len(MANY)
    assert text == (await generate(runner, "hello world", num_predict=8)).text
    assert small == (await runner.embed(["hello"], truncate=True, normalize=True, dimensions=None)).vectors
    for i in (0, 700, len(MANY) - 1):  # a vector does not depend on the inputs it was batched with
        alone = (await runner.embed([MANY[i]], truncate=True, normalize=True, dimensions=None)).vectors[0]
        assert all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip(alone, big[i], strict=True))


async def test_an_embed_request_without_inputs_gets_no_vectors(runner: RunnerClient) -> None:
    result = await runner.embed([], truncate=True, normalize=True, dimensions=None)
    assert (result.vectors, result.prompt_eval_count) == ([], 0)


async def test_a_cancelled_embed_request_stops_in_the_runner(runner: RunnerClient) -> None:
    task = asyncio.create_task(runner.embed(MANY, truncate=True, normalize=True, dimensions=None))
    await asyncio.sleep(0)  # the request is sent; the cancel follows it at once
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len((await runner.embed(["after"], truncate=True, normalize=True, dimensions=None)).vectors) == 1
    await asyncio.sleep(0.05)  # stderr is read by a task of its own
    notes = [line for line in runner.stderr_tail(50) if "embedding cancelled after" in line]
    assert notes, runner.stderr_tail(50)
    done, total = (int(n) for n in notes[-1].split("after ")[1].split(" inputs")[0].split(" of "))
    assert total == len(MANY) and done < total


async def test_context_shift(small_ctx_runner: RunnerClient) -> None:
    r = await generate(small_ctx_runner, "hello world", num_predict=150)
    assert r.last.done_reason == "length" and r.last.eval_count == 150


async def test_no_shift_stops_at_the_context(small_ctx_runner: RunnerClient) -> None:
    n = len(await small_ctx_runner.tokenize("hello world"))
    r = await generate(small_ctx_runner, "hello world", num_predict=150, shift=False)
    assert r.last.done_reason == "length"
    assert r.last.eval_count == 64 - n + 1


async def test_truncate_long_prompt(small_ctx_runner: RunnerClient) -> None:
    prompt = " ".join(["word"] * 100)
    tokens = await small_ctx_runner.tokenize(prompt)
    assert len(tokens) > 64
    r = await generate(small_ctx_runner, prompt, num_predict=5, num_keep=4)
    assert r.last.prompt_eval_count <= 64 and r.last.eval_count == 5
    assert r.last.context is not None and r.last.context[:4] == tokens[:4]
    with pytest.raises(BadRequest, match="the input length exceeds the context length"):
        await generate(small_ctx_runner, prompt, num_predict=5, truncate=False)


async def test_penalties_change_greedy_output_and_keep_the_runner_alive(runner: RunnerClient) -> None:
    """Repeat/presence/frequency penalties reach llama.cpp with their window (the call's n_vocab
    argument once went missing, which shifted repeat_last_n into garbage)."""
    plain = await generate(runner, "hello world", num_predict=48)
    tokens = await runner.tokenize(plain.text, add_special=False)
    assert len(set(tokens)) < len(tokens), "greedy output on random weights repeats itself"
    for options in (
        {"repeat_penalty": 5.0, "repeat_last_n": 64},
        {"presence_penalty": 5.0},
        {"frequency_penalty": 5.0},
    ):
        penalized = await generate(runner, "hello world", num_predict=48, **options)
        assert penalized.text != plain.text, options
        assert penalized.last.done_reason == "length"
        assert runner.alive
    # the window is honoured: penalizing only the previous token is not penalizing 64
    last_1 = await generate(runner, "hello world", num_predict=48, repeat_penalty=5.0, repeat_last_n=1)
    last_64 = await generate(runner, "hello world", num_predict=48, repeat_penalty=5.0, repeat_last_n=64)
    assert plain.text != last_1.text != last_64.text
    again = await generate(runner, "hello world", num_predict=48, repeat_penalty=5.0, repeat_last_n=64)
    assert (
        again.text == (await generate(runner, "hello world", num_predict=48, repeat_penalty=5.0, repeat_last_n=64)).text
    )
