"""A one-line message under a window's content: what just happened, or what went wrong, in words."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget


class StatusLine(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.kind = "idle"

    def _set(self, kind: str, text: str, style: str) -> None:
        self.kind = kind
        self.setStyleSheet(style)
        self.setText(text)

    def ok(self, text: str) -> None:
        self._set("ok", text, "color: #15803d;")

    def busy(self, text: str) -> None:
        self._set("busy", text, "")

    def error(self, text: str) -> None:
        self._set("error", text, "color: #b91c1c; font-weight: bold;")
