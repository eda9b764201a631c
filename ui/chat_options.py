"""A conversation's own system prompt and options, with the model's defaults shown beside them.

Each field's lowest value reads "Model default" and means "not sent", so the
model's Modelfile parameters (or the server's defaults) apply; the line at
the bottom says what those defaults are, from `/api/show`. Thinking can only
be set for models whose capabilities include `thinking` (the server refuses
`think` otherwise). Edits apply to the next message, and are saved at once.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ui.chat_api import ChatOptions, ModelFacts, Think, describe_defaults
from ui.theme import Tone, ToneLabel

TEMPERATURE_UNSET = -0.05
SEED_UNSET = -1


class ChatOptionsPanel(QWidget):
    changed = Signal()  # a person edited something (not emitted by `load`)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.system_edit = QPlainTextEdit()
        self.system_edit.setPlaceholderText("System prompt for this chat (empty: the model's own)")
        self.system_edit.setMinimumHeight(60)
        self.temperature_spin = QDoubleSpinBox()
        self.temperature_spin.setRange(TEMPERATURE_UNSET, 2.0)
        self.temperature_spin.setSingleStep(0.05)
        self.temperature_spin.setDecimals(2)
        self.temperature_spin.setSpecialValueText("Model default")
        self.context_spin = QSpinBox()
        self.context_spin.setRange(0, 1 << 20)
        self.context_spin.setSingleStep(1024)
        self.context_spin.setSpecialValueText("Model default")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(SEED_UNSET, 2**31 - 1)
        self.seed_spin.setSpecialValueText("Model default")
        self.think_combo = QComboBox()
        for think in Think:
            self.think_combo.addItem(think.label, think.value)
        self.defaults_label = ToneLabel("", Tone.MUTED)
        self.defaults_label.setWordWrap(True)
        self.think_note = ToneLabel("", Tone.MUTED)
        self.think_note.setWordWrap(True)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Temperature", self.temperature_spin)
        form.addRow("Context", self.context_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Thinking", self.think_combo)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("System prompt"))
        layout.addWidget(self.system_edit, 1)
        layout.addLayout(form)
        layout.addWidget(self.think_note)
        layout.addWidget(self.defaults_label)
        layout.addStretch(0)

        self._loading = False
        self.system_edit.textChanged.connect(self._edited)
        self.temperature_spin.valueChanged.connect(self._edited)
        self.context_spin.valueChanged.connect(self._edited)
        self.seed_spin.valueChanged.connect(self._edited)
        self.think_combo.currentIndexChanged.connect(self._edited)
        self.show_facts(None)

    def _edited(self) -> None:
        if not self._loading:
            self.changed.emit()

    def load(self, system: str, options: ChatOptions) -> None:
        self._loading = True
        try:
            if self.system_edit.toPlainText() != system:
                self.system_edit.setPlainText(system)
            self.temperature_spin.setValue(
                options.temperature if options.temperature is not None else TEMPERATURE_UNSET
            )
            self.context_spin.setValue(options.num_ctx or 0)
            self.seed_spin.setValue(options.seed if options.seed is not None else SEED_UNSET)
            self.think_combo.setCurrentIndex(max(0, self.think_combo.findData(options.think.value)))
        finally:
            self._loading = False

    def system(self) -> str:
        return self.system_edit.toPlainText()

    def options(self) -> ChatOptions:
        temperature = self.temperature_spin.value()
        think = Think(self.think_combo.currentData() or Think.DEFAULT.value)
        return ChatOptions(
            temperature=None if temperature <= TEMPERATURE_UNSET + 1e-9 else round(temperature, 2),
            num_ctx=self.context_spin.value() or None,
            seed=None if self.seed_spin.value() == SEED_UNSET else self.seed_spin.value(),
            think=think if self.think_combo.isEnabled() else Think.DEFAULT,
        )

    def show_facts(self, facts: ModelFacts | None) -> None:
        """The picked model's defaults; thinking only where the model can think."""
        self.defaults_label.setText(describe_defaults(facts) if facts else "Pick a model to see its defaults.")
        can_think = facts is not None and facts.thinking
        self.think_combo.setEnabled(can_think)
        if facts is None:
            self.think_note.setText("")
        elif can_think:
            self.think_note.setText("This model thinks before it answers; its thinking is shown folded.")
        else:
            self.think_note.setText("This model does not think, so the thinking setting does not apply.")
        if facts is not None and facts.system and not self.system_edit.toPlainText():
            self.system_edit.setPlaceholderText(f"The model's own: {facts.system[:200]}")
        elif not self.system_edit.toPlainText():
            self.system_edit.setPlaceholderText("System prompt for this chat (empty: the model's own)")
