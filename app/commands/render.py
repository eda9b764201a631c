"""Streaming a model's answer to the terminal: word wrap, thinking blocks, tool calls.

Shared by one-shot `run` and the REPL so both print exactly alike. The wrap
algorithm is Ollama's `displayResponse`: characters are written as they
arrive, and when a line would overflow, the partial word is erased with a
cursor move and re-printed on the next line, so text never waits for a
whole word before appearing.
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import IO, Any

from app.formatting import display_width

GREY = "\033[90m"
BOLD = "\033[1m"
DEFAULT = "\033[0m"


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ResponseWriter:
    """Writes one response (thinking, content, tool calls) to `out`."""

    def __init__(self, out: IO[str] | None = None, *, word_wrap: bool = True, hide_thinking: bool = False) -> None:
        self.out = out or sys.stdout
        self.plain = not _isatty(self.out)
        self.width = shutil.get_terminal_size((0, 0)).columns if not self.plain else 0
        self.word_wrap = word_wrap and not self.plain
        self.hide_thinking = hide_thinking
        self.line_length = 0
        self.word_buffer = ""
        self.thinking_open = False
        self.thinking_closed = False
        self.thinking_text = ""
        self.content = ""
        self.wrote_anything = False

    # -- events ---------------------------------------------------------------

    def feed(self, content: str = "", thinking: str = "", tool_calls: list[Any] | None = None) -> None:
        if thinking and not self.hide_thinking:
            if not self.thinking_open:
                self._write("Thinking...\n" if self.plain else GREY + BOLD + "Thinking...\n" + DEFAULT + GREY)
                self.thinking_open = True
                self.thinking_closed = False
            self.thinking_text += thinking
            self._display(thinking)
        if self.thinking_open and not self.thinking_closed and (content or tool_calls):
            if not self.thinking_text.endswith("\n"):
                self._write("\n")
            closing = "...done thinking.\n\n"
            self._write(closing if self.plain else GREY + BOLD + closing + DEFAULT)
            self.thinking_open = False
            self.thinking_closed = True
            self.line_length = 0
            self.word_buffer = ""
        if content:
            self.content += content
            self._display(content)
        if tool_calls:
            self._write(self._tool_calls(tool_calls))

    def finish_interrupted(self) -> None:
        """After Ctrl+C: leave the terminal on a fresh line with default colours."""
        if self.thinking_open and not self.plain:
            self._write(DEFAULT)
        if self.wrote_anything:
            self._write("\n")

    # -- output ---------------------------------------------------------------

    def _write(self, text: str) -> None:
        if text:
            self.wrote_anything = True
            self.out.write(text)
            self.out.flush()

    def _display(self, content: str) -> None:
        width = self.width
        if not (self.word_wrap and width >= 10):
            self._write(self.word_buffer + content)
            self.word_buffer = ""
            return
        parts: list[str] = []
        for ch in content:
            ch_width = display_width(ch)
            if self.line_length + 1 > width - 5:
                if display_width(self.word_buffer) > width - 10:
                    parts.append(self.word_buffer + ch)
                    self.word_buffer = ""
                    self.line_length = 0
                    continue
                back = display_width(self.word_buffer)
                if back > 0:
                    parts.append(f"\x1b[{back}D")
                parts.append("\x1b[K\n")
                parts.append(self.word_buffer + ch)
                self.line_length = display_width(self.word_buffer) + ch_width
            else:
                parts.append(ch)
                self.line_length += ch_width
                if ch_width >= 2:
                    self.word_buffer = ""
                    continue
                if ch in (" ", "\t"):
                    self.word_buffer = ""
                elif ch in ("\n", "\r"):
                    self.line_length = 0
                    self.word_buffer = ""
                else:
                    self.word_buffer += ch
        self._write("".join(parts))

    def _tool_calls(self, calls: list[Any]) -> str:
        out = "" if self.plain else GREY + BOLD
        value, explain = ("", "") if self.plain else (DEFAULT, GREY + BOLD)
        for i, call in enumerate(calls):
            fn = (call or {}).get("function") or {}
            args = json.dumps(fn.get("arguments") or {}, separators=(",", ":"))
            if i:
                out += "\n"
            out += (
                f"  Model called a non-existent function '{value}{fn.get('name', '')}{explain}()' "
                f"with arguments: {value}{args}{explain}"
            )
        if not self.plain:
            out += DEFAULT
        return out
