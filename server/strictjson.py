"""JSON from clients, read as Go's `encoding/json` reads it, with a nesting bound Python needs.

Python's `json` module is more lenient than the JSON Ollama's clients are written
against, and each leniency was a way to a 500: it accepts `NaN`, `Infinity` and
`-Infinity` (which then fail `json.dumps(allow_nan=False)` or reach llama.cpp as
NaN), reads `1e999` as infinity and `1` followed by 400 zeros as an integer no float
can hold (`float()` then raises OverflowError), and builds values nested as deep as its
recursion limit lets it, which the recursive code that walks them afterwards (jsonschema
for `format`, the GBNF converter, Go-template data, `json.dumps`) cannot walk again with
the frames that are left. Go refuses the first two at parse time (`invalid character 'N'
looking for beginning of value`, `cannot unmarshal number 1e999 into Go value of type
float64`) and bounds nesting at 10,000 levels; Python's stack cannot hold that much, so
the bound here is MAX_DEPTH, far above any real request (OpenAI's structured outputs
allow 10 levels of schema nesting) and far below what the walkers need.

`loads` is the one parser for request bodies (`server/api/http.py`) and for JSON a
request carries inside a string (tool-call `arguments`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: Objects and arrays nest at most this deep (a body `{}` is depth 1).
MAX_DEPTH = 64
_FLOAT_MAX = int(sys.float_info.max)

_CONSTANTS = {
    "NaN": "invalid character 'N' looking for beginning of value",
    "Infinity": "invalid character 'I' looking for beginning of value",
    "-Infinity": "invalid character 'I' in numeric literal",
}


class JSONError(ValueError):
    """Text that is not JSON a Go server would accept; the message says why, as Go would."""


def _constant(name: str) -> Any:
    raise JSONError(_CONSTANTS.get(name, f"invalid character {name[:1]!r} looking for beginning of value"))


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONError(f"number {text} is out of range: JSON numbers must fit a 64-bit float")
    return value


_DECODER = json.JSONDecoder(parse_float=_float, parse_constant=_constant)

_RANGE_MESSAGE = "number out of range: JSON numbers must fit a 64-bit float"
DEPTH_MESSAGE = f"exceeded max depth: objects and arrays may nest at most {MAX_DEPTH} levels"


def loads(text: str | bytes | bytearray) -> Any:
    """Parse `text` (UTF-8 when bytes). Raises JSONError for what Go refuses and for nesting
    beyond MAX_DEPTH, json.JSONDecodeError for syntax errors, UnicodeDecodeError for bytes
    that are not UTF-8."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    try:
        value = _DECODER.decode(text)
    except RecursionError:  # nested past the interpreter's limit: far past ours
        raise JSONError(DEPTH_MESSAGE) from None
    except (JSONError, json.JSONDecodeError):
        raise
    except ValueError:  # int() refuses more than 4300 digits (sys.int_info.default_max_str_digits)
        raise JSONError(_RANGE_MESSAGE) from None
    check(value)
    return value


def check(value: Any) -> None:
    """Raise JSONError if `value` nests deeper than MAX_DEPTH or holds an integer beyond a
    float64 (Go decodes every untyped number as float64). Iterative, one visit a value."""
    if type(value) is int:
        _check_int(value)
    if type(value) not in (dict, list):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is dict or kind is list:
                if depth >= MAX_DEPTH:
                    raise JSONError(DEPTH_MESSAGE)
                stack.append((item, depth + 1))
            elif kind is int and not -_FLOAT_MAX <= item <= _FLOAT_MAX:
                _check_int(item)


def _check_int(value: int) -> None:
    if not -_FLOAT_MAX <= value <= _FLOAT_MAX:
        raise JSONError(_RANGE_MESSAGE)
