"""A parsed Go chat template: gotpl for execution, Ollama's rules around it.

gotpl (a pure-Python Go text/template) parses and executes; this module adds
what Ollama layers on Go's engine:

* `missingkey=zero` and Ollama's functions (`json`, `currentDate`,
  `yesterdayDate`, `toTypeScriptType`), with `eq`/`ne` following Go's rule
  that comparing a missing value (nil) with anything is simply false;
* printing through `String()` methods: gotpl prints any dict as `map[…]`,
  Go calls a type's `String()` first — that is how tools and arguments come
  out as JSON. gotpl has no hook for this in its action printer, so one
  small patch wraps `gotpl.runtime.sync_vm.format_value` to consult
  `__go_string__` first (every other value prints exactly as before);
* `{{ .Response }}` appended to templates that mention neither `.Messages`
  nor `.Response`, and the legacy "cut at `.Response`" variant;
* the facts read from the tree: variables, capabilities, tool-call tag,
  thinking tags.

Templates are cached by text: a model's template is parsed once per process.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from functools import cached_property, lru_cache
from typing import Any

import gotpl
import gotpl.runtime.sync_vm as _gotpl_vm
from gotpl.errors import TemplateSyntaxError
from gotpl.parse import parse_template
from gotpl.runtime.values import INVALID, UNTYPED_NIL

from server.prompt import analysis
from server.prompt.errors import TemplateParseError, TemplateRenderError
from server.prompt.godata import TemplateProperty, _safe_json

# ------------------------------------------------------------ printing patch


def _install_stringer_printing() -> None:
    original = _gotpl_vm.format_value
    if getattr(original, "_pollama_stringer", False):
        return

    def format_value(value: object, format_mode: Any = "go") -> str:
        hook = getattr(type(value), "__go_string__", None)
        if hook is not None:
            return hook(value)  # type: ignore[no-any-return]
        return original(value, format_mode)

    format_value._pollama_stringer = True  # type: ignore[attr-defined]
    _gotpl_vm.format_value = format_value


_install_stringer_printing()

# ----------------------------------------------------------------- functions


def _kind(value: object) -> str:
    if value is None or value is INVALID or value is UNTYPED_NIL:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, complex):
        return "complex"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(first: object, *others: object) -> bool:
    """Go's `eq`: nil against anything is false (not an error), as in Go 1.18+."""
    if not others:
        raise TypeError("missing argument for comparison")
    first_kind = _kind(first)
    for other in others:
        other_kind = _kind(other)
        if first_kind != other_kind:
            if first_kind != "nil" and other_kind != "nil":
                raise TypeError("incompatible types for comparison")
            continue
        if first_kind == "nil":
            return True
        if first_kind == "other":
            if first is other:
                return True
            if isinstance(first, (list, dict)) or isinstance(other, (list, dict)):
                raise TypeError("non-comparable type")
            if first == other:
                return True
            continue
        if first == other:
            return True
    return False


def _ne(first: object, second: object) -> bool:
    return not _eq(first, second)


def _json(value: object) -> str:
    return _safe_json(value)


def _current_date(*_args: str) -> str:
    return _dt.date.today().isoformat()


def _yesterday_date(*_args: str) -> str:
    return (_dt.date.today() - _dt.timedelta(days=1)).isoformat()


def _to_typescript_type(value: object) -> str:
    if isinstance(value, TemplateProperty):
        return value.typescript_type()
    return "any"


FUNCTIONS: Mapping[str, Any] = {
    "json": _json,
    "currentDate": _current_date,
    "yesterdayDate": _yesterday_date,
    "toTypeScriptType": _to_typescript_type,
    "eq": _eq,
    "ne": _ne,
}

_RESPONSE_ACTION = "{{ .Response }}"


