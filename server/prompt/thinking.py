"""Splitting a model's streamed output into thinking and content (Ollama's `thinking/parser.go` `Parser.AddContent`).

A port of Ollama's thinking.Parser: leading white space is skipped; if the
output opens with the opening tag, everything up to the closing tag is
thinking (a partial closing tag at the end of a piece is held back until the
next piece decides it), white space after either tag is eaten, and the rest
is content. Output that starts with anything else has no thinking at all.

Two additions, both so that no character is ever lost: `finish()` releases
what is still held back when the stream ends (Ollama drops it), and with
`record=True` the parser keeps an ordered log of every piece of text it
consumed — thinking, content, or "markup" (the tags and the white space it
ate) — which joined back together is exactly the model's output.
"""

from __future__ import annotations

from enum import Enum

from server.prompt.analysis import go_trim_left_space, go_trim_space


class _State(Enum):
    LOOKING_FOR_OPENING = 0
    STARTED_EATING_WHITESPACE = 1
    THINKING = 2
    DONE_EATING_WHITESPACE = 3
    DONE = 4


def _overlap(text: str, delimiter: str) -> int:
    """Length of the longest suffix of *text* that is a prefix of *delimiter*."""
    for size in range(min(len(text), len(delimiter)), 0, -1):
        if text.endswith(delimiter[:size]):
            return size
    return 0


class ThinkingParser:
    """Feed model output piece by piece; get back (thinking, content) each time."""

    def __init__(
        self,
        open_tag: str,
        close_tag: str,
        *,
        start_in_thinking: bool = False,
        record: bool = False,
    ) -> None:
        if not open_tag or not close_tag:
            raise ValueError("thinking tags must not be empty")
        self.open_tag = open_tag
        self.close_tag = close_tag
        self._state = _State.STARTED_EATING_WHITESPACE if start_in_thinking else _State.LOOKING_FOR_OPENING
        self._acc = ""
        self.log: list[tuple[str, str]] | None = [] if record else None

    @classmethod
    def for_prompt(cls, open_tag: str, close_tag: str, prompt: str, *, record: bool = False) -> ThinkingParser:
        """A parser that starts inside thinking when the prompt ends with the opening tag."""
        inside = go_trim_space(prompt).endswith(open_tag)
        return cls(open_tag, close_tag, start_in_thinking=inside, record=record)

    @property
    def in_thinking(self) -> bool:
        return self._state in (_State.STARTED_EATING_WHITESPACE, _State.THINKING)

    def feed(self, text: str) -> tuple[str, str]:
        """Add output; return the (thinking, content) it settles."""
        self._acc += text
        thinking: list[str] = []
        content: list[str] = []
        while self._eat(thinking, content):
            pass
        return "".join(thinking), "".join(content)

    def finish(self) -> tuple[str, str]:
        """End of output: release whatever was held back."""
        rest, self._acc = self._acc, ""
        if not rest:
            return "", ""
        if self._state is _State.THINKING:
            self._emit("thinking", rest)
            return rest, ""
        if self._state in (_State.STARTED_EATING_WHITESPACE, _State.DONE_EATING_WHITESPACE):
            self._emit("markup", rest)
            return "", ""
        self._emit("content", rest)
        return "", rest

    # ------------------------------------------------------------------

    def _emit(self, kind: str, text: str) -> None:
        if self.log is not None and text:
            self.log.append((kind, text))

    def _eat(self, thinking: list[str], content: list[str]) -> bool:
        """One step of Ollama's `eat`; True when another step may follow."""
        state = self._state
        acc = self._acc
        if state is _State.LOOKING_FOR_OPENING:
            trimmed = go_trim_left_space(acc)
            if trimmed.startswith(self.open_tag):
                after = trimmed[len(self.open_tag) :]
                after_trimmed = go_trim_left_space(after)
                self._emit("markup", acc[: len(acc) - len(after_trimmed)])
                self._acc = after_trimmed
                self._state = _State.STARTED_EATING_WHITESPACE if not after_trimmed else _State.THINKING
                return True
            if self.open_tag.startswith(trimmed):
                return False  # white space or a partial opening tag: wait
            self._state = _State.DONE
            self._acc = ""
            self._emit("content", acc)
            content.append(acc)
            return False
        if state is _State.STARTED_EATING_WHITESPACE:
            trimmed = go_trim_left_space(acc)
            self._emit("markup", acc[: len(acc) - len(trimmed)])
            self._acc = ""
            if not trimmed:
                return False
            self._state = _State.THINKING
            self._acc = trimmed
            return True
        if state is _State.THINKING:
            index = acc.find(self.close_tag)
            if index >= 0:
                before = acc[:index]
                remaining = acc[index + len(self.close_tag) :]
                remaining_trimmed = go_trim_left_space(remaining)
                self._emit("thinking", before)
                self._emit("markup", acc[index : len(acc) - len(remaining_trimmed)])
                self._emit("content", remaining_trimmed)
                self._acc = ""
                self._state = _State.DONE if remaining_trimmed else _State.DONE_EATING_WHITESPACE
                thinking.append(before)
                content.append(remaining_trimmed)
                return False
            held = _overlap(acc, self.close_tag)
            settled = acc[: len(acc) - held]
            self._acc = acc[len(acc) - held :]
            self._emit("thinking", settled)
            thinking.append(settled)
            return False
        if state is _State.DONE_EATING_WHITESPACE:
            trimmed = go_trim_left_space(acc)
            self._emit("markup", acc[: len(acc) - len(trimmed)])
            self._emit("content", trimmed)
            self._acc = ""
            if trimmed:
                self._state = _State.DONE
            content.append(trimmed)
            return False
        self._acc = ""
        self._emit("content", acc)
        content.append(acc)
        return False
