"""One llama.cpp sampler chain per sequence, built from Ollama's options, and logprobs.

Order follows llama.cpp's common sampler (which Ollama's runner uses):
penalties, then top-k → typical → top-p → min-p → temperature → draw; a
temperature of 0 means greedy. Each sequence owns its chain (its own RNG, its
own penalty history and grammar state), which is what makes a batched stream
produce exactly what it would alone.

A grammar (`format`) is not a link of the chain but a check after it, as in
Ollama's sampler and llama.cpp's common one: the token the chain draws from
the raw logits is tested alone, and only when the grammar rejects it is the
grammar applied to the whole vocabulary and the token drawn again. Applying
it to every token of the vocabulary at every step cost 3-6 ms per token with
a 32k vocabulary (a quarter to a half of a small model's step); most drawn
tokens pass, so the check is nearly free. Greedy output is the same either
way (the best token, if allowed, is also the best allowed one).

Plain greedy decoding (temperature 0, no penalty, no grammar) skips the chain: the token is
the first maximum of the logits row, read in place with numpy, which is what llama.cpp's
greedy sampler picks (`llama_sampler_greedy_apply` keeps the first of equal logits) without
building its 32k-entry candidate array: 18 µs a sequence instead of 69 µs on the bench
model, a third of a millisecond per step at 8 streams (issue 22's per-step overhead).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import llama_cpp as L
import numpy as np

from server.runner.limits import sampler_float, sampler_int
from server.runner.messages import CompletionRequest


class SamplerError(ValueError):
    pass


@dataclass(frozen=True)
class SamplingParams:
    """A request's sampling options as llama.cpp's samplers can take them (`limits`): the
    penalty window within the context (-1, or any negative, is the whole context, as in
    Ollama), top-k within the vocabulary, floats finite in float32."""

    last_n: int
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    temperature: float
    top_k: int
    typical_p: float
    top_p: float
    min_p: float

    @classmethod
    def of(cls, req: CompletionRequest, *, n_vocab: int, n_ctx: int) -> SamplingParams:
        window = max(n_ctx, 0)
        return cls(
            last_n=window if req.repeat_last_n < 0 else sampler_int(req.repeat_last_n, 0, window),
            repeat_penalty=sampler_float(req.repeat_penalty, 1.0),
            frequency_penalty=sampler_float(req.frequency_penalty, 0.0),
            presence_penalty=sampler_float(req.presence_penalty, 0.0),
            temperature=sampler_float(req.temperature, 0.8),
            top_k=sampler_int(req.top_k, 0, max(n_vocab, 0)),
            typical_p=sampler_float(req.typical_p, 1.0),
            top_p=sampler_float(req.top_p, 0.9),
            min_p=sampler_float(req.min_p, 0.0),
        )


class SamplerChain:
    """Owns the native chain; `sample` draws from output row `i` of the last decode and
    records the token in every stateful sampler of the chain."""

    def __init__(self, vocab: Any, n_vocab: int, req: CompletionRequest, *, n_ctx: int) -> None:
        self.ptr = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        self._penalties: Any = None
        self._grammar: GrammarCheck | None = None
        self._argmax_width = 0  # n_vocab when the chain is plain greedy: `sample` takes the argmax
        try:
            if req.grammar:
                self._grammar = GrammarCheck(vocab, req.grammar, n_vocab)
            p = SamplingParams.of(req, n_vocab=n_vocab, n_ctx=n_ctx)
            if p.last_n and (p.repeat_penalty != 1.0 or p.frequency_penalty or p.presence_penalty):
                # llama.cpp 0.3.36's prototype leads with n_vocab (the backend sampler sizes
                # its buffers by it); leaving it out shifts penalty_last_n into garbage
                self._penalties = L.llama_sampler_init_penalties(
                    n_vocab, p.last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty
                )
                L.llama_sampler_chain_add(self.ptr, self._penalties)
            self.penalty_window = p.last_n
            if p.temperature <= 0:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_greedy())
                if self._penalties is None and self._grammar is None:
                    self._argmax_width = n_vocab
                return
            if p.top_k > 0:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_top_k(p.top_k))
            if 0 < p.typical_p < 1:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_typical(p.typical_p, 1))
            if 0 < p.top_p < 1:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_top_p(p.top_p, 1))
            if p.min_p > 0:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_min_p(p.min_p, 1))
            L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_temp(p.temperature))
            seed = req.seed if req.seed >= 0 else L.LLAMA_DEFAULT_SEED
            L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        except BaseException:
            self.close()
            raise

    @property
    def plain_greedy(self) -> bool:
        """Whether `sample` takes the logits' argmax without running the chain."""
        return self._argmax_width > 0

    def prime(self, prompt: list[int]) -> None:
        """Penalties look at the prompt's last tokens too (not the grammar: it starts fresh)."""
        if self._penalties is None or self.penalty_window <= 0:
            return
        for token in prompt[-self.penalty_window :]:
            L.llama_sampler_accept(self._penalties, token)

    def sample(self, ctx: Any, i: int) -> int:
        if self._argmax_width:
            row = L.llama_get_logits_ith(ctx, i)
            if not row:
                raise SamplerError(f"output row {i} has no logits")
            return int(np.ctypeslib.as_array(row, shape=(self._argmax_width,)).argmax())
        if self._grammar is None:
            return int(L.llama_sampler_sample(self.ptr, ctx, i))
        return self._grammar.sample(self.ptr, L.llama_get_logits_ith(ctx, i))

    def close(self) -> None:
        if self._grammar is not None:
            self._grammar.close()
            self._grammar = None
        if self.ptr:
            L.llama_sampler_free(self.ptr)
            self.ptr = None


