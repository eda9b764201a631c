"""Splitting a model's raw output into thinking, content and tool calls.

The runner streams text pieces; this pipeline feeds them through the
thinking parser, then the tool-call parser, and says what the client should
see for each piece. Both parsers are lossless (prompt layer tests prove it),
so nothing the model wrote is lost or repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.prompt import ThinkingParser, ToolCallParser


@dataclass
class Piece:
    thinking: str = ""
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.thinking or self.content or self.tool_calls)


class OutputPipeline:
    def __init__(self, thinking: ThinkingParser | None, tools: ToolCallParser | None) -> None:
        self._thinking = thinking
        self._tools = tools

    def feed(self, text: str) -> Piece:
        return self._step(text, final=False)

    def finish(self) -> Piece:
        return self._step("", final=True)

    def _step(self, text: str, *, final: bool) -> Piece:
        piece = Piece()
        content = text
        if self._thinking is not None:
            thinking, content = self._thinking.finish() if final else self._thinking.feed(text)
            if final and text:
                raise AssertionError("finish takes no text")
            piece.thinking = thinking
        if self._tools is not None:
            out, calls = self._tools.feed(content) if content else ("", [])
            if final:
                tail, more = self._tools.finish()
                out += tail
                calls = list(calls) + list(more)
            piece.content = out
            piece.tool_calls = [c.to_dict() for c in calls]
        else:
            piece.content = content
        return piece
