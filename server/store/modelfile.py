"""Modelfile: parse (FROM, PARAMETER, TEMPLATE, SYSTEM, ...) and render back.

The grammar follows Ollama's parser: case-insensitive keywords, `#` comments at
line start, `"..."` and `\"\"\"...\"\"\"` values that may span lines, values trimmed
but inner spaces kept. Every error names the line it starts on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import BadRequest, ModelfileError
from server.options import DEPRECATED_OPTIONS, OPTION_TYPES, parse_option_text

log = logging.getLogger(__name__)

COMMANDS = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)
MESSAGE_ROLES = ("system", "user", "assistant")
_COMMAND_ERROR = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
_SEMVER = re.compile(r"^v?\d+(\.\d+){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Command:
    name: str  # lower-case keyword; "model" for FROM as Ollama stores it
    args: str
    line: int = 0
    key: str = ""  # PARAMETER name or MESSAGE role


@dataclass
class Modelfile:
    commands: list[Command] = field(default_factory=list)

    @property
    def from_values(self) -> list[str]:
        return [c.args for c in self.commands if c.name == "model"]

    def parameters(self) -> dict[str, Any]:
        """PARAMETER lines typed by option; repeated `stop` accumulates into a list."""
        raw: dict[str, list[str]] = {}
        for c in self.commands:
            if c.name != "parameter":
                continue
            if c.key in DEPRECATED_OPTIONS:
                log.warning("parameter %s is deprecated", c.key)
                continue
            if c.key not in OPTION_TYPES:
                raise ModelfileError(f"(line {c.line}): unknown parameter '{c.key}'")
            raw.setdefault(c.key, []).append(c.args)
        out: dict[str, Any] = {}
        for key, values in raw.items():
            try:
                out[key] = parse_option_text(key, values)
            except BadRequest as exc:
                line = next(c.line for c in self.commands if c.name == "parameter" and c.key == key)
                raise ModelfileError(f"(line {line}): {exc.message}") from None
        return out

    def last(self, name: str) -> str | None:
        values = [c.args for c in self.commands if c.name == name]
        return values[-1] if values else None

    def all(self, name: str) -> list[str]:
        return [c.args for c in self.commands if c.name == name]

    def messages(self) -> list[dict[str, str]]:
        return [{"role": c.key, "content": c.args} for c in self.commands if c.name == "message"]

    def request_fields(self) -> dict[str, Any]:
        """Every create field but the model files: template, system, renderer, parser, license,
        parameters, messages, requires. FROM and ADAPTER are left to the caller, because only
        the caller knows whether a value may name a file (the CLI) or never may (the server)."""
        req: dict[str, Any] = {}
        for key in ("template", "system", "renderer", "parser"):
            text = self.last(key)
            if text is not None:
                req[key] = text
        licenses = self.all("license")
        if licenses:
            req["license"] = licenses
        params = self.parameters()
        if params:
            req["parameters"] = params
        messages = self.messages()
        if messages:
            req["messages"] = messages
        requires = self.last("requires")
        if requires is not None:
            if not _SEMVER.match(requires):
                raise ModelfileError(f"requires must be a valid semantic version, got {requires!r}")
            req["requires"] = requires
        return req

    def create_request(self, base_dir: Path | None = None) -> dict[str, Any]:
        """The structured `/api/create` body on the client side (`pollama create`), FROM resolved
        against `base_dir` as Ollama's `parser.Modelfile.CreateRequest` does.

        Local FROM/ADAPTER/DRAFT paths are returned under `_paths`, `_adapter_paths` and
        `_draft_paths` (name → Path) for the CLI to upload as blobs before it sends the request
        (as `files`, `adapters`, `draft_files`); the server never takes a path. A DRAFT must be a
        local GGUF file, as in Ollama's `parser.Modelfile.CreateRequest`, and not the FROM file.
        """
        req: dict[str, Any] = {}
        paths: dict[str, Path] = {}
        adapter_paths: dict[str, Path] = {}
        for value in self.from_values:
            path = _expand(value, base_dir)
            if path is not None and path.exists():
                if path.is_dir():
                    for f in sorted(path.glob("*.gguf")):
                        paths[f.name] = f
                    if not paths:
                        raise ModelfileError("no Modelfile or safetensors files found")
                else:
                    paths[path.name] = path
            else:
                req["from"] = value
        for value in self.all("adapter"):
            path = _expand(value, base_dir)
            if path is None or not path.is_file():
                raise ModelfileError(f"adapter {value!r} not found")
            adapter_paths[path.name] = path
        draft_paths: dict[str, Path] = {}
        for value in self.all("draft"):
            path = _expand(value, base_dir)
            if path is None or not path.is_file():
                raise ModelfileError(f"draft {value!r} not found (DRAFT takes a local GGUF file)")
            if any(path.resolve() == p.resolve() for p in paths.values()):
                raise ModelfileError(f"DRAFT {value!r} is the FROM model itself")
            draft_paths[path.name] = path
        req.update(self.request_fields())
        req["_paths"] = paths
        req["_adapter_paths"] = adapter_paths
        req["_draft_paths"] = draft_paths
        return req


def _expand(value: str, base_dir: Path | None) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        if not (value.startswith(".") or "/" in value or "\\" in value or value.endswith(".gguf")):
            # A bare word like `llama3.2` is a model name unless a file of that name exists.
            candidate = (base_dir or Path.cwd()) / value
            return candidate if candidate.exists() else None
        path = (base_dir or Path.cwd()) / path
    return path


def decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelfileError(f"Modelfile is not valid UTF-8 or UTF-16: {exc}") from None


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.pos = 0
        self.line = 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def advance(self, n: int = 1) -> str:
        chunk = self.text[self.pos : self.pos + n]
        self.line += chunk.count("\n")
        self.pos += len(chunk)
        return chunk

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip(self, chars: str) -> None:
        while not self.at_end() and self.text[self.pos] in chars:
            self.advance()

    def word(self, pattern: re.Pattern[str]) -> str:
        m = pattern.match(self.text, self.pos)
        if not m:
            return ""
        return self.advance(m.end() - self.pos)

    def rest_of_line(self) -> str:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        return self.advance(end - self.pos)


_KEYWORD = re.compile(r"[A-Za-z]+")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+")
_ROLE = re.compile(r"[A-Za-z]+")


def parse(data: bytes | str) -> Modelfile:
    """Parse Modelfile text; raises ModelfileError naming the line."""
    r = _Reader(decode(data))
    commands: list[Command] = []
    while True:
        r.skip(" \t\n")
        if r.at_end():
            break
        line = r.line
        if r.peek() == "#":
            r.rest_of_line()
            continue
        keyword = r.word(_KEYWORD)
        if not keyword:
            bad = r.rest_of_line()
            if not bad.strip() or not any(ch.isprintable() for ch in bad):
                continue
            raise ModelfileError(f"(line {line}): {_COMMAND_ERROR}")
        name = keyword.lower()
        if r.peek() not in (" ", "\t"):
            if r.at_end() or r.peek() == "\n":
                if name in COMMANDS:
                    raise ModelfileError(f"(line {line}): unexpected EOF")
            raise ModelfileError(f"(line {line}): {_COMMAND_ERROR}")
        if name not in COMMANDS:
            raise ModelfileError(f"(line {line}): {_COMMAND_ERROR}")
        r.skip(" \t")
        key = ""
        if name == "parameter":
            key = r.word(_PARAM_NAME)
            if not key:
                raise ModelfileError(f"(line {line}): unexpected EOF")
            r.skip(" \t")
        elif name == "message":
            key = r.word(_ROLE).lower()
            if key not in MESSAGE_ROLES:
                raise ModelfileError(f'(line {line}): message role must be one of "system", "user", or "assistant"')
            r.skip(" \t")
        value = _read_value(r, line)
        commands.append(Command("model" if name == "from" else name, value, line, key))
    if not any(c.name == "model" for c in commands):
        raise ModelfileError("no FROM line")
    return Modelfile(commands)


def _read_value(r: _Reader, line: int) -> str:
    for quote in ('"""', '"'):
        if r.peek(len(quote)) == quote:
            r.advance(len(quote))
            end = r.text.find(quote, r.pos)
            if end < 0:
                raise ModelfileError(f"(line {line}): unexpected EOF")
            value = r.advance(end - r.pos)
            r.advance(len(quote))
            trailing = r.rest_of_line()
            return value + trailing.rstrip() if trailing.strip() else value
    value = r.rest_of_line().strip()
    if not value:
        raise ModelfileError(f"(line {line}): unexpected EOF")
    return value


