"""Proof that the generated GGUF test models are what other tests rely on.

Everything else in the suite trusts these files: that GGUF readers see the
metadata we claim, that llama.cpp loads them, that greedy decoding of the
``predictable`` variant never ends early and only prints ASCII, that the
tokenizer round-trips any text, and that the broken files really are broken.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, cast

import gguf
import numpy as np
import pytest

from tests.fixtures import gguf_models as gm

llama_cpp = pytest.importorskip("llama_cpp")
if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_types import (
        ChatCompletionRequestMessage,
        CreateChatCompletionResponse,
        CreateCompletionResponse,
    )


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _field(reader: gguf.GGUFReader, key: str) -> object:
    return reader.fields[key].contents()


def _tensor(reader: gguf.GGUFReader, name: str) -> gguf.ReaderTensor:
    return next(t for t in reader.tensors if t.name == name)


def _printable(text: str) -> bool:
    return all(c == "\n" or " " <= c <= "~" for c in text)


def _open(path: Path, **kw: object) -> Llama:
    return llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1, verbose=False, **kw)


@pytest.fixture(scope="module")
def tiny_llm(tiny_model_path: Path) -> Iterator[Llama]:
    llm = _open(tiny_model_path)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def small_llm(small_model_path: Path) -> Iterator[Llama]:
    llm = _open(small_model_path)
    yield llm
    llm.close()


# ---------------------------------------------------------------------------
# generator, no llama.cpp
# ---------------------------------------------------------------------------


def test_vocab_layout_and_every_piece_is_reachable_by_merges() -> None:
    """SentencePiece only builds a piece by merging two pieces it already has."""
    tokens, scores, types = gm.llama_vocab(32000)
    assert len(tokens) == len(scores) == len(types) == 32000
    assert len(set(tokens)) == len(tokens)
    assert tokens[:5] == ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    assert types[0] == gguf.TokenType.UNKNOWN and set(types[1:5]) == {gguf.TokenType.CONTROL}
    assert tokens[5:261] == [f"<0x{b:02X}>" for b in range(256)]
    assert set(types[5:261]) == {gguf.TokenType.BYTE}
    assert set(types[261:]) == {gguf.TokenType.NORMAL}
    assert scores[261:] == sorted(scores[261:], reverse=True)
    seen: set[str] = set()
    for piece in tokens[261:]:
        if len(piece) > 1:
            assert any(piece[:i] in seen and piece[i:] in seen for i in range(1, len(piece))), piece
        seen.add(piece)
    # a smaller vocabulary is a prefix of a larger one, so it is closed too
    assert gm.llama_vocab(1024)[0] == tokens[:1024]


@pytest.mark.parametrize("fixture,preset", [("tiny_model_path", "tiny"), ("small_model_path", "small")])
def test_llama_metadata(request: pytest.FixtureRequest, fixture: str, preset: str) -> None:
    p = gm.PRESETS[preset]
    r = gguf.GGUFReader(request.getfixturevalue(fixture))
    assert _field(r, "general.architecture") == "llama"
    expected = {
        "llama.context_length": p.n_ctx,
        "llama.embedding_length": p.n_embd,
        "llama.block_count": p.n_layer,
        "llama.feed_forward_length": p.n_ff,
        "llama.attention.head_count": p.n_head,
        "llama.attention.head_count_kv": p.n_head_kv,
        "llama.rope.dimension_count": p.n_embd // p.n_head,
        "llama.vocab_size": p.n_vocab,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 4,
        "tokenizer.ggml.eot_token_id": 4,
        "tokenizer.ggml.padding_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": True,
        "tokenizer.chat_template": gm.CHATML_TEMPLATE,
    }
    assert {k: _field(r, k) for k in expected} == expected
    assert len(_field(r, "tokenizer.ggml.tokens")) == p.n_vocab  # type: ignore[arg-type]
    assert len(r.tensors) == 3 + 9 * p.n_layer
    emb = _tensor(r, "token_embd.weight")
    assert emb.shape.tolist() == [p.n_embd, p.n_vocab]  # GGUF order: innermost first
    assert emb.tensor_type.name == p.file_type
    assert _tensor(r, "blk.0.attn_norm.weight").tensor_type.name == "F32"


def test_predictable_zeroes_exactly_the_unwanted_output_rows(tiny_model_path: Path, tiny_model_eos_path: Path) -> None:
    """Rows of control/unknown and non-printable byte tokens are 0 only when predictable."""
    out = np.asarray(_tensor(gguf.GGUFReader(tiny_model_path), "output.weight").data)
    zero = ~out.any(axis=1)
    allowed_bytes = {0x0A, *range(0x20, 0x7F)}
    want = [i < 5 or (5 <= i < 261 and (i - 5) not in allowed_bytes) for i in range(out.shape[0])]
    assert zero.tolist() == want
    eos_out = np.asarray(_tensor(gguf.GGUFReader(tiny_model_eos_path), "output.weight").data)
    assert eos_out.any(axis=1).all()


def test_generation_is_deterministic_and_seeded(tmp_path: Path) -> None:
    a = gm.write_llama_model(tmp_path / "a.gguf")
    b = gm.write_llama_model(tmp_path / "b.gguf")
    c = gm.write_llama_model(tmp_path / "c.gguf", seed=1)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b, c)]
    assert digest[0] == digest[1] != digest[2]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "a.gguf",
        "b.gguf",
        "c.gguf",
    ]  # no temp files left


def test_options_name_template_and_extra_metadata(tmp_path: Path) -> None:
    path = gm.write_llama_model(
        tmp_path / "m.gguf",
        chat_template=None,
        name="custom",
        extra_metadata={"llama.context_length": 1024, "pollama.test": "yes", "pollama.n": 7},
    )
    r = gguf.GGUFReader(path)
    assert "tokenizer.chat_template" not in r.fields
    assert _field(r, "general.name") == "custom"
    assert _field(r, "llama.context_length") == 1024
    assert r.fields["llama.context_length"].types == [gguf.GGUFValueType.UINT32]
    assert _field(r, "pollama.test") == "yes" and _field(r, "pollama.n") == 7


def test_bert_metadata(bert_model_path: Path) -> None:
    r = gguf.GGUFReader(bert_model_path)
    assert _field(r, "general.architecture") == "bert"
    assert _field(r, "bert.pooling_type") == gguf.PoolingType.MEAN
    assert _field(r, "bert.attention.causal") is False
    assert _field(r, "tokenizer.ggml.model") == "bert"
    assert _field(r, "tokenizer.ggml.tokens")[:5] == list(gm.BERT_SPECIALS)  # type: ignore[index]


def test_cached_model_generates_once_even_when_raced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLLAMA_TEST_CACHE", str(tmp_path / "cache"))
    assert gm.model_cache_dir() == tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        paths = set(pool.map(lambda _: gm.cached_model("tiny"), range(8)))
    (path,) = paths
    assert path.parent == tmp_path / "cache" and gm.GENERATOR_VERSION in path.name
    mtime = path.stat().st_mtime_ns
    assert gm.cached_model("tiny") == path and path.stat().st_mtime_ns == mtime
    assert gm.cached_model("tiny", predictable=False) != path
    assert gm.cached_model("tiny", kind="bert") != path
    gguf.GGUFReader(path)
    assert not [n for n in os.listdir(path.parent) if n.endswith(".tmp")]


# ---------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("llm_fixture,preset", [("tiny_llm", "tiny"), ("small_llm", "small")])
def test_llama_cpp_loads(request: pytest.FixtureRequest, llm_fixture: str, preset: str) -> None:
    llm = request.getfixturevalue(llm_fixture)
    p = gm.PRESETS[preset]
    assert llm.n_vocab() == p.n_vocab
    assert llm.n_embd() == p.n_embd
    assert llm.n_ctx() == 512
    assert llm._model.n_ctx_train() == p.n_ctx
    assert (llm.token_bos(), llm.token_eos()) == (1, 4)


@pytest.mark.parametrize("llm_fixture", ["tiny_llm", "small_llm"])
def test_greedy_output_is_full_length_printable_and_deterministic(
    request: pytest.FixtureRequest, llm_fixture: str
) -> None:
    llm = request.getfixturevalue(llm_fixture)
    runs = [llm.create_completion("Why is the sky blue?", max_tokens=40, temperature=0) for _ in range(2)]
    for r in runs:
        assert r["usage"]["completion_tokens"] == 40
        assert r["choices"][0]["finish_reason"] == "length"
        assert _printable(r["choices"][0]["text"]) and r["choices"][0]["text"].strip()
    assert runs[0]["choices"][0]["text"] == runs[1]["choices"][0]["text"]


def test_greedy_output_is_the_same_in_a_fresh_process(tiny_llm: Llama, tiny_model_path: Path) -> None:
    """Same file, new process: tests may hard-code expected completions."""
    code = (
        "import json, sys, llama_cpp\n"
        "llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, n_threads=1, verbose=False)\n"
        "print(json.dumps(llm.create_completion('Hello', max_tokens=16, temperature=0)['choices'][0]['text']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tiny_model_path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # without stream=True the result is one response, not an iterator of chunks
    done = cast("CreateCompletionResponse", tiny_llm.create_completion("Hello", max_tokens=16, temperature=0))
    here = done["choices"][0]["text"]
    assert json.loads(out.strip().splitlines()[-1]) == here


@pytest.mark.parametrize("text", ["hello world", "Why is the sky blue?\nBecause.", "héllo wörld ✓ 日本語 🦙"])
def test_tokenize_detokenize_round_trip(tiny_llm: Llama, text: str) -> None:
    tokens = tiny_llm.tokenize(text.encode(), add_bos=False)
    # add_space_prefix: the tokenizer adds "▁" in front, detokenize gives it back
    assert tiny_llm.detokenize(tokens) == b" " + text.encode()
    if not text.isascii():
        assert any(5 <= t < 261 for t in tokens)  # byte fallback did the non-ASCII part
    assert tiny_llm.tokenize(text.encode())[0] == 1  # add_bos


def test_special_tokens_parse(tiny_llm: Llama) -> None:
    tokens = tiny_llm.tokenize(b"<|im_start|>user\nhi<|im_end|>", add_bos=False, special=True)
    assert tokens[0] == 3 and tokens[-1] == 4


def test_chat_completion_uses_the_chatml_template(tiny_llm: Llama) -> None:
    msgs: list[ChatCompletionRequestMessage] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    # without stream=True the result is one response, not an iterator of chunks
    r = cast(
        "CreateChatCompletionResponse", tiny_llm.create_chat_completion(messages=msgs, max_tokens=12, temperature=0)
    )
    prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)
    prompt += "<|im_start|>assistant\n"
    # llama-cpp-python renders GGUF Jinja templates and adds no BOS of its own
    # (this template has none), so the prompt is exactly the ChatML text.
    expected = tiny_llm.tokenize(prompt.encode(), add_bos=False, special=True)
    assert r["usage"]["prompt_tokens"] == len(expected)
    assert r["usage"]["completion_tokens"] == 12
    assert r["choices"][0]["finish_reason"] == "length"
    content = r["choices"][0]["message"]["content"]
    assert content is not None and _printable(content)


def test_bert_embeds(bert_model_path: Path) -> None:
    llm = llama_cpp.Llama(model_path=str(bert_model_path), embedding=True, n_ctx=512, n_threads=1, verbose=False)
    try:
        a, b, c = llm.embed("hello"), llm.embed("hello"), llm.embed("the sky is blue")
    finally:
        llm.close()
    v = np.asarray(a)
    assert v.shape == (gm.PRESETS["tiny"].n_embd,)
    assert np.isfinite(v).all() and np.abs(v).max() > 0
    assert a == b and a != c


def test_bert_reranker_scores_pairs(bert_reranker_path: Path) -> None:
    from server.runner.backend import Batch, Context, ContextSpec, Model  # noqa: PLC0415 (needs llama_cpp)

    r = gguf.GGUFReader(bert_reranker_path)
    assert _field(r, "bert.pooling_type") == gguf.PoolingType.RANK
    assert {"cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias"} <= {t.name for t in r.tensors}
    model = Model(str(bert_reranker_path), n_gpu_layers=0, main_gpu=0, use_mmap=None)
    ctx = Context(model, ContextSpec(n_ctx=256, n_seq_max=2, n_batch=256, n_ubatch=256, n_threads=1, embeddings=True))
    batch = Batch(256)
    try:
        assert model.n_cls_out == 1 and ctx.pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK
        for seq, text in enumerate(("cats eat fish", "the sky is blue")):
            for pos, token in enumerate(model.tokenize(text, add_special=True, parse_special=False)):
                batch.add(token, pos, seq, True)
        assert ctx.decode(batch) == 0
        a, b = ctx.embedding_seq(0), ctx.embedding_seq(1)
        assert a is not None and b is not None and a.shape == b.shape == (1,)
        assert np.isfinite([a[0], b[0]]).all() and a[0] != b[0]
    finally:
        batch.close()
        ctx.close()
        model.close()


def test_broken_files_are_rejected(truncated_gguf_path: Path, bad_magic_path: Path, tiny_model_path: Path) -> None:
    size = tiny_model_path.stat().st_size
    assert truncated_gguf_path.stat().st_size < size
    assert bad_magic_path.stat().st_size == size
    for path in (truncated_gguf_path, bad_magic_path):
        with pytest.raises(ValueError):
            gguf.GGUFReader(path)
    # llama.cpp might abort the process on a bad file: try it in a child
    code = (
        "import sys, llama_cpp\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        llama_cpp.Llama(model_path=p, verbose=False)\n"
        "        print('loaded', p)\n"
        "    except ValueError:\n"
        "        print('ValueError', p)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(truncated_gguf_path), str(bad_magic_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ValueError", str(truncated_gguf_path), "ValueError", str(bad_magic_path)]


def test_default_broken_files_need_no_source(tmp_path: Path) -> None:
    for path in (gm.write_truncated_gguf(tmp_path / "t.gguf"), gm.write_bad_magic(tmp_path / "b.gguf")):
        with pytest.raises(ValueError):
            gguf.GGUFReader(path)


# ---------------------------------------------------------------------------
# bench presets (slow: ~5 s and ~500 MB each)
# ---------------------------------------------------------------------------

bench_only = pytest.mark.skipif(os.environ.get("POLLAMA_TEST_BENCH") != "1", reason="set POLLAMA_TEST_BENCH=1")


@pytest.mark.bench_model
@bench_only
@pytest.mark.parametrize(
    "fixture,preset,size_mb",
    [
        ("bench_model_path", "bench", (470, 510)),
        ("bench_q8_model_path", "bench-q8", (250, 275)),
    ],
)
def test_bench_models(request: pytest.FixtureRequest, fixture: str, preset: str, size_mb: tuple[int, int]) -> None:
    path: Path = request.getfixturevalue(fixture)
    lo, hi = size_mb
    assert lo * 1e6 <= path.stat().st_size <= hi * 1e6
    r = gguf.GGUFReader(path)
    p = gm.PRESETS[preset]
    assert _field(r, "llama.block_count") == p.n_layer
    assert _field(r, "llama.embedding_length") == p.n_embd
    n_params = sum(int(t.n_elements) for t in r.tensors)
    assert 240e6 <= n_params <= 260e6
    assert _tensor(r, "blk.0.ffn_down.weight").tensor_type.name == p.file_type
