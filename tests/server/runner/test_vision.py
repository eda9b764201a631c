"""Vision through a real runner: the tiny model with a generated CLIP projector, real PNGs.

The reference for "right" is libmtmd's own pipeline run in this process
(`mtmd_helper_eval_chunks` then greedy decoding), so the runner's batching, prefix cache
and image scheduling must reproduce exactly what llama.cpp's helper produces.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
from collections.abc import AsyncIterator
from pathlib import Path

import llama_cpp as L
import llama_cpp.mtmd_cpp as M
import numpy as np
import pytest
import pytest_asyncio

from server.errors import BadRequest
from server.runner.client import CompletionRequest, LoadOptions, RunnerClient
from tests.fixtures.images import checkerboard, gradient

pytestmark = pytest.mark.asyncio(loop_scope="module")

N_PREDICT = 12
IMAGE_POSITIONS = 16  # 32x32 input, 8x8 patches


def b64(*images: bytes) -> tuple[str, ...]:
    return tuple(base64.b64encode(i).decode() for i in images)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runner(tiny_model_path: Path, tiny_projector_path: Path) -> AsyncIterator[RunnerClient]:
    client = await RunnerClient.start(
        LoadOptions(str(tiny_model_path), num_ctx=256, num_parallel=4, projector_path=str(tiny_projector_path)),
        load_timeout=60,
    )
    yield client
    await client.close()


async def run(runner: RunnerClient, prompt: str, images: tuple[bytes, ...], **options: object) -> tuple[str, int, int]:
    """Greedy completion: (text, positions evaluated, positions in the prompt)."""
    options.setdefault("temperature", 0.0)
    options.setdefault("num_predict", N_PREDICT)
    request = CompletionRequest(prompt=prompt, images=b64(*images), **options)  # type: ignore[arg-type]
    chunks = [c async for c in runner.completion(request)]
    last = chunks[-1]
    return "".join(c.content for c in chunks), last.prompt_eval_count, last.prompt_count


def reference(model_path: Path, projector_path: Path, prompt: str, image: bytes) -> str:
    """libmtmd's helper pipeline in-process: `prompt` with `<__media__>` where the image goes."""
    L.llama_backend_init()
    model = L.llama_model_load_from_file(str(model_path).encode(), L.llama_model_default_params())
    params = L.llama_context_default_params()
    params.n_ctx, params.n_batch = 256, 256
    ctx = L.llama_init_from_model(model, params)
    mparams = M.mtmd_context_params_default()
    mparams.use_gpu, mparams.print_timings, mparams.warmup = False, False, False
    mctx = M.mtmd_init_from_file(str(projector_path).encode(), model, mparams)
    chunks = M.mtmd_input_chunks_init()
    try:
        buf = (ctypes.c_uint8 * len(image)).from_buffer_copy(image)
        bitmap = M.mtmd_helper_bitmap_init_from_buf(mctx, buf, len(image), False, M.mtmd_helper_init_opt_default())
        text = prompt.encode()
        item = M.mtmd_input_text(text=text, text_len=len(text), add_special=True, parse_special=True)
        assert M.mtmd_tokenize(mctx, chunks, ctypes.byref(item), (M.mtmd_bitmap_p_ctypes * 1)(bitmap), 1) == 0
        M.mtmd_bitmap_free(bitmap)
        n_past = L.llama_pos(0)
        n_chunks = M.mtmd_input_chunks_size(chunks)
        last = M.mtmd_input_chunks_get(chunks, n_chunks - 1)
        if M.mtmd_input_chunk_get_type(last) == 0:
            assert M.mtmd_helper_eval_chunks(mctx, ctx, chunks, 0, 0, 256, True, ctypes.byref(n_past)) == 0
            pos = n_past.value
        else:  # libmtmd gives no logits on an image: decode its embeddings with our own batch
            for i in range(n_chunks - 1):
                chunk = M.mtmd_input_chunks_get(chunks, i)
                assert (
                    M.mtmd_helper_eval_chunk_single(mctx, ctx, chunk, n_past.value, 0, 256, False, ctypes.byref(n_past))
                    == 0
                )
            pos = n_past.value
            assert M.mtmd_encode_chunk(mctx, last) == 0
            n_tok, n_embd = M.mtmd_input_chunk_get_n_tokens(last), L.llama_model_n_embd(model)
            embd = np.ctypeslib.as_array(M.mtmd_get_output_embd(mctx), shape=(n_tok * n_embd,))
            batch = L.llama_batch_init(n_tok, n_embd, 1)
            ctypes.memmove(batch.embd, embd.ctypes.data, n_tok * n_embd * 4)
            for j in range(n_tok):
                batch.pos[j], batch.n_seq_id[j], batch.logits[j] = pos + j, 1, j == n_tok - 1
                batch.seq_id[j][0] = 0
            batch.n_tokens = n_tok
            assert L.llama_decode(ctx, batch) == 0
            L.llama_batch_free(batch)
            pos += n_tok
        vocab = L.llama_model_get_vocab(model)
        n_vocab = L.llama_vocab_n_tokens(vocab)
        out = b""
        batch = L.llama_batch_init(1, 0, 1)
        for _ in range(N_PREDICT):
            logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            token = int(logits.argmax())
            piece = ctypes.create_string_buffer(64)
            n = L.llama_token_to_piece(vocab, token, piece, 64, 0, True)
            out += piece.raw[:n]
            batch.token[0], batch.pos[0], batch.n_seq_id[0], batch.logits[0] = token, pos, 1, True
            batch.seq_id[0][0] = 0
            batch.n_tokens = 1
            assert L.llama_decode(ctx, batch) == 0
            pos += 1
        L.llama_batch_free(batch)
        return out.decode("utf-8", errors="replace")
    finally:
        M.mtmd_input_chunks_free(chunks)
        M.mtmd_free(mctx)
        L.llama_free(ctx)
        L.llama_model_free(model)