def quote(value: str) -> str:
    """Quote a value only if it needs it, as `ollama show --modelfile` does."""
    if "\n" in value or value != value.strip() or value.startswith('"'):
        if '"' in value:
            return f'"""{value}"""'
        return f'"{value}"'
    return value


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_float(value: float) -> str:
    text = repr(float(value))
    if text.endswith(".0"):
        text = text[:-2]
    return text


def render(
    *,
    from_lines: Iterable[str],
    adapters: Iterable[str] = (),
    drafts: Iterable[str] = (),
    projectors: Iterable[str] = (),
    template: str | None = None,
    system: str | None = None,
    parameters: dict[str, Any] | None = None,
    licenses: Iterable[str] = (),
    messages: Iterable[dict[str, Any]] = (),
    header_name: str | None = None,
) -> str:
    """Render a Modelfile in Ollama's `show --modelfile` order."""
    out: list[str] = []
    if header_name:
        out.append('# Modelfile generated by "ollama show"')
        out.append("# To build a new Modelfile based on this, replace FROM with:")
        out.append(f"# FROM {header_name}")
        out.append("")
    for value in from_lines:
        out.append(f"FROM {value}")
    for value in adapters:
        out.append(f"ADAPTER {value}")
    for value in drafts:
        out.append(f"DRAFT {value}")
    for value in projectors:
        out.append(f"FROM {value}")
    if template:
        out.append(f"TEMPLATE {quote(template)}")
    if system:
        out.append(f"SYSTEM {quote(system)}")
    for key, value in (parameters or {}).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            out.append(f"PARAMETER {key} {quote(format_value(v))}")
    for value in licenses:
        out.append(f"LICENSE {quote(value)}")
    for message in messages:
        out.append(f"MESSAGE {message.get('role', '')} {quote(str(message.get('content', '')))}")
    return "\n".join(out) + "\n"
