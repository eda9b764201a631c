"""Finding tool calls in a model's streamed output (Ollama's `tools/tools.go` `Parser.Add`).

A port of Ollama's generic tools.Parser for Go-template models. Until the
template's tool-call tag (e.g. `<tool_call>`, `[TOOL_CALLS]`, or `{` when the
template shows none) appears, text passes through as content, holding back
only a trailing partial tag. After the tag, each call is the earliest
request-tool name in the buffer plus the first balanced JSON object; its
arguments are the object's `arguments`/`parameters` member (an object or a
JSON string) when it has a `name`, else the member keyed by the tool's name,
else one found by nested search, else the object itself. With a `{`/`[` tag
any non-blank text before it means "not a tool call" and parsing stops.

Differences from Ollama, all about never losing text:

* `finish()` returns the held-back text as content when no call was found
  (Ollama drops it for tags other than `{`/`[`);
* every call carries `raw`, the exact text it was parsed from, and with
  `record=True` an ordered log of content / call / markup pieces is kept,
  which joined back together is exactly the model's output. Text after the
  last call that forms no further call (`</tool_call>`…) is markup: it is
  not content, as in Ollama.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any

from server.jsontypes import JSONObject
from server.prompt.analysis import go_trim_space
from server.prompt.gotemplate import ChatTemplate
from server.prompt.types import Tool, ToolCall, ToolCallFunction, to_tools

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_call_id() -> str:
    """`call_` + 8 random characters from [a-z0-9], like Ollama's IDs."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class _State(Enum):
    LOOKING_FOR_TAG = 0
    TOOL_CALLING = 1
    DONE = 2


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _loads_object(text: str) -> JSONObject | None:
    """Go's json.Unmarshal into map[string]any: an object or nothing."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class ToolCallParser:
    """Feed model output piece by piece; get back (content, tool_calls) each time."""

    def __init__(
        self,
        template: ChatTemplate | str | None,
        tools: Sequence[Tool | Mapping[str, Any]] | None,
        *,
        make_ids: bool = True,
        id_factory: Callable[[], str] = new_call_id,
        record: bool = False,
    ) -> None:
        """*template* is the model's template (its tag is used) or the tag itself."""
        if isinstance(template, ChatTemplate):
            self.tag = template.tool_call_tag
        else:
            self.tag = template or "{"
        self.tools = to_tools(tools) or []
        self._make_ids = make_ids
        self._id_factory = id_factory
        self._state = _State.LOOKING_FOR_TAG
        self._buffer = ""
        # Characters at the front of the buffer already counted in a call's
        # `raw` (Ollama keeps the closing brace of a parsed object there).
        self._owed = 0
        self._count = 0
        self.log: list[tuple[str, str]] | None = [] if record else None
        names = [t.function.name for t in self.tools if t.function.name]
        self._longest = max((len(n) for n in names), default=0)

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        """Add output; return the content it settles and any complete calls."""
        if self._state is _State.DONE:
            self._emit("content", text)
            return text, []
        self._buffer += text
        content = ""
        if self._state is _State.LOOKING_FOR_TAG:
            index, found = self._find_tag()
            if index == -1:
                content, self._buffer = self._buffer, ""
            else:
                content, self._buffer = self._buffer[:index], self._buffer[index:]
            if self.tag in ("{", "[") and go_trim_space(content):
                self._state = _State.DONE
                out = content + self._buffer
                self._buffer = ""
                self._emit("content", out)
                return out, []
            self._emit("content", content)
            if not found:
                return content, []
            self._state = _State.TOOL_CALLING
        calls: list[ToolCall] = []
        if self.tag in ("{", "["):
            content += self._feed_bracketed(calls)
        else:
            # A call is taken as soon as it is complete, as a character-by-character
            # stream would take it: text after it (say, the start of another tool's
            # name) must not hold it back.
            while (length := self._parse_point()) is not None:
                calls.append(self._take_call(length))
        return content, calls

    def _feed_bracketed(self, calls: list[ToolCall]) -> str:
        """Calls and the "brackets closed, not a call" end for `{`/`[` tags.

        Ollama checks for the closing bracket only after each piece, so a
        stream cut differently could end tool parsing at a different place.
        Here both events are placed where a character-by-character stream
        would meet them: a call is taken if it completes no later than the
        point where the brackets first balance; otherwise parsing ends there
        and the rest is content. The result is the same however the output
        was split.
        """
        while True:
            balance = self._balance_point()
            length = self._parse_point()
            if length is not None and (balance is None or length <= balance + 1):
                calls.append(self._take_call(length))
                continue
            if balance is None:
                return ""
            self._state = _State.DONE
            rest = self._buffer[self._owed :]
            self._buffer, self._owed = "", 0
            self._emit("content", rest)
            return rest

    def finish(self) -> tuple[str, list[ToolCall]]:
        """End of output: settle what is held back (see the module notes)."""
        rest = self._buffer[self._owed :]
        self._buffer, self._owed = "", 0
        if self._state is _State.DONE or not rest:
            return "", []
        if self._count == 0:
            self._state = _State.DONE
            self._emit("content", rest)
            return rest, []
        self._state = _State.DONE
        self._emit("markup", rest)
        return "", []

    # ------------------------------------------------------------------

    def _emit(self, kind: str, text: str) -> None:
        if self.log is not None and text:
            self.log.append((kind, text))

    def _find_tag(self) -> tuple[int, bool]:
        buffer, tag = self._buffer, self.tag
        index = buffer.find(tag)
        if index >= 0:
            return index, True
        for size in range(min(len(buffer), len(tag)), 0, -1):
            if buffer.endswith(tag[:size]):
                return len(buffer) - size, False
        return -1, False

    def _balance_point(self) -> int | None:
        """Index where the tag's bracket first closes in the buffer (Ollama's done())."""
        opening, closing = ("{", "}") if self.tag == "{" else ("[", "]")
        depth = 0
        for i, ch in enumerate(self._buffer):
            if ch == opening:
                depth += 1
            elif ch == closing:
                depth -= 1
                if depth == 0:
                    return i
        return None

    def _parse_point(self) -> int | None:
        """Shortest buffer prefix from which a call would be parsed, if any."""
        buffer = self._buffer
        first = _first_object(buffer)
        if first is None:
            return None
        ends = [
            pos + len(name)
            for name in (t.function.name for t in self.tools if t.function.name)
            if (pos := buffer.find(name)) != -1
        ]
        if not ends:
            return None
        length = max(first[1] + 1, min(ends))
        while length <= len(buffer):
            prefix = buffer[:length]
            if not self._tail_waits(prefix):
                tool, _ = self._find_tool(prefix)
                if tool is None:  # pragma: no cover - a name ends within prefix
                    return None
                arguments, _ = _find_arguments(tool, prefix)
                return length if arguments is not None else None
            length += 1
        return None

    def _take_call(self, length: int) -> ToolCall:
        """Parse the call that `_parse_point` found in the first `length` characters."""
        whole = self._buffer
        self._buffer = whole[:length]
        call = self._parse_call()
        self._buffer += whole[length:]
        assert call is not None, "_parse_point promised a call"
        return call

    def _parse_call(self) -> ToolCall | None:
        tool, end = self._find_tool(self._buffer)
        if tool is None:
            return None
        arguments, close = _find_arguments(tool, self._buffer)
        if arguments is None:
            return None
        end = max(end, close)
        # The text the call consumed: up to and including the object's
        # closing brace, even though (like Ollama) that brace stays buffered.
        raw_end = max(end, close + 1)
        raw = self._buffer[self._owed : raw_end]
        self._buffer = self._buffer[end:]
        self._owed = raw_end - end
        self._emit("call", raw)
        call = ToolCall(
            function=ToolCallFunction(name=tool.function.name, arguments=arguments, index=self._count),
            id=self._id_factory() if self._make_ids else "",
            raw=raw,
        )
        self._count += 1
        return call

    def _tail_waits(self, buffer: str) -> bool:
        """A buffer ending in the start of a name must wait: "get" may become "get_weather"."""
        for size in range(1, min(len(buffer), self._longest) + 1):
            tail = buffer[-size:]
            for tool in self.tools:
                name = tool.function.name
                if len(tail) < len(name) and name.startswith(tail):
                    return True
        return False

    def _find_tool(self, buffer: str) -> tuple[Tool | None, int]:
        if not buffer or self._tail_waits(buffer):
            return None, 0
        found: Tool | None = None
        start = -1
        end = -1
        for tool in self.tools:
            name = tool.function.name
            if not name:
                continue
            pos = buffer.find(name)
            if pos == -1:
                continue
            if found is not None and (pos > start or (pos == start and len(name) <= len(found.function.name))):
                continue
            found, start, end = tool, pos, pos + len(name)
        return (found, end) if found is not None else (None, 0)


