"""Typed, validated generate/chat/embed requests.

The native handlers build these from JSON; the OpenAI and Anthropic layers
build them from their own shapes. Validation that needs no model (types,
ranges, formats) happens here, so every surface rejects the same bad input
with the same words.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from server.duration import DurationError, parse_keep_alive
from server.errors import BadRequest
from server.inference.tool_choice import AUTO, ToolChoice
from server.jsontypes import JSONObject, typed_field
from server.options import Options

THINK_LEVELS = ("low", "medium", "high", "max")


def parse_keep_alive_field(body: Mapping[str, Any]) -> float | None:
    if "keep_alive" not in body or body["keep_alive"] is None:
        return None
    try:
        return parse_keep_alive(body["keep_alive"])
    except DurationError as exc:
        raise BadRequest(str(exc)) from None


def parse_think(value: Any) -> bool | str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in THINK_LEVELS:
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    raise BadRequest(f'invalid think value: {value!r} (expected true, false, "low", "medium", "high" or "max")')


def parse_format(value: Any) -> str | JSONObject | None:
    """`"json"`, a JSON Schema object, or nothing (`null`/`""`)."""
    if value is None or value == "":
        return None
    if value == "json":
        return "json"
    if isinstance(value, dict):
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise BadRequest(f'invalid format: {exc.message}; expected "json" or a valid JSON Schema object') from None
        return value
    raise BadRequest(f'invalid format: {value!r}; expected "json" or a valid JSON Schema object')


def parse_images(value: Any, key: str = "images") -> list[bytes]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"invalid value for field {key!r}: expected an array of base64 strings")
    out = []
    for item in value:
        if not isinstance(item, str):
            raise BadRequest(f"invalid value for field {key!r}: expected an array of base64 strings")
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequest("invalid image input: images must be base64-encoded") from None
    return out


def parse_options(value: Any) -> Options:
    """`options` as sent, once it is an object. Its values are checked by the service
    (`server.options.validate_options`) after the model is found, as Ollama checks them
    (`modelOptions` runs after the model lookup): an unknown model is a 404 whatever the
    options, and a bad value is then a 400 naming the option."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest("options must be an object")
    return dict(value)


def parse_logprobs(body: Mapping[str, Any]) -> tuple[bool, int]:
    logprobs = bool(typed_field(body, "logprobs", bool, False))
    top = typed_field(body, "top_logprobs", (int, float), 0)
    if not float(top).is_integer() or not 0 <= top <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    return logprobs, int(top)


class CommonFields(TypedDict):
    """`GenerationFields` as `common_fields` parses them (the request's own fields aside)."""

    stream: bool
    format: str | JSONObject | None
    keep_alive: float | None
    options: Options
    think: bool | str | None
    truncate: bool
    shift: bool
    logprobs: bool
    top_logprobs: int
    debug_render_only: bool


def common_fields(body: Mapping[str, Any]) -> CommonFields:
    """The fields generate and chat share, validated the same way."""
    logprobs, top = parse_logprobs(body)
    return {
        "stream": typed_field(body, "stream", bool, True),
        "format": parse_format(body.get("format")),
        "keep_alive": parse_keep_alive_field(body),
        "options": parse_options(body.get("options")),
        "think": parse_think(body.get("think")),
        "truncate": typed_field(body, "truncate", bool, True),
        "shift": typed_field(body, "shift", bool, True),
        "logprobs": logprobs,
        "top_logprobs": top,
        "debug_render_only": typed_field(body, "_debug_render_only", bool, False),
    }


@dataclass(kw_only=True)
class GenerationFields:
    """What generate and chat requests share (parsed by `common_fields`)."""

    stream: bool = True
    format: str | JSONObject | None = None
    keep_alive: float | None = None
    options: Options = field(default_factory=dict)
    think: bool | str | None = None
    truncate: bool = True
    shift: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    debug_render_only: bool = False
    #: A bad option the OpenAI/Anthropic translators found in their own fields (`temperature`
    #: as a string): kept for the service to raise once the model is found, as it refuses a
    #: bad native option, so an unknown model is a 404 first on every route.
    option_error: BadRequest | None = None


@dataclass(kw_only=True)
class GenerateRequest(GenerationFields):
    model: str
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[bytes] = field(default_factory=list)

    @property
    def only_loads(self) -> bool:
        """Nothing to generate from: the request loads the model (or, with keep_alive 0, unloads it).

        Ollama looks at the prompt alone; a suffix (fill-in-the-middle at the
        start of a file) or images are something to answer here.
        """
        return self.prompt == "" and not self.suffix and not self.images

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GenerateRequest:
        context = typed_field(body, "context", list)
        if context is not None and not all(isinstance(t, int) and not isinstance(t, bool) for t in context):
            raise BadRequest("invalid value for field 'context': expected an array of integers")
        return cls(
            model=typed_field(body, "model", str, ""),
            prompt=typed_field(body, "prompt", str, ""),
            suffix=typed_field(body, "suffix", str, ""),
            system=typed_field(body, "system", str),
            template=typed_field(body, "template", str),
            context=context,
            raw=typed_field(body, "raw", bool, False),
            images=parse_images(body.get("images")),
            **common_fields(body),
        )


@dataclass(kw_only=True)
class ChatRequest(GenerationFields):
    model: str
    messages: list[JSONObject] = field(default_factory=list)
    tools: list[JSONObject] | None = None
    tool_choice: ToolChoice = AUTO  # only the compat APIs set it; Ollama's own has no such field

    @property
    def only_loads(self) -> bool:
        """No messages: the request loads the model (or, with keep_alive 0, unloads it)."""
        return not self.messages

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ChatRequest:
        messages = typed_field(body, "messages", list, [])
        decoded = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise BadRequest(f"invalid message at index {i}: expected an object")
            msg = dict(m)
            role = msg.get("role", "")
            if not isinstance(role, str):
                raise BadRequest(f"invalid message at index {i}: role must be a string")
            msg["role"] = role.lower()
            content = msg.get("content")
            if content is None:
                msg["content"] = ""
            elif not isinstance(content, str):
                raise BadRequest(f"invalid message at index {i}: content must be a string")
            if msg.get("images") is not None:
                msg["images"] = parse_images(msg["images"], f"messages[{i}].images")
            decoded.append(msg)
        tools = typed_field(body, "tools", list)
        return cls(
            model=typed_field(body, "model", str, ""),
            messages=decoded,
            tools=tools or None,
            **common_fields(body),
        )


@dataclass
class EmbedRequest:
    model: str
    inputs: list[str]
    truncate: bool = True
    dimensions: int | None = None
    options: Options = field(default_factory=dict)
    keep_alive: float | None = None
    normalize: bool = True

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EmbedRequest:
        raw = body.get("input")
        if raw is None or raw == "":
            inputs: list[str] = []
        elif isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            inputs = list(raw)
        else:
            raise BadRequest("invalid input type")
        dims = typed_field(body, "dimensions", (int, float))
        if dims is not None and (not float(dims).is_integer() or dims <= 0 or math.isinf(dims)):
            raise BadRequest("dimensions must be a positive integer")
        return cls(
            model=typed_field(body, "model", str, ""),
            inputs=inputs,
            truncate=typed_field(body, "truncate", bool, True),
            dimensions=int(dims) if dims is not None else None,
            options=parse_options(body.get("options")),
            keep_alive=parse_keep_alive_field(body),
        )
