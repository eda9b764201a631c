"""The first-run screen: with no model in the store, say in one screen how to get one.

Three ways, side by side: find one on Discover, drop a `.gguf` file on the
window, or import the GGUFs other tools already downloaded (the Hugging Face
cache, LM Studio, GPT4All, Downloads). It stands in place of the chat
(`ChatHome`) while the store is empty, and Library's "Add models…" brings it
back. The screen only asks; `ui/desktop.py` does what each way means.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ui.chat_page import ChatPage
from ui.theme import Tone, ToneLabel

HEADING = "<h2>Get a model to start</h2>"
INTRO = (
    "pollama runs language models on this computer, and none is here yet. "
    "Apps that speak Ollama's, OpenAI's or Anthropic's API can use any model you add."
)


def gguf_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    """The local `.gguf` files a drag carries."""
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile() and u.toLocalFile().lower().endswith(".gguf")]


class _Way(QFrame):
    def __init__(self, title: str, text: str, button: QPushButton | None) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        heading = QLabel(f"<b>{title}</b>")
        body = ToneLabel(text, Tone.MUTED)
        body.setWordWrap(True)
        body.setTextFormat(Qt.TextFormat.RichText)
        body.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(heading)
        layout.addWidget(body, 1)
        if button is not None:
            layout.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)


class FirstRunPage(QWidget):
    discover_requested = Signal()
    import_requested = Signal()
    files_dropped = Signal(list)  # list[Path]
    choose_file_requested = Signal()
    back_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        heading = QLabel(HEADING)
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.discover_button = QPushButton("Discover models")
        self.choose_button = QPushButton("Choose a file…")
        self.import_button = QPushButton("Import from disk…")
        self.discover_button.clicked.connect(self.discover_requested)
        self.choose_button.clicked.connect(self.choose_file_requested)
        self.import_button.clicked.connect(self.import_requested)
        self.ways = [
            _Way(
                "1. Discover a model",
                "Browse a catalog of models and search Hugging Face. Each says whether it fits this"
                " computer's memory before anything is downloaded.",
                self.discover_button,
            ),
            _Way(
                "2. Drop a .gguf file",
                "Drag a GGUF model file from your file manager onto this window, or choose one."
                " pollama reads it and names the model after it.",
                self.choose_button,
            ),
            _Way(
                "3. Import from disk",
                "Use the GGUF files other apps downloaded: the Hugging Face cache, LM Studio,"
                " GPT4All and your Downloads folder. Files on the same disk are linked, not copied.",
                self.import_button,
            ),
        ]
        grid = QGridLayout()
        for col, way in enumerate(self.ways):
            grid.addWidget(way, 0, col)
            grid.setColumnStretch(col, 1)
        self.back_button = QPushButton("Go to your chats")
        self.back_button.setFlat(True)
        self.back_button.clicked.connect(self.back_requested)
        self.drop_hint = ToneLabel("", Tone.ACCENT)
        bottom = QHBoxLayout()
        bottom.addWidget(self.drop_hint, 1)
        bottom.addWidget(self.back_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 24, 32, 24)
        layout.addWidget(heading)
        layout.addWidget(intro)
        layout.addSpacing(12)
        layout.addLayout(grid)
        layout.addStretch(1)
        layout.addLayout(bottom)

    def activated(self) -> None:
        self.import_button.setFocus()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if gguf_paths(event):
            event.acceptProposedAction()
            self.drop_hint.setText("Drop to import it as a model.")
        else:
            event.ignore()

    def dragLeaveEvent(self, event: object) -> None:
        self.drop_hint.setText("")

    def dropEvent(self, event: QDropEvent) -> None:
        paths = gguf_paths(event)
        self.drop_hint.setText("")
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.files_dropped.emit(paths)


class ChatHome(QStackedWidget):
    """The Chat page's place: the chat, or the first-run screen while the store is empty (or when asked for)."""

    def __init__(self, chat: ChatPage, first_run: FirstRunPage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chat, self.first_run = chat, first_run
        self.addWidget(chat)
        self.addWidget(first_run)
        self.forced = False  # Library's "Add models…" asked for it: stays until dismissed or a model comes
        self.dismissed = False  # "Go to your chats" with an empty store: the chats, until a restart
        chat.models_refreshed.connect(self._models)
        first_run.back_requested.connect(self.show_chat)

    @property
    def showing_first_run(self) -> bool:
        return self.currentWidget() is self.first_run

    def activated(self) -> None:
        self.chat.activated()  # refreshes the models; `_models` picks the screen

    def _models(self, names: list[str]) -> None:
        if not names and not self.dismissed:
            self.setCurrentWidget(self.first_run)
        elif names and not self.forced:
            self.setCurrentWidget(self.chat)

    def show_first_run(self) -> None:
        self.forced = True
        self.setCurrentWidget(self.first_run)
        self.first_run.activated()

    def show_chat(self) -> None:
        self.forced = False
        self.dismissed = True
        self.setCurrentWidget(self.chat)
        self.chat.composer.setFocus()

    def models_added(self) -> None:
        """An import or a pull made a model: back to the chat, which lists it."""
        self.forced = False
        self.chat.refresh_models()
