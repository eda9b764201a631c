"""JSON type names and typed optional fields, for error messages a client can act on.

One definition serves the native handlers, the request types and the
OpenAI/Anthropic translators, so "expected string, got number" reads the same
everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from server.errors import BadRequest

#: A decoded JSON object at the edge: a request body, or a response body being built.
#: Its values are checked where they are read (`typed_field`, the translators' `opt_*`),
#: so the alias says "JSON from or for a client", which `dict[str, Any]` does not.
JSONObject: TypeAlias = dict[str, Any]

_KIND_NAMES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}


def json_type(value: Any) -> str:
    """The JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def kind_names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


def typed_field(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """An optional field of the given type(s); absent or null gives `default`.

    Integers are accepted where a float is wanted (JSON has one number type);
    booleans are never taken for numbers.
    """
    value = body.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise BadRequest(f"invalid value for field {key!r}: expected {kind_names(kinds)}, got boolean")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds):
        raise BadRequest(f"invalid value for field {key!r}: expected {kind_names(kinds)}, got {json_type(value)}")
    return value
