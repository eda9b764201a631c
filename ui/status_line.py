"""A one-line message under a page's content: what just happened, or what went wrong, in words.

Its colours are meaning colours from `ui/theme.py`, so they stay readable in light and dark.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from ui.theme import Tone, ToneLabel


class StatusLine(ToneLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("", Tone.PLAIN, parent)
        self.setWordWrap(True)
        self.kind = "idle"

    def _set(self, kind: str, text: str, tone: Tone, *, bold: bool = False) -> None:
        self.kind = kind
        self.set_tone(tone, bold=bold)
        self.setText(text)

    def ok(self, text: str) -> None:
        self._set("ok", text, Tone.OK)

    def busy(self, text: str) -> None:
        self._set("busy", text, Tone.PLAIN)

    def error(self, text: str) -> None:
        self._set("error", text, Tone.ERROR, bold=True)
