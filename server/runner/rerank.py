"""Reranking: a cross-encoder scores each (query, document) pair in one forward pass.

A reranker GGUF (BGE, Jina, mxbai… converted by llama.cpp) is an embedding model whose
pooling is RANK: its classification head turns the pooled state of a sequence into
`n_cls_out` scores, the first being the pair's relevance. The pairs are laid out as
llama-server lays them out (`tools/server/server-common.cpp` `format_prompt_rerank`): the
model's own `rerank` chat template with `{query}` and `{document}` when it has one, else
[BOS] query [EOS] [SEP] document [EOS], each special token only where the vocabulary adds
it. The pairs then go through the embedding context a decode at a time, like an embed
request, in the engine's turn-taking (`EmbedJob`).
"""

from __future__ import annotations

import math

import llama_cpp as L

from server.runner import messages as m
from server.runner.backend import Model
from server.runner.embedding import Embedder, EmbedError, EmbedFailure, fit_tokens

NOT_A_RERANKER = (
    "this model cannot rerank: it has no classification head (llama.cpp's rank pooling); "
    "use a reranker model such as bge-reranker"
)


def rerank_template(model: Model) -> str | None:
    """The model's `tokenizer.chat_template.rerank`, if its converter wrote one."""
    raw = L.llama_model_chat_template(model.ptr, b"rerank")  # bytes or None (a c_char_p)
    return raw.decode("utf-8", errors="replace") if raw else None


def pair_tokens(model: Model, template: str | None, query: str, document: str) -> list[int]:
    """One (query, document) pair as the model reads it (see the module docstring)."""
    if template is not None:
        text = template.replace("{query}", query).replace("{document}", document)
        return model.tokenize(text, add_special=False, parse_special=True)
    q = model.tokenize(query, add_special=False, parse_special=False)
    d = model.tokenize(document, add_special=False, parse_special=False)
    eos = model.eos if model.eos is not None else _sep(model)
    out: list[int] = []
    if model.add_bos and model.bos is not None:
        out.append(model.bos)
    out += q
    if model.add_eos and eos is not None:
        out.append(eos)
    sep = _sep(model)
    if model.add_sep and sep is not None:
        out.append(sep)
    out += d
    if model.add_eos and eos is not None:
        out.append(eos)
    return out


class RerankJob:
    """One request's pairs, scored one decode at a time (the engine's `EmbedJob` protocol:
    `tokenized`, `vectors`, `done`, `step`, `result`)."""

    def __init__(self, embedder: Embedder, query: str, documents: list[str], *, truncate: bool) -> None:
        self._embedder = embedder
        model = embedder.model
        template = rerank_template(model)
        ends = {t for t in (model.eos, _sep(model)) if t is not None}
        self.tokenized: list[list[int]] = []
        for document in documents:
            tokens = pair_tokens(model, template, query, document)
            try:
                self.tokenized.append(fit_tokens(tokens, embedder.n_ctx, truncate, ends if model.add_eos else set()))
            except EmbedError:
                raise EmbedError(
                    f"query and document {len(self.tokenized)} take {len(tokens)} tokens, "
                    f"more than the context length ({embedder.n_ctx})"
                ) from None
        self.vectors: list[float] = []  # the scores so far, in document order

    @property
    def done(self) -> bool:
        return len(self.vectors) == len(self.tokenized)

    def step(self) -> None:
        if self.done:
            return
        group = self._embedder.next_group(self.tokenized, len(self.vectors))
        for scores in self._embedder.decode(group):
            score = float(scores[0])
            if not math.isfinite(score):
                raise EmbedFailure("the reranker produced a NaN or infinite score")
            self.vectors.append(score)

    def result(self, rid: int) -> m.Ranked:
        return m.Ranked(rid, tuple(self.vectors), sum(len(t) for t in self.tokenized))


def _sep(model: Model) -> int | None:
    token = int(L.llama_vocab_sep(model.vocab))
    return None if token < 0 else token
