"""Typed, validated `/api/tokenize` and `/api/detokenize` requests.

Field names follow llama-server's `/tokenize` (`content`, `add_special`,
`parse_special`, `with_pieces`) and `/detokenize` (`tokens`), with `model`,
`options` and `keep_alive` as on every native route, so a client written for
either server reads naturally here. Range checks that need the model (a token
id beyond the vocabulary) happen in the service, once the runner says how
large the vocabulary is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.errors import BadRequest
from server.inference.requests import parse_keep_alive_field, parse_options
from server.jsontypes import json_type, typed_field
from server.options import Options


def _model(body: Mapping[str, Any]) -> str:
    model = typed_field(body, "model", str, "")
    if not model:
        raise BadRequest("model is required")
    return str(model)


@dataclass(frozen=True)
class TokenizeRequest:
    model: str
    content: str
    #: BOS (and EOS/SEP where the model's tokenizer adds them), as llama.cpp's `add_special`.
    add_special: bool = True
    #: Control tokens written as text (`<|im_start|>`) become their ids, as in a rendered prompt.
    parse_special: bool = True
    with_pieces: bool = False
    options: Options = field(default_factory=dict)
    keep_alive: float | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TokenizeRequest:
        return cls(
            model=_model(body),
            content=typed_field(body, "content", str, ""),
            add_special=typed_field(body, "add_special", bool, True),
            parse_special=typed_field(body, "parse_special", bool, True),
            with_pieces=typed_field(body, "with_pieces", bool, False),
            options=parse_options(body.get("options")),
            keep_alive=parse_keep_alive_field(body),
        )


@dataclass(frozen=True)
class DetokenizeRequest:
    model: str
    tokens: tuple[int, ...]
    options: Options = field(default_factory=dict)
    keep_alive: float | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DetokenizeRequest:
        raw = typed_field(body, "tokens", list, [])
        for i, token in enumerate(raw):
            if isinstance(token, bool) or not isinstance(token, int):
                raise BadRequest(f"invalid value for field 'tokens': item {i} is {json_type(token)}, expected integer")
        return cls(
            model=_model(body),
            tokens=tuple(raw),
            options=parse_options(body.get("options")),
            keep_alive=parse_keep_alive_field(body),
        )


def out_of_vocabulary(tokens: tuple[int, ...], n_vocab: int) -> BadRequest | None:
    """The 400 for the first id the model has no token for (llama.cpp would read past its
    vocabulary: llama-server's `validate_tokens` refuses them the same way), or None."""
    for i, token in enumerate(tokens):
        if not 0 <= token < n_vocab:
            return BadRequest(
                f"invalid token {token} at index {i}: the model's vocabulary has {n_vocab} tokens (0 to {n_vocab - 1})"
            )
    return None