def _find_arguments(tool: Tool, buffer: str) -> tuple[JSONObject | None, int]:
    """The arguments of the first balanced JSON object, and its closing index."""
    first = _first_object(buffer)
    if first is None:
        return None, 0
    data, close = first
    found, args = _find_object(tool, data)
    return (args if found else data), close


def _first_object(buffer: str) -> tuple[JSONObject, int] | None:
    """The first balanced, valid JSON object in *buffer* and its closing index."""
    start = -1
    braces = 0
    in_string = False
    escaped = False
    for i, ch in enumerate(buffer):
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            continue
        if ch == '"':
            in_string = not in_string
            continue
        if in_string:
            continue
        if ch == "{":
            if braces == 0:
                start = i
            braces += 1
        elif ch == "}":
            braces -= 1
            if braces == 0 and start != -1:
                data = _loads_object(buffer[start : i + 1])
                if data is None:
                    start = -1
                    continue
                return data, i
            if braces < 0:
                braces = 0
    return None


def _find_map(name: str, obj: Mapping[str, Any]) -> tuple[bool, JSONObject | None]:
    value = obj.get(name)
    if isinstance(value, dict):
        return True, value
    if isinstance(value, str):
        parsed = _loads_object(value)
        if parsed is not None:
            return True, parsed
        if value.strip() == "null":
            return True, None
    return False, None


def _find_object(tool: Tool, obj: Mapping[str, Any]) -> tuple[bool, JSONObject | None]:
    if "name" in obj:
        for key in ("arguments", "parameters"):
            ok, args = _find_map(key, obj)
            if ok:
                return True, args
        return True, None
    ok, args = _find_map(tool.function.name, obj)
    if ok:
        return True, args
    for value in obj.values():
        if isinstance(value, dict):
            found, args = _find_object(tool, value)
            if found:
                return True, args
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    found, args = _find_object(tool, item)
                    if found:
                        return True, args
    return False, None
