"""Rerank requests and answers: `/api/rerank` and the Jina/Cohere `/v1/rerank` shape.

Both take `{model, query, documents, top_n}`; a document is a string or, as Jina and
Cohere also accept, an object with a `text`. The answer lists the documents best first,
each with its index in the request and its relevance score: the reranker's raw score for
the pair, as llama-server's `/v1/rerank` reports it (`format_response_rerank`), not
squashed into [0, 1], so scores of one model compare across requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.errors import BadRequest
from server.inference.requests import parse_keep_alive_field, parse_options
from server.jsontypes import json_type, typed_field
from server.options import Options


@dataclass(frozen=True)
class RerankRequest:
    model: str
    query: str
    documents: tuple[str, ...]
    top_n: int | None = None
    return_documents: bool = True
    truncate: bool = True
    options: Options = field(default_factory=dict)
    keep_alive: float | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, return_documents: bool = True) -> RerankRequest:
        """`return_documents` is the route's default: the native answer carries each document,
        the `/v1` one (llama-server's) only when asked."""
        model = typed_field(body, "model", str, "")
        if not model:
            raise BadRequest("model is required")
        query = body.get("query")
        if not isinstance(query, str):
            raise BadRequest(f"invalid value for field 'query': expected string, got {json_type(query)}")
        raw = body.get("documents")
        if not isinstance(raw, list):
            raise BadRequest(f"invalid value for field 'documents': expected an array, got {json_type(raw)}")
        documents = tuple(_document(d, i) for i, d in enumerate(raw))
        top_n = typed_field(body, "top_n", int)
        if top_n is not None and top_n < 1:
            raise BadRequest("top_n must be a positive integer")
        return cls(
            model=model,
            query=query,
            documents=documents,
            top_n=top_n,
            return_documents=typed_field(body, "return_documents", bool, return_documents),
            truncate=typed_field(body, "truncate", bool, True),
            options=parse_options(body.get("options")),
            keep_alive=parse_keep_alive_field(body),
        )


def _document(value: Any, index: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("text"), str):
        return str(value["text"])
    raise BadRequest(f"invalid document at index {index}: expected a string or an object with a 'text' string")


@dataclass(frozen=True)
class Ranked:
    index: int
    relevance_score: float
    document: str


def ranking(documents: tuple[str, ...], scores: list[float], top_n: int | None) -> list[Ranked]:
    """The documents best first (ties keep the request's order), at most `top_n` of them."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [Ranked(i, scores[i], documents[i]) for i in order[: top_n or len(order)]]
