"""Embeddings: batched inputs through a context made for them, Ollama's truncation and
normalization rules (§2.4, §2.5).

An embedding model (BERT and friends, or a model loaded with `embedding`) has only this
context. A generation model gets one lazily on its first embed request, with LAST pooling
(what Ollama's runner effectively returns for a model without a pooling layer: the last
token's hidden state), so /api/embed works on completion models without a reload.
Inputs are packed several to a decode, one sequence id each; the KV cache is cleared after
every batch since nothing here is reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import llama_cpp as L

from server.runner.backend import Batch, Context, ContextSpec, Model

MAX_SEQS_PER_BATCH = 16


class EmbedError(ValueError):
    """A request the caller got wrong (too long without truncation); maps to 400."""


class EmbedFailure(RuntimeError):
    """The model produced no usable vector (NaN/Inf, decode failure)."""


@dataclass(frozen=True)
class EmbedSettings:
    n_ctx: int  # per input
    n_threads: int
    flash_attention: bool | None = None
    model_pooling: bool = True  # False: force LAST pooling (generation models)


def fit_tokens(tokens: list[int], limit: int, truncate: bool, end_tokens: set[int]) -> list[int]:
    """Cut an input to `limit` tokens, keeping a closing EOS/SEP the tokenizer added."""
    if len(tokens) <= limit:
        return tokens
    if not truncate:
        raise EmbedError("the input length exceeds the context length")
    if limit >= 2 and tokens[-1] in end_tokens:
        return tokens[: limit - 1] + [tokens[-1]]
    return tokens[:limit]


def finish_vector(vector: np.ndarray, *, normalize: bool, dimensions: int | None) -> list[float]:
    """Ollama: L2-normalize; `dimensions` cuts the vector and normalizes it again."""
    v = vector.astype(np.float32, copy=False)
    if not np.all(np.isfinite(v)):
        raise EmbedFailure("the embedding contains NaN or Inf values")
    if normalize:
        v = _l2(v)
    if dimensions is not None and 0 < dimensions < v.shape[0]:
        v = v[:dimensions]
        if normalize:
            v = _l2(v)
    return [float(x) for x in v.tolist()]


def _l2(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v.astype(np.float64)))
    return v if norm == 0.0 else (v / norm).astype(np.float32)


class Embedder:
    def __init__(self, model: Model, settings: EmbedSettings) -> None:
        self.model = model
        self.n_ctx = settings.n_ctx
        self.ctx = Context(model, ContextSpec(
            n_ctx=settings.n_ctx,
            n_seq_max=MAX_SEQS_PER_BATCH,
            n_batch=settings.n_ctx,
            n_ubatch=settings.n_ctx,  # non-causal models need a whole input in one ubatch
            n_threads=settings.n_threads,
            flash_attention=settings.flash_attention,
            embeddings=True,
            pooling=L.LLAMA_POOLING_TYPE_UNSPECIFIED if settings.model_pooling else L.LLAMA_POOLING_TYPE_LAST,
            kv_unified=True,
        ))
        self.batch = Batch(settings.n_ctx)
        ends = {t for t in (model.eos, _sep(model)) if t is not None}
        self._end_tokens = ends if (model.add_eos or model.add_sep) else set()

    def embed(self, inputs: list[str], *, truncate: bool, normalize: bool,
              dimensions: int | None) -> tuple[list[list[float]], int]:
        tokenized = []
        for text in inputs:
            tokens = self.model.tokenize(text, add_special=True, parse_special=True)
            tokenized.append(fit_tokens(tokens, self.n_ctx, truncate, self._end_tokens))
        vectors: list[list[float] | None] = [None] * len(tokenized)
        order = list(range(len(tokenized)))
        start = 0
        while start < len(order):
            group: list[int] = []
            used = 0
            while start < len(order) and len(group) < MAX_SEQS_PER_BATCH:
                size = max(len(tokenized[order[start]]), 1)
                if group and used + size > self.n_ctx:
                    break
                group.append(order[start])
                used += size
                start += 1
            for idx, vec in zip(group, self._run(group, tokenized)):
                vectors[idx] = finish_vector(vec, normalize=normalize, dimensions=dimensions)
        return [v for v in vectors if v is not None], sum(len(t) for t in tokenized)

    def _run(self, group: list[int], tokenized: list[list[int]]) -> list[np.ndarray]:
        self.batch.clear()
        for seq, idx in enumerate(group):
            tokens = tokenized[idx] or [self.model.bos if self.model.bos is not None else 0]
            for pos, token in enumerate(tokens):
                self.batch.add(token, pos, seq, True)
        try:
            rc = self.ctx.decode(self.batch)
            if rc != 0:
                raise EmbedFailure(f"llama_decode failed with status {rc}")
            out = []
            for seq in range(len(group)):
                vec = self.ctx.embedding_seq(seq)
                if vec is None:
                    raise EmbedFailure("the model returned no pooled embedding")
                out.append(vec)
            return out
        finally:
            self.ctx.clear()

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()


def _sep(model: Model) -> int | None:
    token = int(L.llama_vocab_sep(model.vocab))
    return None if token < 0 else token