async def test_loaded_with_vision(runner: RunnerClient, tiny_projector_path: Path) -> None:
    info = runner.info
    assert info is not None and info.vision
    assert info.weights_bytes > tiny_projector_path.stat().st_size


async def test_output_matches_libmtmd_helper(
    runner: RunnerClient, tiny_model_path: Path, tiny_projector_path: Path
) -> None:
    text, evaluated, positions = await run(runner, "look [img-0] what is this", (gradient(),))
    expected = await asyncio.to_thread(
        reference, tiny_model_path, tiny_projector_path, "look <__media__> what is this", gradient()
    )
    assert text == expected
    text_tokens = await runner.tokenize("look ") + await runner.tokenize(" what is this", add_special=False)
    assert positions == evaluated == len(text_tokens) + IMAGE_POSITIONS


async def test_the_image_decides_the_output(runner: RunnerClient) -> None:
    a = await run(runner, "[img-0] what is this", (gradient(),))
    b = await run(runner, "[img-0] what is this", (checkerboard(),))
    again = await run(runner, "[img-0] what is this", (gradient(),))
    assert a[0] != b[0]
    assert again[0] == a[0]
    assert again[1] < again[2]  # the prompt, image included, came from the cache


async def test_image_order_follows_markers(runner: RunnerClient) -> None:
    g, c = gradient(), checkerboard()
    forward = await run(runner, "[img-0][img-1] two pictures", (g, c))
    swapped_markers = await run(runner, "[img-1][img-0] two pictures", (c, g))
    swapped_images = await run(runner, "[img-0][img-1] two pictures", (c, g))
    assert forward[0] == swapped_markers[0]
    assert forward[0] != swapped_images[0]
    assert forward[2] == swapped_images[2] and forward[2] > 2 * IMAGE_POSITIONS


async def test_prompt_may_end_with_an_image(
    runner: RunnerClient, tiny_model_path: Path, tiny_projector_path: Path
) -> None:
    text, _, positions = await run(runner, "what is this [img-0]", (checkerboard(),))
    expected = await asyncio.to_thread(
        reference, tiny_model_path, tiny_projector_path, "what is this <__media__>", checkerboard()
    )
    assert text == expected


async def test_concurrent_image_requests_match_alone(runner: RunnerClient) -> None:
    cases = [
        ("[img-0] a", (gradient(),)),
        ("b [img-0] c", (checkerboard(),)),
        ("[img-0] d [img-1]", (checkerboard(), gradient())),
        ("no image here", ()),
    ]
    alone = [await run(runner, p, i) for p, i in cases]
    together = await asyncio.gather(*(run(runner, p, i) for p, i in cases))
    assert [t[0] for t in together] == [a[0] for a in alone]


async def test_images_without_markers_are_not_used(runner: RunnerClient) -> None:
    assert (await run(runner, "plain words", (gradient(),)))[0] == (await run(runner, "plain words", ()))[0]


async def test_bad_images_are_refused_and_the_runner_stays(runner: RunnerClient) -> None:
    with pytest.raises(BadRequest, match="could not be decoded"):
        await run(runner, "[img-0] x", (b"this is not an image",))
    with pytest.raises(BadRequest, match="invalid image index: 2"):
        await run(runner, "[img-2] x", (gradient(),))
    request = CompletionRequest(prompt="[img-0] x", images=("***",), temperature=0.0, num_predict=2)
    with pytest.raises(BadRequest, match="not valid base64"):
        [c async for c in runner.completion(request)]
    assert runner.alive
    assert (await run(runner, "[img-0] fine", (gradient(),)))[0]


async def test_truncation_never_splits_an_image(tiny_model_path: Path, tiny_projector_path: Path) -> None:
    client = await RunnerClient.start(
        LoadOptions(str(tiny_model_path), num_ctx=32, num_parallel=1, projector_path=str(tiny_projector_path)),
        load_timeout=60,
    )
    try:
        long_text = "one two three four five six seven eight nine ten " * 2
        with pytest.raises(BadRequest, match="exceeds the context length"):
            await run(client, f"hi [img-0] {long_text}", (gradient(),), truncate=False)
        text, _, positions = await run(client, f"hi [img-0] {long_text}", (gradient(),), num_predict=4)
        assert text and positions <= 32
    finally:
        await client.close()


async def test_images_need_a_projector(tiny_model_path: Path) -> None:
    client = await RunnerClient.start(LoadOptions(str(tiny_model_path), num_ctx=64), load_timeout=60)
    try:
        assert client.info is not None and not client.info.vision
        with pytest.raises(BadRequest, match="does not support images"):
            await run(client, "[img-0] x", (gradient(),))
    finally:
        await client.close()
