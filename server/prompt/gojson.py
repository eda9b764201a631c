"""Go's `encoding/json.Marshal` output, byte for byte, for template data.

Ollama's templates print tools, tool lists, call arguments and property maps
as the JSON Go's encoder writes: compact, map keys sorted, `<`, `>` and `&`
escaped as `\\u003c`/`\\u003e`/`\\u0026`, U+2028/U+2029 escaped, floats in Go's
shortest form (`1`, not `1.0`). Python's `json.dumps` differs on every one of
those points, and a model sees the difference in its prompt, so the renderer
uses this module instead.

Values that want a Go-specific shape (a struct with field tags, an
insertion-ordered map) implement `__go_json__()` returning plain data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class GoJSONError(ValueError):
    """A value Go's encoder refuses (NaN, ±Inf); Ollama's `json` then prints ""."""


class OrderedJSONMap(dict):  # type: ignore[type-arg]
    """A map that Go encodes in insertion order (Ollama's ordered maps).

    A plain `dict` is encoded with sorted keys, as a Go `map` is.
    """


def clean_text(text: str) -> str:
    """Replace lone surrogates with U+FFFD, as Go's decoder does for bad input."""
    if _LONE_SURROGATE.search(text) is None:
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def _go_string(text: str) -> str:
    encoded = json.dumps(clean_text(text), ensure_ascii=False)
    if any(c in encoded for c in "<>&\u2028\u2029"):
        encoded = (
            encoded.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return encoded


def go_float(value: float) -> str:
    """Format a float64 the way Go's JSON encoder does."""
    if math.isnan(value) or math.isinf(value):
        raise GoJSONError(f"json: unsupported value: {value!r}")
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    magnitude = abs(value)
    shortest = repr(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        mantissa, _, exponent = shortest.partition("e")
        if not exponent:  # repr chose fixed notation; build the exponent form
            mantissa, _, exponent = f"{Decimal(shortest):e}".partition("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        sign = "-" if exponent.startswith("-") else "+"
        digits = exponent.lstrip("+-").lstrip("0") or "0"
        if sign == "+" or len(digits) >= 2:
            digits = digits.rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    fixed = format(Decimal(shortest), "f")
    if "." in fixed:
        fixed = fixed.rstrip("0").rstrip(".")
    return fixed


def go_json(value: Any) -> str:
    """Encode *value* as Go's `json.Marshal` would (compact, sorted map keys)."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    hook = getattr(value, "__go_json__", None)
    if hook is not None and not isinstance(value, type):
        value = hook()
        if isinstance(value, RawJSON):
            out.append(value.text)
            return
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(go_float(value))
    elif isinstance(value, (bytes, bytearray)):
        import base64

        out.append('"' + base64.b64encode(bytes(value)).decode("ascii") + '"')
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        if not isinstance(value, OrderedJSONMap):
            keys = sorted(keys, key=lambda k: str(k))
        out.append("{")
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_go_string(str(key)))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        out.append(_go_string(str(value)))


class RawJSON:
    """Already-encoded JSON text, returned by a `__go_json__` hook verbatim."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
