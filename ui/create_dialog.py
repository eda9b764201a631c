"""Create a model: a name and a Modelfile (typed, loaded from disk, or just a `.gguf` path)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ui.prompter import Prompter
from ui.theme import Tone, ToneLabel

EXAMPLE = "FROM llama3.2\nPARAMETER temperature 0.7\nSYSTEM You are a helpful assistant.\n"


class CreateDialog(QDialog):
    submitted = Signal(str, str, object)  # name, Modelfile text, folder relative paths resolve against

    def __init__(self, prompter: Prompter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prompter = prompter
        self.base_dir: Path | None = None
        self.setWindowTitle("Create a model")
        self.resize(560, 420)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("my-model")
        self.text_edit = QPlainTextEdit()
        self.text_edit.setPlaceholderText(EXAMPLE)
        load = QPushButton("Open Modelfile…")
        gguf = QPushButton("Use a .gguf file…")
        load.clicked.connect(self._load_modelfile)
        gguf.clicked.connect(self._pick_gguf)
        self.error_label = ToneLabel("", Tone.ERROR)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        row = QHBoxLayout()
        row.addWidget(load)
        row.addWidget(gguf)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Modelfile"))
        layout.addWidget(self.text_edit, 1)
        layout.addLayout(row)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

    def _load_modelfile(self) -> None:
        path = self.prompter.open_file(self, "Open a Modelfile", "Modelfile (Modelfile *.modelfile);;All files (*)")
        if path is None:
            return
        try:
            self.text_edit.setPlainText(path.read_text(encoding="utf-8"))
        except OSError as exc:
            self.error_label.setText(f"Cannot read {path.name}: {exc.strerror or exc}")
            return
        self.base_dir = path.parent

    def _pick_gguf(self) -> None:
        path = self.prompter.open_file(self, "Choose a GGUF file", "GGUF models (*.gguf)")
        if path is None:
            return
        self.text_edit.setPlainText(f"FROM {path}\n")
        if not self.name_edit.text().strip():
            self.name_edit.setText(path.stem.lower())

    def accept(self) -> None:
        name = self.name_edit.text().strip()
        text = self.text_edit.toPlainText()
        if not name:
            self.error_label.setText("Give the model a name.")
            return
        if not text.strip():
            self.error_label.setText("Write a Modelfile, or choose a .gguf file.")
            return
        self.submitted.emit(name, text, self.base_dir)
        super().accept()
