"""PLACEHOLDERS for the Discover and Developer pages, which are being built separately (issue 20, items 2 and 4).

They exist so the side bar already has every page and `--show discover` /
`--show developer` open something honest: each says what the page will do
and where to do it today. Replace a placeholder by registering the real
page under the same name in `ui/desktop.py`; nothing else refers to these.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

DISCOVER_TEXT = (
    "<h2>Discover</h2>"
    "<p><b>Not built yet.</b> This page will list models to download: a curated catalog of"
    " Ollama library models and a live Hugging Face GGUF search, each showing whether it fits"
    " this machine's memory before anything is downloaded.</p>"
    "<p>Until then, pull a model by name on the <b>Downloads</b> page (for example"
    " <code>llama3.2:1b</code> or <code>hf.co/user/repo:Q4_K_M</code>).</p>"
)

DEVELOPER_TEXT = (
    "<h2>Developer</h2>"
    "<p><b>Not built yet.</b> This page will show the server's log as it is written (with a"
    " level filter) and the last requests it answered: route, model, status, tokens and duration.</p>"
    "<p>Until then, the tray menu's <b>Open logs folder</b> opens the log files.</p>"
)


class PlaceholderPage(QWidget):
    """A page that says, in words, that it is not built yet and what it will hold."""

    is_placeholder = True

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 24)
        layout.addWidget(self.label)
        layout.addStretch(1)

    def activated(self) -> None:
        pass


def discover_placeholder() -> PlaceholderPage:
    return PlaceholderPage(DISCOVER_TEXT)


def developer_placeholder() -> PlaceholderPage:
    return PlaceholderPage(DEVELOPER_TEXT)
