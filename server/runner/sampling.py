"""One llama.cpp sampler chain per sequence, built from Ollama's options, and logprobs.

Order follows llama.cpp's common sampler (which Ollama's runner uses): grammar,
penalties, then top-k → typical → top-p → min-p → temperature → draw; a
temperature of 0 means greedy. Each sequence owns its chain (its own RNG, its
own penalty history and grammar state), which is what makes a batched stream
produce exactly what it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import llama_cpp as L

from server.runner.messages import CompletionRequest


class SamplerError(ValueError):
    pass


class SamplerChain:
    """Owns the native chain; `sample` draws from output row `i` of the last decode and
    records the token in every stateful sampler of the chain."""

    def __init__(self, vocab: Any, n_vocab: int, req: CompletionRequest, *, n_ctx: int) -> None:
        self.ptr = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        self._penalties: Any = None
        try:
            if req.grammar:
                grammar = L.llama_sampler_init_grammar(vocab, req.grammar.encode("utf-8"), b"root")
                if not grammar:
                    raise SamplerError("invalid grammar")
                L.llama_sampler_chain_add(self.ptr, grammar)
            last_n = n_ctx if req.repeat_last_n < 0 else req.repeat_last_n
            if last_n and (req.repeat_penalty != 1.0 or req.frequency_penalty or req.presence_penalty):
                # llama.cpp 0.3.36's prototype leads with n_vocab (the backend sampler sizes
                # its buffers by it); leaving it out shifts penalty_last_n into garbage
                self._penalties = L.llama_sampler_init_penalties(
                    n_vocab, last_n, req.repeat_penalty, req.frequency_penalty, req.presence_penalty)
                L.llama_sampler_chain_add(self.ptr, self._penalties)
            self.penalty_window = last_n
            if req.temperature <= 0:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_greedy())
                return
            if req.top_k > 0:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_top_k(req.top_k))
            if 0 < req.typical_p < 1:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_typical(req.typical_p, 1))
            if 0 < req.top_p < 1:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_top_p(req.top_p, 1))
            if req.min_p > 0:
                L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_min_p(req.min_p, 1))
            L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_temp(req.temperature))
            seed = req.seed if req.seed >= 0 else L.LLAMA_DEFAULT_SEED
            L.llama_sampler_chain_add(self.ptr, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        except BaseException:
            self.close()
            raise

    def prime(self, prompt: list[int]) -> None:
        """Penalties look at the prompt's last tokens too (not the grammar: it starts fresh)."""
        if self._penalties is None:
            return
        for token in prompt[-self.penalty_window:]:
            L.llama_sampler_accept(self._penalties, token)

    def sample(self, ctx: Any, i: int) -> int:
        return int(L.llama_sampler_sample(self.ptr, ctx, i))

    def close(self) -> None:
        if self.ptr:
            L.llama_sampler_free(self.ptr)
            self.ptr = None


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
