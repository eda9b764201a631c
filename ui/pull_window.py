"""Pull a model: a name box with suggestions, then one card per pull with a bar per layer.

The cards draw what `PullManager` holds; they never talk to the server
themselves. Errors appear on the card, in words, next to a Retry button.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCompleter,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ui.format import human_eta, human_rate, human_size
from ui.pull_manager import PullJob, PullManager, PullStatus
from ui.theme import Tone, ToneLabel


def _bar(fraction: float) -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setValue(int(fraction * 1000))
    return bar


class PullCard(QFrame):
    """One pull: overall bar, a bar per layer with speed and ETA, Cancel / Retry / ✕."""

    def __init__(self, manager: PullManager, model: str) -> None:
        super().__init__()
        self.manager, self.model = manager, model
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(f"<b>{model}</b>")
        self.status = QLabel()
        self.overall = _bar(0)
        self.error = ToneLabel("", Tone.ERROR)
        self.error.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.retry_button = QPushButton("Retry")
        self.dismiss_button = QPushButton("✕")
        self.dismiss_button.setToolTip("Remove from the list")
        self.dismiss_button.setFixedWidth(32)
        self.cancel_button.clicked.connect(lambda: manager.cancel(model))
        self.retry_button.clicked.connect(lambda: manager.retry(model))
        self.dismiss_button.clicked.connect(lambda: manager.dismiss(model))
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.cancel_button)
        head.addWidget(self.retry_button)
        head.addWidget(self.dismiss_button)
        self.layers = QGridLayout()
        self.layers.setColumnStretch(1, 1)
        self.layer_bars: dict[str, tuple[QLabel, QProgressBar, QLabel]] = {}
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.status)
        layout.addWidget(self.overall)
        layout.addLayout(self.layers)
        layout.addWidget(self.error)
        self.update_from(manager.jobs[model])

    def update_from(self, job: PullJob) -> None:
        t = job.tracker
        running = job.status is PullStatus.RUNNING
        self.cancel_button.setVisible(running)
        self.retry_button.setVisible(job.status in (PullStatus.FAILED, PullStatus.CANCELLED))
        self.dismiss_button.setVisible(not running)
        self.overall.setValue(int(t.fraction * 1000))
        if job.status is PullStatus.SUCCEEDED:
            self.status.setText(f"Done — {human_size(t.total)}")
        elif job.status is PullStatus.CANCELLED:
            self.status.setText("Cancelled")
        elif job.status is PullStatus.FAILED:
            self.status.setText("Stopped")
        else:
            parts = [t.status]
            if t.total:
                parts.append(f"{human_size(t.completed)} of {human_size(t.total)}")
            if t.rate:
                parts.append(human_rate(t.rate))
            if t.eta is not None:
                parts.append(human_eta(t.eta))
            self.status.setText(" · ".join(parts))
        self.error.setText(job.error)
        self.error.setVisible(bool(job.error))
        for digest, layer in t.layers.items():
            if digest not in self.layer_bars:
                row = len(self.layer_bars)
                widgets = (QLabel(layer.short), _bar(0), QLabel())
                for col, w in enumerate(widgets):
                    self.layers.addWidget(w, row, col)
                self.layer_bars[digest] = widgets
            name, bar, info = self.layer_bars[digest]
            bar.setValue(int(layer.fraction * 1000))
            bar.setFormat(f"{human_size(layer.completed)} / {human_size(layer.total)}")
            extra = [human_rate(layer.rate)] if layer.rate else []
            if layer.eta is not None:
                extra.append(human_eta(layer.eta))
            info.setText(" · ".join(extra) if extra else ("done" if layer.done else ""))


class PullWindow(QWidget):
    pull_requested = Signal(str)

    def __init__(self, manager: PullManager, suggestions: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.manager = manager
        self.setWindowTitle("pollama — Pull a model")
        self.resize(640, 520)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("Model name, e.g. llama3.2 or hf.co/user/repo:Q4_K_M")
        completer = QCompleter(suggestions, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.name_edit.setCompleter(completer)
        self.name_edit.returnPressed.connect(self.pull_typed)
        self.pull_button = QPushButton("Pull")
        self.pull_button.clicked.connect(self.pull_typed)
        self.hint = ToneLabel("Downloads continue where they stopped, even after quitting pollama.", Tone.MUTED)
        row = QHBoxLayout()
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.pull_button)
        self.cards_box = QWidget()
        self.cards = QVBoxLayout(self.cards_box)
        self.cards.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.cards_box)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.hint)
        layout.addWidget(scroll, 1)
        self.card_for: dict[str, PullCard] = {}
        manager.changed.connect(self._changed)
        for model in manager.jobs:
            self._changed(model)

    def activated(self) -> None:
        """Shown as a page: ready to type a name."""
        self.name_edit.setFocus()

    def pull_typed(self) -> None:
        name = self.name_edit.text().strip()
        if not name:
            return
        self.manager.start(name)
        self.name_edit.clear()
        self.pull_requested.emit(name)

    def _changed(self, model: str) -> None:
        job = self.manager.jobs.get(model)
        card = self.card_for.get(model)
        if job is None:
            if card is not None:
                card.deleteLater()
                del self.card_for[model]
            return
        if card is None:
            card = self.card_for[model] = PullCard(self.manager, model)
            self.cards.insertWidget(0, card)
        else:
            card.update_from(job)