class GrammarCheck:
    """A grammar sampler used as a check on the chain's draw (see the module docstring)."""

    def __init__(self, vocab: Any, grammar: str, n_vocab: int) -> None:
        self.ptr = L.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not self.ptr:
            raise SamplerError("invalid grammar")
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._candidates = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._one = (L.llama_token_data * 1)()

    def sample(self, chain: Any, logits: Any) -> int:
        """Draw with `chain` from the raw logits; redraw with the grammar applied only if
        it rejects that token. The grammar and the chain then both record the token."""
        token = self._draw(chain, logits, constrained=False)
        if not self._allows(token):
            token = self._draw(chain, logits, constrained=True)
        L.llama_sampler_accept(self.ptr, token)
        L.llama_sampler_accept(chain, token)
        return token

    def _draw(self, chain: Any, logits: Any, *, constrained: bool) -> int:
        n = self._candidates.shape[0]
        self._candidates["id"] = self._ids
        self._candidates["logit"] = np.ctypeslib.as_array(logits, shape=(n,))
        self._candidates["p"] = 0.0
        data = self._candidates.ctypes.data_as(ctypes.POINTER(L.llama_token_data))
        array = L.llama_token_data_array(data, n, -1, False)
        if constrained:
            L.llama_sampler_apply(self.ptr, ctypes.byref(array))
        L.llama_sampler_apply(chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise SamplerError("the sampler chain selected no token")
        return int(array.data[array.selected].id)

    def _allows(self, token: int) -> bool:
        self._one[0] = L.llama_token_data(token, 1.0, 0.0)
        single = L.llama_token_data_array(self._one, 1, -1, False)
        L.llama_sampler_apply(self.ptr, ctypes.byref(single))
        return not math.isinf(self._one[0].logit)

    def close(self) -> None:
        if self.ptr:
            L.llama_sampler_free(self.ptr)
            self.ptr = None


#: numpy's view of llama.cpp's `llama_token_data` {int32 id; float logit; float p}.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


@dataclass(frozen=True)
class TokenText:
    """How logprob entries show a token: its text (lossy for split UTF-8) and its bytes."""

    piece: Callable[[int], bytes]

    def entry(self, token: int, logprob: float) -> dict[str, Any]:
        raw = self.piece(token)
        return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}


def logprob_entry(logits: np.ndarray, token: int, top_n: int, text: TokenText) -> dict[str, Any]:
    """Ollama's logprob object for the chosen token, from the raw (pre-sampling) logits."""
    row = logits.astype(np.float64, copy=False)
    peak = float(row.max())
    lse = peak + float(np.log(np.exp(row - peak).sum()))
    entry = text.entry(token, float(row[token]) - lse)
    if top_n > 0:
        n = min(top_n, row.shape[0])
        idx = np.argpartition(-row, n - 1)[:n]
        idx = idx[np.argsort(-row[idx], kind="stable")]
        entry["top_logprobs"] = [text.entry(int(t), float(row[t]) - lse) for t in idx]
    return entry
