"""Token bytes → text that is safe to send: whole UTF-8 characters, no stop string leaked.

Pure Python, no llama.cpp: the engine hands over each token's bytes and gets
back the text that may go out now. Two things are held back: the tail of an
incomplete UTF-8 sequence (byte-fallback tokens split characters), and any
tail that could still grow into a stop string. Logprobs ride along with the
text they belong to, so a stop string cut out of the text takes its tokens'
logprobs with it.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any


def held_prefix_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


@dataclass
class Emit:
    """What may be sent after one token: text, the logprobs that go with it, and whether a
    stop string ended the sequence."""

    text: str = ""
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False


class TextStream:
    """Per-sequence incremental detokenizer with stop-string matching."""

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self._pending_logprobs: list[dict[str, Any]] = []
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text, if one did

    def push(self, piece: bytes, logprob: dict[str, Any] | None = None) -> Emit:
        """Add one token's bytes; return what can go out now."""
        if self.stopped:
            return Emit(stopped=True)
        self._pending += self._utf8.decode(piece)
        if logprob is not None:
            self._pending_logprobs.append(logprob)
        return self._release(final=False)

    def finish(self) -> Emit:
        """The sequence ended for another reason: flush what was held (incomplete UTF-8 becomes
        U+FFFD, as Ollama's Go strings would when marshalled)."""
        if self.stopped:
            return Emit(stopped=True)
        self._pending += self._utf8.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, final: bool) -> Emit:
        text = self._pending
        if self._stops:
            found = [(i, s) for s in self._stops if (i := text.find(s)) >= 0]
            if found:
                cut, self.matched = min(found)
                self.stopped = True
                self._pending = ""
                # tokens still pending made up the stop string (and maybe some text before it);
                # their logprobs go only if text before the stop goes with them
                logprobs = self._pending_logprobs if cut > 0 else []
                self._pending_logprobs = []
                return Emit(text[:cut], logprobs, stopped=True)
            keep = 0 if final else held_prefix_len(text, self._stops)
        else:
            keep = 0
        if keep:
            if keep == len(text):
                return Emit()
            self._pending = text[-keep:]
            out = text[:-keep]
        else:
            self._pending = ""
            out = text
        logprobs, self._pending_logprobs = self._pending_logprobs, []
        return Emit(out, logprobs)
