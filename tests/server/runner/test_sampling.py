"""The sampler chain's greedy shortcut against llama.cpp's own greedy sampler, in process.

`SamplerChain.sample` reads the argmax of a logits row itself when decoding is plain greedy
(server/runner/sampling.py): it must pick exactly what llama.cpp's greedy sampler picks, row
by row of a batched decode, and leave every other chain to llama.cpp.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.gguf_models import cached_model

L = pytest.importorskip("llama_cpp")

from server.runner.backend import Batch, Context, ContextSpec, Model  # noqa: E402 (needs llama_cpp)
from server.runner.messages import CompletionRequest  # noqa: E402
from server.runner.sampling import SamplerChain, SamplerError  # noqa: E402

ROWS = 4


@pytest.fixture(scope="module")
def decoded() -> Iterator[tuple[Model, Context]]:
    """A context right after a decode of one token in each of 4 sequences: 4 logits rows."""
    model = Model(str(cached_model("tiny", predictable=False)), n_gpu_layers=0, main_gpu=0, use_mmap=None)
    ctx = Context(model, ContextSpec(n_ctx=ROWS * 64, n_seq_max=ROWS, n_batch=64, n_ubatch=64, n_threads=1))
    batch = Batch(64)
    for seq in range(ROWS):
        batch.add(10 + 97 * seq, 0, seq, True)
    assert ctx.decode(batch) == 0
    yield model, ctx
    batch.close()
    ctx.close()
    model.close()


def llama_greedy(ctx: Context, row: int) -> int:
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
    try:
        return int(L.llama_sampler_sample(chain, ctx.ptr, row))
    finally:
        L.llama_sampler_free(chain)


def test_plain_greedy_picks_what_llama_cpp_picks_in_every_row(decoded: tuple[Model, Context]) -> None:
    model, ctx = decoded
    chain = SamplerChain(model.vocab, model.n_vocab, CompletionRequest(prompt="x", temperature=0), n_ctx=64)
    try:
        assert chain.plain_greedy
        picks = [chain.sample(ctx.ptr, row) for row in range(ROWS)]
    finally:
        chain.close()
    assert picks == [llama_greedy(ctx, row) for row in range(ROWS)]
    assert len(set(picks)) > 1  # the rows differ, so a wrong row would show


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0, "repeat_penalty": 1.3},
        {"temperature": 0, "frequency_penalty": 0.5},
        {"temperature": 0, "grammar": 'root ::= "a"'},
        {"temperature": 0.8, "seed": 3},
    ],
)
def test_other_chains_stay_with_llama_cpp(decoded: tuple[Model, Context], options: dict[str, object]) -> None:
    model, _ = decoded
    chain = SamplerChain(model.vocab, model.n_vocab, CompletionRequest(prompt="x", **options), n_ctx=64)  # type: ignore[arg-type]
    try:
        assert not chain.plain_greedy
    finally:
        chain.close()


def test_a_row_without_logits_is_an_error_not_a_crash(decoded: tuple[Model, Context]) -> None:
    model, ctx = decoded
    chain = SamplerChain(model.vocab, model.n_vocab, CompletionRequest(prompt="x", temperature=0), n_ctx=64)
    try:
        with pytest.raises(SamplerError, match="no logits"):
            chain.sample(ctx.ptr, ROWS + 5)
    finally:
        chain.close()
