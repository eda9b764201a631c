"""A Modelfile to a structured `/api/create` request, on the client side as Ollama's CLI does.

The server accepts only the structured form (`from` or `files`, `system`,
`template`, `parameters`...), so the window converts. This covers the
instructions people write by hand: FROM, PARAMETER, SYSTEM, TEMPLATE,
LICENSE, MESSAGE, ADAPTER, with `\"\"\"` blocks and quoted values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INSTRUCTIONS = {"from", "parameter", "system", "template", "license", "message", "adapter", "requires"}


class ModelfileError(ValueError):
    pass


@dataclass
class ModelfilePlan:
    """What to upload (local files) and what to send (the rest of the create body)."""

    body: dict[str, Any] = field(default_factory=dict)
    model_file: Path | None = None
    adapter_file: Path | None = None


def _commands(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.lower() not in _INSTRUCTIONS:
            raise ModelfileError(f"line {i}: unknown instruction {word!r}")
        rest = rest.strip()
        if '"""' in rest:
            head, _, tail = rest.partition('"""')
            if '"""' in tail:
                value = tail.partition('"""')[0]
            else:
                block = [tail]
                while i < len(lines) and '"""' not in lines[i]:
                    block.append(lines[i])
                    i += 1
                if i >= len(lines):
                    raise ModelfileError('unterminated """ block')
                block.append(lines[i].partition('"""')[0])
                i += 1
                value = "\n".join(block)
                value = value[1:] if value.startswith("\n") else value
            rest = (head + value) if head.strip() else value
        elif len(rest) >= 2 and rest[0] == rest[-1] == '"' and word.lower() != "parameter":
            rest = rest[1:-1]
        out.append((word.lower(), rest))
    return out


def _param_value(raw: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def plan(text: str, base_dir: Path | None = None) -> ModelfilePlan:
    result = ModelfilePlan()
    body = result.body
    params: dict[str, Any] = {}
    licenses: list[str] = []
    messages: list[dict[str, str]] = []
    for word, value in _commands(text):
        if word == "from":
            path = _local_file(value, base_dir)
            if path is not None:
                result.model_file = path
            else:
                body["from"] = value
        elif word == "adapter":
            path = _local_file(value, base_dir)
            if path is None:
                raise ModelfileError(f"ADAPTER {value!r}: no such file")
            result.adapter_file = path
        elif word == "parameter":
            key, _, raw = value.partition(" ")
            if not raw.strip():
                raise ModelfileError(f"PARAMETER {key}: missing value")
            if key == "stop":
                params.setdefault("stop", []).append(str(_param_value(raw)))
            else:
                params[key] = _param_value(raw)
        elif word == "message":
            role, _, content = value.partition(" ")
            content = content.strip()
            if len(content) >= 2 and content[0] == content[-1] == '"':
                content = json.loads(content) if content.startswith('"') else content
            messages.append({"role": role.lower(), "content": content})
        elif word == "license":
            licenses.append(value)
        else:
            body[word] = value
    if "from" not in body and result.model_file is None:
        raise ModelfileError("a Modelfile needs a FROM line (a model name or a .gguf file)")
    if params:
        body["parameters"] = params
    if licenses:
        body["license"] = licenses
    if messages:
        body["messages"] = messages
    return result


def _local_file(value: str, base_dir: Path | None) -> Path | None:
    """FROM/ADAPTER naming a file on disk (absolute, ~, or relative to the Modelfile)."""
    if not value:
        return None
    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    looks_like_path = value.startswith((".", "/", "~")) or value.lower().endswith((".gguf", ".bin")) or "\\" in value
    if candidate.is_file():
        return candidate.resolve()
    if looks_like_path and value.lower().endswith(".gguf"):
        raise ModelfileError(f"FROM {value!r}: no such file")
    return None
