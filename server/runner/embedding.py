"""Embeddings: batched inputs through a context made for them, Ollama's truncation and
normalization rules (Ollama's `server/routes.go` `EmbedHandler` and `normalize`; `EmbeddingsHandler` does not normalize).

An embedding model (BERT and friends, or a model loaded with `embedding`) has only this
context. A generation model gets one lazily on its first embed request, with LAST pooling
(what Ollama's runner effectively returns for a model without a pooling layer: the last
token's hidden state), so /api/embed works on completion models without a reload.
Inputs are packed several to a decode, one sequence id each; the KV cache is cleared after
every batch since nothing here is reused. A request is an `EmbedJob`, run a decode at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import llama_cpp as L
import numpy as np

from server.runner import messages as m
from server.runner.backend import Batch, Context, ContextSpec, Model
from server.runner.limits import MAX_EMBED_SEQS, embedding_shape

MAX_SEQS_PER_BATCH = MAX_EMBED_SEQS


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
        # n_seq_max never above the batch (llama.cpp aborts) and the batch a multiple of
        # n_seq_max (a model without a KV cache aborts otherwise): see `limits.embedding_shape`
        shape = embedding_shape(settings.n_ctx)
        self.n_ctx = shape.n_ctx  # per input
        self.capacity = shape.capacity  # per decode
        self.ctx = Context(
            model,
            ContextSpec(
                n_ctx=shape.capacity,
                n_seq_max=shape.n_seq_max,
                n_batch=shape.capacity,
                n_ubatch=shape.capacity,  # non-causal models need a whole input in one ubatch
                n_threads=settings.n_threads,
                flash_attention=settings.flash_attention,
                embeddings=True,
                pooling=L.LLAMA_POOLING_TYPE_UNSPECIFIED if settings.model_pooling else L.LLAMA_POOLING_TYPE_LAST,
                kv_unified=True,
            ),
        )
        self.batch = Batch(shape.capacity)
        ends = {t for t in (model.eos, _sep(model)) if t is not None}
        self._end_tokens = ends if (model.add_eos or model.add_sep) else set()

    def tokenize(self, inputs: list[str], truncate: bool) -> list[list[int]]:
        """Every input's tokens, cut to the context (or EmbedError without `truncate`)."""
        out = []
        for text in inputs:
            tokens = self.model.tokenize(text, add_special=True, parse_special=True)
            out.append(fit_tokens(tokens, self.n_ctx, truncate, self._end_tokens))
        return out

    def next_group(self, tokenized: list[list[int]], start: int) -> list[list[int]]:
        """The inputs from `start` that one decode takes: up to MAX_SEQS_PER_BATCH, within the context."""
        group: list[list[int]] = []
        used = 0
        for tokens in tokenized[start : start + MAX_SEQS_PER_BATCH]:
            size = max(len(tokens), 1)
            if group and used + size > self.capacity:
                break
            group.append(tokens)
            used += size
        return group

    def decode(self, group: list[list[int]]) -> list[np.ndarray]:
        """One decode of `group`, one sequence id per input; their pooled vectors, in order."""
        self.batch.clear()
        for seq, tokens in enumerate(group):
            for pos, token in enumerate(tokens or [self.model.bos if self.model.bos is not None else 0]):
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


class EmbedJob:
    """One request's inputs, embedded one decode at a time.

    The engine runs one step of one job between its generation steps, taking
    the jobs in turn: a request with thousands of inputs neither stalls the
    streams of a model that also generates nor keeps a one-input request
    queued behind it waiting for all of them.
    """

    def __init__(
        self, embedder: Embedder, inputs: list[str], *, truncate: bool, normalize: bool, dimensions: int | None
    ) -> None:
        self._embedder = embedder
        self.tokenized = embedder.tokenize(inputs, truncate)
        self.normalize = normalize
        self.dimensions = dimensions
        self.vectors: list[list[float]] = []

    @property
    def done(self) -> bool:
        return len(self.vectors) == len(self.tokenized)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(t) for t in self.tokenized)

    def result(self, rid: int) -> m.Embedded:
        return m.Embedded(rid, tuple(tuple(v) for v in self.vectors), self.prompt_tokens)

    def step(self) -> None:
        """Embed the next group of inputs (EmbedFailure if the model gives no usable vector);
        nothing once all are done, so a request without inputs needs no decode."""
        if self.done:
            return
        group = self._embedder.next_group(self.tokenized, len(self.vectors))
        for vector in self._embedder.decode(group):
            self.vectors.append(finish_vector(vector, normalize=self.normalize, dimensions=self.dimensions))


def _sep(model: Model) -> int | None:
    token = int(L.llama_vocab_sep(model.vocab))
    return None if token < 0 else token
