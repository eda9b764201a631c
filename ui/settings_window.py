"""Settings: the server's settings file, plus launch at login, in a form a person can read.

Values fixed by environment variables win over the file (the server reads
them first), so their fields are disabled and say which variable sets them.
Saving writes the file atomically and reports which keys changed, so the app
can restart the embedded server only when a change needs it.
"""

from __future__ import annotations

import re
import secrets
from typing import cast

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ui import settings_store as keys
from ui.address import parse_address
from ui.autostart import Autostart
from ui.format import breakable
from ui.prompter import Prompter
from ui.settings_store import SettingsError, SettingsStore
from ui.status_line import StatusLine
from ui.theme import Tone, ToneLabel
from ui.update_check import UPDATE_CHECK, UPDATE_URL, update_settings

_DURATION = re.compile(r"^[+-]?(\d+|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")

NETWORK_WARNING = (
    "Anyone who can reach this computer over the network can use your models, "
    "see their names and download new ones. Only turn this on for a network you trust."
)


WORKERS_HINT = (
    "Machines running `pollama worker` (host:port, comma-separated; the port defaults to 50052) whose "
    "devices hold part of each model. Their protocol has no authentication: list only machines on a "
    "network you trust."
)
KEYS_HINT = (
    "Apps must then send one of these keys (comma-separated), as OpenAI's and Anthropic's SDKs do "
    "(Authorization: Bearer <key>); pollama's own windows send the first. A path (/…, ~/…) names a file "
    "of keys, one per line. Over plain HTTP a key can be read on the way: beyond a trusted network, "
    "put a TLS proxy in front."
)


def valid_duration(text: str) -> bool:
    return bool(_DURATION.match(text.strip()))


