"""`format` → GBNF without loading libllama in the server process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from server.runner import grammar_for_format


def test_no_format() -> None:
    assert grammar_for_format(None) is None
    assert grammar_for_format("") is None


def test_json_and_schema() -> None:
    assert "root" in (grammar_for_format("json") or "")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    gbnf = grammar_for_format(schema) or ""
    assert "root" in gbnf and '\\"n\\"' in gbnf


@pytest.mark.parametrize("bad", ["xml", 5, ["json"], True])
def test_invalid_format(bad: object) -> None:
    with pytest.raises(ValueError, match='expected "json" or a valid JSON Schema object'):
        grammar_for_format(bad)


def test_does_not_load_llama_cpp() -> None:
    code = (
        "import sys; from server.runner import grammar_for_format as g; g('json'); "
        "g({'type': 'string'}); print('llama_cpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
