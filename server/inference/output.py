"""Splitting a model's raw output into thinking, content and tool calls.

The runner streams text pieces; this pipeline feeds them through the
thinking parser, then the tool-call parser, and says what the client should
see for each piece (an `events.Piece` without logprobs: those are the runner's,
and the service adds them). Both parsers are lossless (prompt layer tests prove
it), so nothing the model wrote is lost or repeated.
"""

from __future__ import annotations

from server.inference.events import Piece
from server.prompt import ThinkingParser, ToolCallParser


class OutputPipeline:
    def __init__(self, thinking: ThinkingParser | None, tools: ToolCallParser | None) -> None:
        self._thinking = thinking
        self._tools = tools

    def feed(self, text: str) -> Piece:
        return self._step(text, final=False)

    def finish(self) -> Piece:
        return self._step("", final=True)

    def _step(self, text: str, *, final: bool) -> Piece:
        thinking = ""
        content = text
        if self._thinking is not None:
            thinking, content = self._thinking.finish() if final else self._thinking.feed(text)
            if final and text:
                raise AssertionError("finish takes no text")
        if self._tools is None:
            return Piece(content=content, thinking=thinking)
        out, calls = self._tools.feed(content) if content else ("", [])
        if final:
            tail, more = self._tools.finish()
            out += tail
            calls = list(calls) + list(more)
        return Piece(content=out, thinking=thinking, tool_calls=tuple(calls))