class SettingsWindow(QWidget):
    saved = Signal(list)  # names of the settings that changed

    def __init__(
        self,
        store: SettingsStore,
        autostart: Autostart,
        prompter: Prompter | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.autostart = autostart
        self.prompter = prompter or Prompter()
        self.setWindowTitle("pollama — Settings")
        self.resize(640, 480)

        self.models_edit = QLineEdit()
        self.models_edit.setPlaceholderText("~/.ollama/models")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        models_row = QHBoxLayout()
        models_row.addWidget(self.models_edit, 1)
        models_row.addWidget(browse)
        self.browse_button = browse

        self.expose_check = QCheckBox("Expose pollama to the network")
        self.expose_warning = ToneLabel("⚠ " + NETWORK_WARNING, Tone.WARNING)
        self.expose_warning.setWordWrap(True)
        self.expose_check.toggled.connect(self.expose_warning.setVisible)

        self.keys_edit = QLineEdit()
        self.keys_edit.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.keys_edit.setPlaceholderText("No key: anyone on the network may use the server")
        self.generate_key_button = QPushButton("Generate")
        self.generate_key_button.setToolTip("Add a new random key")
        self.generate_key_button.clicked.connect(self.generate_key)
        self.keys_hint = ToneLabel(KEYS_HINT, Tone.MUTED)
        self.keys_hint.setWordWrap(True)
        keys_row = QHBoxLayout()
        keys_row.addWidget(self.keys_edit, 1)
        keys_row.addWidget(self.generate_key_button)
        self.expose_check.toggled.connect(self._show_keys_row)

        self.origins_edit = QLineEdit()
        self.origins_edit.setPlaceholderText("e.g. https://app.example.com, chrome-extension://*")
        self.keep_alive_edit = QLineEdit()
        self.keep_alive_edit.setPlaceholderText("5m (default); 0 unloads at once; -1 keeps forever")
        self.parallel_spin = self._spin(0, 64, "Default (1)")
        self.max_loaded_spin = self._spin(0, 64, "Automatic")
        self.context_spin = self._spin(0, 1 << 20, "Model default", step=1024)
        self.workers_edit = QLineEdit()
        self.workers_edit.setPlaceholderText("None: models run on this computer (e.g. 192.168.1.20:50052)")
        self.workers_edit.setToolTip(WORKERS_HINT)
        self.login_check = QCheckBox("Start pollama when I log in")
        self.update_check = QCheckBox("Tell me when a new pollama release exists (one plain request a day)")

        self.env_labels: dict[str, QLabel] = {}
        form = QFormLayout()
        self._row(form, "Models folder", models_row, keys.MODELS, (self.models_edit, browse))
        self._row(form, "Network", self.expose_check, keys.HOST, (self.expose_check,))
        form.addRow("", self.expose_warning)
        self._row(form, "API keys", keys_row, keys.API_KEYS, (self.keys_edit, self.generate_key_button))
        form.addRow("", self.keys_hint)
        self._form = form
        self._row(form, "Allowed origins", self.origins_edit, keys.ORIGINS, (self.origins_edit,))
        self._row(form, "Keep models loaded for", self.keep_alive_edit, keys.KEEP_ALIVE, (self.keep_alive_edit,))
        self._row(form, "Parallel requests per model", self.parallel_spin, keys.NUM_PARALLEL, (self.parallel_spin,))
        self._row(form, "Models loaded at once", self.max_loaded_spin, keys.MAX_LOADED_MODELS, (self.max_loaded_spin,))
        self._row(form, "Context length (tokens)", self.context_spin, keys.CONTEXT_LENGTH, (self.context_spin,))
        self._row(form, "RPC workers", self.workers_edit, keys.RPC_WORKERS, (self.workers_edit,))
        form.addRow("Launch at login", self.login_check)
        form.addRow("Updates", self.update_check)

        self.path_label = ToneLabel(breakable(f"Stored in {store.path}"), Tone.MUTED)
        self.path_label.setWordWrap(True)
        self.status = StatusLine()
        self.save_button = QPushButton("Save")
        self.revert_button = QPushButton("Revert")
        self.save_button.clicked.connect(self.save)
        self.revert_button.clicked.connect(self.load)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addStretch(1)
        layout.addWidget(self.path_label)
        layout.addLayout(buttons)
        self._port = parse_address(None)
        self.load()

    def activated(self) -> None:
        """Shown as a page: show the file as it is now (the environment or another launch may have changed it)."""
        self.load()

    @staticmethod
    def _spin(low: int, high: int, special: str, step: int = 1) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setSpecialValueText(special)
        return spin

    def _row(self, form: QFormLayout, label: str, field: object, key: str, widgets: tuple[QWidget, ...]) -> None:
        holder = QVBoxLayout()
        holder.setSpacing(2)
        if isinstance(field, QWidget):
            holder.addWidget(field)
        else:
            holder.addLayout(field)  # type: ignore[arg-type]
        env = ToneLabel("", Tone.ACCENT)
        env.setWordWrap(True)
        env.setVisible(False)
        holder.addWidget(env)
        self.env_labels[key] = env
        form.addRow(label, holder)
        self._widgets_for = getattr(self, "_widgets_for", {})
        self._widgets_for[key] = widgets

    def generate_key(self) -> None:
        """Append a fresh random key (what a person would otherwise invent, badly)."""
        current = [k.strip() for k in self.keys_edit.text().split(",") if k.strip()]
        self.keys_edit.setText(",".join([*current, "pk-" + secrets.token_urlsafe(24)]))
        self._show_keys_row()

    def _show_keys_row(self, *_: object) -> None:
        """Keys matter once the server is exposed; a key already set stays visible so it can be removed."""
        visible = self.expose_check.isChecked() or bool(self.keys_edit.text().strip())
        position = cast(tuple[int, QFormLayout.ItemRole], self._form.getWidgetPosition(self.keys_hint))
        hint_row = position[0]
        self._form.setRowVisible(hint_row - 1, visible)  # the keys field, added just before its hint
        self._form.setRowVisible(hint_row, visible)

    def _browse(self) -> None:
        path = self.prompter.choose_dir(self, "Models folder", self.models_edit.text())
        if path is not None:
            self.models_edit.setText(str(path))

    # -- load / save -------------------------------------------------------------------------
    def load(self) -> None:
        try:
            values = self.store.effective()
        except SettingsError as exc:
            self.status.error(f"The settings file cannot be read: {exc}")
            values = dict(self.store.env_fixed())
        self._port = parse_address(values.get(keys.HOST))
        self.models_edit.setText(values.get(keys.MODELS, ""))
        self.expose_check.setChecked(self._port.exposed)
        self.expose_warning.setVisible(self._port.exposed)
        self.origins_edit.setText(values.get(keys.ORIGINS, ""))
        self.keys_edit.setText(values.get(keys.API_KEYS, ""))
        self._show_keys_row()
        self.keep_alive_edit.setText(values.get(keys.KEEP_ALIVE, ""))
        self.parallel_spin.setValue(_to_int(values.get(keys.NUM_PARALLEL)))
        self.max_loaded_spin.setValue(_to_int(values.get(keys.MAX_LOADED_MODELS)))
        self.context_spin.setValue(_to_int(values.get(keys.CONTEXT_LENGTH)))
        self.workers_edit.setText(values.get(keys.RPC_WORKERS, ""))
        self.login_check.setChecked(self.autostart.is_enabled())
        updates = update_settings(self.store)
        self.update_check.setChecked(updates.enabled)
        in_env = UPDATE_CHECK in self.store.environ
        self.update_check.setEnabled(bool(updates.url) and not in_env)
        self.update_check.setToolTip(
            f"Set by {UPDATE_CHECK} in the environment."
            if in_env
            else f"Asks {updates.url}; nothing about this computer is sent."
            if updates.url
            else f"No update address is set: put {UPDATE_URL} in the environment or the settings file."
        )
        fixed = self.store.env_fixed()
        for key, label in self.env_labels.items():
            is_fixed = key in fixed
            label.setVisible(is_fixed)
            label.setText(
                breakable(f"Set by {_shown(key, fixed[key])} in the environment; the environment wins.")
                if is_fixed
                else ""
            )
            for widget in self._widgets_for[key]:
                widget.setEnabled(not is_fixed)
                widget.setToolTip(label.text().replace("\u200b", ""))

    def values(self) -> dict[str, str | None]:
        """The window's values as settings-file entries (None = use the default)."""

        def number(spin: QSpinBox) -> str | None:
            return str(spin.value()) if spin.value() else None

        return {
            keys.MODELS: self.models_edit.text().strip() or None,
            keys.HOST: self._port.setting(exposed=self.expose_check.isChecked()),
            keys.ORIGINS: ",".join(o.strip() for o in self.origins_edit.text().split(",") if o.strip()) or None,
            keys.API_KEYS: _keys_setting(self.keys_edit.text()),
            keys.KEEP_ALIVE: self.keep_alive_edit.text().strip() or None,
            keys.NUM_PARALLEL: number(self.parallel_spin),
            keys.MAX_LOADED_MODELS: number(self.max_loaded_spin),
            keys.CONTEXT_LENGTH: number(self.context_spin),
            keys.RPC_WORKERS: ",".join(w.strip() for w in self.workers_edit.text().split(",") if w.strip()) or None,
        }

    def save(self) -> list[str] | None:
        keep_alive = self.keep_alive_edit.text().strip()
        if keep_alive and not valid_duration(keep_alive):
            self.status.error(f"“{keep_alive}” is not a duration. Write it like 5m, 1h30m, 300 (seconds) or -1.")
            return None
        problem = keys_problem(self.keys_edit.text()) or workers_problem(self.workers_edit.text())
        if problem:
            self.status.error(problem)
            return None
        fixed = self.store.env_fixed()
        changes = {k: v for k, v in self.values().items() if k not in fixed}
        if UPDATE_CHECK not in self.store.environ:
            changes[UPDATE_CHECK] = "1" if self.update_check.isChecked() else None
        try:
            changed = sorted(self.store.save(changes))
        except (OSError, SettingsError) as exc:
            self.status.error(f"Could not save the settings: {exc}")
            return None
        try:
            if self.login_check.isChecked() != self.autostart.is_enabled():
                self.autostart.set_enabled(self.login_check.isChecked())
        except OSError as exc:
            self.status.error(f"Saved, but launch at login could not be changed: {exc}")
            return changed
        self.status.ok("Saved. The server restarts to apply the changes." if changed else "Saved.")
        self.saved.emit(changed)
        return changed


def _shown(key: str, value: str) -> str:
    """`NAME=value` for a setting the environment fixes; keys are secrets, so only the name for them."""
    return key if key == keys.API_KEYS else f"{key}={value}"


def _is_path(text: str) -> bool:
    """The server's rule (`server/config.py` `parse_api_keys`): a value that starts like a path names a key file."""
    return text.startswith(("/", "~", "./", "../", ".\\", "..\\")) or bool(re.match(r"^[A-Za-z]:[/\\]", text))


def _keys_setting(text: str) -> str | None:
    text = text.strip()
    if not text or _is_path(text):
        return text or None
    return ",".join(k.strip() for k in text.split(",") if k.strip()) or None


def workers_problem(text: str) -> str | None:
    """Why the server would refuse this worker list at start-up (`server/runner/rpc_endpoints.py`
    `parse_workers`: host, host:port or [v6]:port, the port 1-65535), said before saving."""
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        port: str | None = None
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif part.count(":") == 1:
            host, port = part.split(":")
        else:
            host = part
        if not host or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
            return f"“{part}” is not a worker address: write host:port (the port 1-65535), e.g. 192.168.1.20:50052."
    return None


def keys_problem(text: str) -> str | None:
    """Why the server would refuse these keys at start-up, said before saving (never quoting a key)."""
    text = text.strip()
    if not text or _is_path(text):
        return None
    for n, key in enumerate((k.strip() for k in text.split(",") if k.strip()), 1):
        if not all(33 <= ord(c) <= 126 for c in key):
            return f"API key {n} has a space or a character other than plain letters, digits and punctuation."
    return None


def _to_int(value: str | None) -> int:
    try:
        return int(keys.clean(value or "0"))
    except ValueError:
        return 0
