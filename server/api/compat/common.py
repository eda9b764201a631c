"""Small helpers every translator shares: typed fields, images, stops, tool calls."""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from server import strictjson
from server.api.http import dumps
from server.errors import BadRequest
from server.inference.events import Final
from server.jsontypes import JSONObject, json_type
from server.options import Options


def go_type(value: Any) -> str:
    """The Go type `encoding/json` decodes a value into, as Ollama names it in errors."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _opt(body: Mapping[str, Any], key: str, kind: type, name: str) -> Any:
    """An optional field of one JSON type, refused in the OpenAI/Anthropic wording."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise BadRequest(f"invalid type for '{key}': expected {name}, got {json_type(value)}")
    return value


def opt_str(body: Mapping[str, Any], key: str) -> str | None:
    return _opt(body, key, str, "string")  # type: ignore[no-any-return]


def opt_bool(body: Mapping[str, Any], key: str) -> bool | None:
    return _opt(body, key, bool, "boolean")  # type: ignore[no-any-return]


def opt_object(body: Mapping[str, Any], key: str) -> JSONObject | None:
    return _opt(body, key, dict, "object")  # type: ignore[no-any-return]


def opt_list(body: Mapping[str, Any], key: str) -> list[Any] | None:
    return _opt(body, key, list, "array")  # type: ignore[no-any-return]


def opt_number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"invalid type for '{key}': expected number, got {json_type(value)}")
    return float(value)


def opt_int(body: Mapping[str, Any], key: str) -> int | None:
    """An integer field; integral floats (`10.0`) are accepted, `1.5` is not."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise BadRequest(f"invalid type for '{key}': expected integer, got {json_type(value)}")
    return int(value)


def require_model(body: Mapping[str, Any]) -> str:
    """`model` as a string ("" when absent: the service answers that in its own words)."""
    return opt_str(body, "model") or ""


IMAGE_PREFIXES = tuple(f"data:image/{t};base64," for t in ("jpeg", "jpg", "png", "webp"))


def decode_image_url(url: str) -> bytes:
    """An OpenAI `image_url`: only base64 data URLs, as Ollama (no fetching from the server)."""
    if url.startswith(("http://", "https://")):
        raise BadRequest("image URLs are not currently supported, please use base64 encoded data instead")
    if url.startswith("data:;base64,"):
        data = url[len("data:;base64,") :]
    else:
        for prefix in IMAGE_PREFIXES:
            if url.startswith(prefix):
                data = url[len(prefix) :]
                break
        else:
            raise BadRequest("invalid image input")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("invalid image input") from None


def decode_base64(data: Any, what: str) -> bytes:
    if not isinstance(data, str):
        raise BadRequest(f"invalid {what}: expected a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"invalid base64 {what}: {exc}") from None


def parse_stop(value: Any, *, strict: bool) -> list[str] | None:
    """`stop`: a string or a list of strings.

    Chat drops non-string list items (Ollama's chat middleware); completions
    rejects them (`strict`, Ollama's completions middleware).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        stops = []
        for item in value:
            if isinstance(item, str):
                stops.append(item)
            elif strict:
                raise BadRequest(f"invalid type for 'stop' field: {go_type(item)}")
        return stops
    raise BadRequest(f"invalid type for 'stop' field: {go_type(value)}")


def arguments_json(arguments: Any) -> str:
    """Tool-call arguments as the JSON string OpenAI clients expect (compact, key order kept)."""
    return dumps(arguments if arguments is not None else {})


def parse_arguments(value: Any) -> JSONObject:
    """OpenAI `function.arguments` (a JSON string; an object is tolerated) → native object."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = strictjson.loads(value)
        except ValueError as exc:  # a JSONError says why (NaN, too deep); a syntax error does not need to
            detail = f": {exc}" if isinstance(exc, strictjson.JSONError) else ""
            raise BadRequest(f"invalid tool call arguments{detail}") from None
        if isinstance(parsed, dict):
            return parsed
    raise BadRequest("invalid tool call arguments")


def random_hex(n: int) -> str:
    return secrets.token_hex((n + 1) // 2)[:n]


def deferred_options(build: Callable[[], Options]) -> tuple[Options, BadRequest | None]:
    """Native options from a translator's own option fields, or the BadRequest that building
    them raised: the caller puts it in `option_error`, and the service raises it after the
    model lookup, as it does for a bad native option (an unknown model is a 404 first)."""
    try:
        return build(), None
    except BadRequest as exc:
        return {}, exc


#: Top-level fields that set the context length: Ollama's option name, and LM Studio's
#: `context_length` (its OpenAI-compatible server reads it on every request).
CONTEXT_FIELDS = ("num_ctx", "context_length")


def with_native_options(body: Mapping[str, Any], translated: Options) -> Options:
    """A translator's options plus the native ones an OpenAI-style body may carry as extra
    fields (pollama extension): `options` (any native option, over the translated
    sampling fields) and `num_ctx` / `context_length` (over both). Their values are checked
    by the service once the model is found, like any native option."""
    extra = body.get("options")
    if extra is not None and not isinstance(extra, Mapping):
        raise BadRequest(f"invalid type for 'options': expected object, got {json_type(extra)}")
    options = {**translated, **(extra or {})}
    for key in CONTEXT_FIELDS:
        if body.get(key) is not None:
            options["num_ctx"] = body[key]
    return options


#: The pollama extension fields that say what was cut to fit the context (`truncation`).
TRUNCATION_FIELDS = ("truncated_messages", "truncated_tokens")
#: Each field's response header on a whole `/v1` answer (`truncation_headers`; CORS exposes them).
TRUNCATION_HEADERS = {key: "X-Pollama-" + key.replace("_", "-").title() for key in TRUNCATION_FIELDS}


def truncation(final: Final) -> dict[str, int]:
    """What was cut to fit the context (pollama extension: old messages dropped whole, then
    prompt tokens the runner cut), for the `/v1` answers: as extra fields of a stream's
    finishing chunk, and as `X-Pollama-Truncated-*` headers of a whole answer."""
    counts = dict(zip(TRUNCATION_FIELDS, (final.truncated_messages, final.truncated_tokens), strict=True))
    return {key: n for key, n in counts.items() if n}


def truncation_headers(final: Final) -> dict[str, str]:
    return {TRUNCATION_HEADERS[key]: str(n) for key, n in truncation(final).items()}
