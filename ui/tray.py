"""The tray icon and its menu, which carries every action.

Some Linux desktops never deliver a click on the icon and others show no
tray at all, so everything is reachable from the menu, and the menu is an
ordinary `QMenu` that exists (and is tested) whether or not a tray does.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from ui.api_types import RunningModel
from ui.format import gpu_share, human_size
from ui.icons import TrayState, state_icon


class Tray(QObject):
    open_window = Signal()  # a click on the icon: the main window, on the page it was on
    open_chat = Signal()
    open_library = Signal()
    open_running = Signal()
    open_pulls = Signal()
    open_settings = Signal()
    open_logs = Signal()
    quit_requested = Signal()
    unload_requested = Signal(str)
    open_update = Signal()

    def __init__(self, parent: QObject | None = None, *, use_system_tray: bool = True) -> None:
        super().__init__(parent)
        self.state = TrayState.IDLE
        self.menu = QMenu()
        self.status_action = self.menu.addAction("Starting…")
        self.status_action.setEnabled(False)
        self.update_action = self._add("", self.open_update)  # shown when a newer release exists
        self.update_action.setVisible(False)
        self.menu.addSeparator()
        self.chat_action = self._add("Open chat", self.open_chat)
        self.library_action = self._add("Open library", self.open_library)
        self.running_menu = self.menu.addMenu("Running models")
        self.pull_action = self._add("Pull a model…", self.open_pulls)
        self.settings_action = self._add("Settings…", self.open_settings)
        self.logs_action = self._add("Open logs folder", self.open_logs)
        self.menu.addSeparator()
        self.quit_action = self._add("Quit pollama", self.quit_requested)
        self.set_running([])
        self.icon: QSystemTrayIcon | None = None
        if use_system_tray and QSystemTrayIcon.isSystemTrayAvailable():
            self.icon = QSystemTrayIcon(state_icon(self.state), self)
            self.icon.setContextMenu(self.menu)
            self.icon.setToolTip("pollama")
            self.icon.activated.connect(self._activated)
            self.icon.show()

    def _add(self, text: str, signal: SignalInstance) -> QAction:
        action = self.menu.addAction(text)
        action.triggered.connect(lambda: signal.emit())
        return action

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.open_window.emit()

    def show_update(self, text: str) -> None:
        self.update_action.setText(text)
        self.update_action.setVisible(True)

    def set_status(self, text: str) -> None:
        self.status_action.setText(text)
        if self.icon is not None:
            self.icon.setToolTip(f"pollama — {text}")

    def set_state(self, state: TrayState) -> None:
        if state is not self.state:
            self.state = state
            if self.icon is not None:
                self.icon.setIcon(state_icon(state))

    def set_running(self, models: list[RunningModel]) -> None:
        """One submenu per loaded model, titled with its memory, holding an Unload item."""
        menu = self.running_menu
        menu.clear()
        for model in models:
            sub = menu.addMenu(f"{model.name} — {human_size(model.size)} ({gpu_share(model.size, model.size_vram)})")
            unload = sub.addAction("Unload")
            unload.triggered.connect(lambda _=False, name=model.name: self.unload_requested.emit(name))
        if not models:
            empty = menu.addAction("No model loaded")
            empty.setEnabled(False)
        menu.addSeparator()
        show = menu.addAction("Show running models…")
        show.triggered.connect(lambda: self.open_running.emit())
        menu.setTitle(f"Running models ({len(models)})" if models else "Running models")

    def notify(self, title: str, text: str, *, error: bool = False) -> bool:
        """A desktop notification; False where there is no tray to show it from."""
        if self.icon is None or not QSystemTrayIcon.supportsMessages():
            return False
        kind = QSystemTrayIcon.MessageIcon.Critical if error else QSystemTrayIcon.MessageIcon.Information
        self.icon.showMessage(title, text, kind, 8000)
        return True
