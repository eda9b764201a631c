"""`format` and forced tool calls → GBNF, with llama-cpp-python's own JSON-schema converter.

The server process calls this while parsing a request, and must not load
libllama for it (loading registers GPU backends in the server). The converter
module `llama_cpp/llama_grammar.py` is pure Python, so it is loaded straight
from its file without running the `llama_cpp` package's `__init__`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

_MODULE_NAME = "_pollama_llama_grammar"
_XML_TAG = re.compile(r"<[A-Za-z_][\w-]*>")


@cache
def _grammar_module() -> ModuleType:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llama-cpp-python is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "llama_grammar.py"
    file_spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if file_spec is None or file_spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[_MODULE_NAME] = module
    file_spec.loader.exec_module(module)
    return module


def grammar_for_format(format: Any) -> str | None:
    """GBNF for Ollama's `format`: None/"" → no grammar; "json" → any JSON value; a JSON
    schema object → output constrained to it. Anything else raises ValueError."""
    if format is None or format == "":
        return None
    module = _grammar_module()
    if format == "json":
        return str(module.JSON_GBNF)
    if not isinstance(format, dict):
        return _not_schema(format)
    try:
        return str(module.json_schema_to_gbnf(json.dumps(format)))
    except Exception as exc:  # the converter raises bare Exceptions on unsupported schemas
        raise ValueError(f"{json.dumps(format)}; unsupported JSON Schema: {exc}") from None


def _not_schema(format: Any) -> str:
    try:
        shown = json.dumps(format)
    except (TypeError, ValueError):
        shown = repr(format)
    raise ValueError(f'{shown}; expected "json" or a valid JSON Schema object')


@dataclass(frozen=True, slots=True)
class Gbnf:
    """A grammar already written, passed where a `format` goes (a forced tool call)."""

    text: str


def grammar_for_tool_call(tag: str, tools: Sequence[Mapping[str, Any]], *, name: str | None = None) -> Gbnf:
    """GBNF that makes the reply exactly one call of one of *tools* (only *name* when given).

    The call is written as the model's template shows calls, so the server's
    tool-call parser (`server/prompt/toolcalls.py`) reads it back: the
    template's tag (`<tool_call>`, `[TOOL_CALLS]`…; none when the tag is `{`),
    then `{"name": …, "arguments": …}` with the arguments held to the tool's
    own parameter schema, then the closing tag when the tag is `<x>`. When the
    grammar is complete llama.cpp allows only end-of-generation, so the reply
    stops after the call. A parameter schema the converter cannot express
    falls back to "any JSON object" for that tool rather than failing.
    """
    module = _grammar_module()
    wanted = [t for t in _functions(tools) if name is None or t[0] == name]
    if not wanted:
        raise ValueError(f"no tool named {name!r}" if name else "no tools to call")
    try:
        call = _call_rules(module, wanted)
    except Exception:  # the converter raises bare Exceptions on unsupported schemas
        call = _call_rules(module, [(fname, {"type": "object"}) for fname, _ in wanted])
    opening = "" if tag in ("", "{", "[") else tag
    closing = f"</{opening[1:]}" if _XML_TAG.fullmatch(opening) else ""
    gap = "[ \\t\\n]{0,2}"  # bounded: a random or stubborn model must not pad forever
    parts = (_literal(opening), gap if opening else "", "tool-call", gap if closing else "", _literal(closing))
    root = " ".join(part for part in parts if part)
    return Gbnf(f"root ::= {root}\n{call}")


def _functions(tools: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, parameter schema) of each function tool, in request order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for tool in tools:
        function = tool.get("function")
        if not isinstance(function, Mapping):
            continue
        fname = function.get("name")
        params = function.get("parameters")
        if isinstance(fname, str) and fname:
            found.append((fname, dict(params) if isinstance(params, Mapping) and params else {"type": "object"}))
    return found


def _call_rules(module: ModuleType, functions: list[tuple[str, dict[str, Any]]]) -> str:
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": fname}, "arguments": params},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for fname, params in functions
    ]
    schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    converter = module.SchemaConverter(
        prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    converter.visit(converter.resolve_refs(schema, "tool"), "tool-call")
    return str(converter.format_grammar())


def _literal(text: str) -> str:
    """A GBNF string literal ("" for no text)."""
    if not text:
        return ""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'