def _compile(source: str) -> gotpl.Template:
    try:
        return gotpl.Template(source, missing_key="zero", functions=FUNCTIONS)
    except TemplateSyntaxError as exc:
        raise TemplateParseError(str(exc), line=exc.line, column=exc.column, position=exc.position) from exc
    except Exception as exc:  # gotpl's link step: undefined template, etc.
        raise TemplateParseError(f"template: {exc}") from exc


class ChatTemplate:
    """A Go prompt template, parsed once and rendered many times.

    Build with `ChatTemplate.parse(text)` (cached); a template that does not
    parse raises `TemplateParseError` (status 400) with line and column.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            tree = parse_template(text, functions=tuple(_all_function_names()))
        except TemplateSyntaxError as exc:
            raise TemplateParseError(str(exc), line=exc.line, column=exc.column, position=exc.position) from exc
        except Exception as exc:
            raise TemplateParseError(f"template: {exc}") from exc
        self._vars = analysis.identifiers(tree)
        source = text
        if "messages" not in self._vars and "response" not in self._vars:
            source = text + _RESPONSE_ACTION
            tree = parse_template(source, functions=tuple(_all_function_names()))
        self._tree = tree
        self._executable = _compile(source)

    @classmethod
    def parse(cls, text: str) -> ChatTemplate:
        return _parse_cached(text)

    def __repr__(self) -> str:
        return f"ChatTemplate({self.text[:40]!r}…)"

    # ------------------------------------------------------------- facts

    @property
    def variables(self) -> frozenset[str]:
        """Lower-cased identifiers the template mentions (Ollama's `Vars()`)."""
        return self._vars

    @property
    def uses_messages(self) -> bool:
        return "messages" in self._vars

    @cached_property
    def tool_call_tag(self) -> str:
        """The text a model writes before a tool call ("{" when unknown)."""
        return analysis.tool_call_tag(self._tree)

    @cached_property
    def thinking_tags(self) -> tuple[str, str] | None:
        """(open, close) thinking tags, or None when the template shows none."""
        opening, closing = analysis.thinking_tags(self._tree)
        return (opening, closing) if opening and closing else None

    @cached_property
    def capabilities(self) -> frozenset[str]:
        """Capabilities the template implies: tools, insert, thinking (Ollama's `server/images.go` `goTemplateCapabilities`)."""
        caps = set()
        if "tools" in self._vars:
            caps.add("tools")
        if "suffix" in self._vars:
            caps.add("insert")
        if self.thinking_tags is not None:
            caps.add("thinking")
        return frozenset(caps)

    # --------------------------------------------------------- execution

    def execute(self, data: Mapping[str, Any]) -> str:
        """Run the whole template over *data*; any failure is a TemplateRenderError."""
        return _run(self._executable, data)

    def execute_cut(self, data: Mapping[str, Any]) -> str:
        """Run the template cut after its first `{{ .Response }}` (legacy final turn)."""
        return _run(self._cut_executable, data)

    @cached_property
    def _cut_executable(self) -> gotpl.Template:
        source = analysis.response_cut(self._source, self._tree)
        return self._executable if source is None else _compile(source)

    @property
    def _source(self) -> str:
        return self._executable.source


def _run(template: gotpl.Template, data: Mapping[str, Any]) -> str:
    try:
        return template.render(data)
    except RecursionError as exc:
        raise TemplateRenderError("template: execution too deeply nested") from exc
    except MemoryError as exc:
        raise TemplateRenderError("template: out of memory while rendering") from exc
    except Exception as exc:
        raise TemplateRenderError(str(exc) or type(exc).__name__) from exc


@lru_cache(maxsize=1)
def _all_function_names() -> frozenset[str]:
    from gotpl.runtime.sync_vm import _builtin_functions  # pyright: ignore

    return frozenset(_builtin_functions("go")) | frozenset(FUNCTIONS)


@lru_cache(maxsize=256)
def _parse_cached(text: str) -> ChatTemplate:
    return ChatTemplate(text)


DEFAULT_TEMPLATE_TEXT = "{{ .Prompt }}"
