"""`format` → GBNF, with llama-cpp-python's own JSON-schema converter.

The server process calls this while parsing a request, and must not load
libllama for it (loading registers GPU backends in the server). The converter
module `llama_cpp/llama_grammar.py` is pure Python, so it is loaded straight
from its file without running the `llama_cpp` package's `__init__`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

_MODULE_NAME = "_pollama_llama_grammar"


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
