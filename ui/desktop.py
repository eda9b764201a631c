"""The desktop app's wiring: one client, one monitor, one pull manager, the tray and its windows.

Windows are created on first use and kept (closing hides them), so a
person's filter, selection and pull cards survive closing a window. Quitting
checkpoints pulls, stops polling and stops the embedded server if there is one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import platformdirs
from PySide6.QtCore import QMetaObject, QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QApplication, QWidget

from ui import settings_store as keys
from ui.api_types import RunningModel
from ui.autostart import Autostart, for_this_system
from ui.client import ApiClient
from ui.errors import friendly
from ui.icons import tray_state
from ui.library import LibraryWindow
from ui.monitor import ServerMonitor
from ui.prompter import Prompter
from ui.pull_manager import PullManager
from ui.pull_state import PendingPulls
from ui.pull_window import PullWindow
from ui.resources import model_suggestions
from ui.running import RunningWindow
from ui.server_control import ServerControl
from ui.settings_store import SettingsStore
from ui.settings_window import SettingsWindow
from ui.tray import Tray
from ui.update_check import UPDATE_CHECK, Release, UpdateChecker

log = logging.getLogger("pollama.ui")

#: Settings whose change needs the server restarted (all the window edits do).
RESTART_KEYS = frozenset(keys.WINDOW_KEYS)


class DesktopApp(QObject):
    server_restarted = Signal(str)  # "" or an error

    def __init__(
        self,
        base_url: str,
        server: ServerControl | None = None,
        *,
        status: str = "",
        pending: PendingPulls | None = None,
        settings: SettingsStore | None = None,
        autostart: Autostart | None = None,
        prompter: Prompter | None = None,
        log_dir: Path | None = None,
        use_system_tray: bool = True,
        poll_ms: int = 3000,
        quit_app: Callable[[], None] | None = None,
        version: str | None = None,
    ) -> None:
        """`version`: the running release, which the update check compares with (no check without it)."""
        super().__init__()
        self.server = server
        self.prompter = prompter or Prompter()
        self.settings = settings or SettingsStore()
        self.autostart = autostart or for_this_system()
        self.log_dir = log_dir or Path(platformdirs.user_log_dir("pollama"))
        self.quit_app = quit_app or QApplication.quit
        self.client = ApiClient(base_url, self)
        self.monitor = ServerMonitor(self.client, self, interval_ms=poll_ms)
        self.pulls = PullManager(self.client, pending or PendingPulls(), self)
        self.tray = Tray(self, use_system_tray=use_system_tray)
        self.updates = UpdateChecker(self.settings, version, self) if version else None
        self.base_status = status or f"Server at {base_url}"
        self.tray.set_status(self.base_status)
        self._library: LibraryWindow | None = None
        self._running: RunningWindow | None = None
        self._pull_window: PullWindow | None = None
        self._settings_window: SettingsWindow | None = None
        self._wire()
        self._restart_error = ""
        self.shut_down = False

    def _wire(self) -> None:
        t = self.tray
        t.open_library.connect(self.show_library)
        t.open_running.connect(self.show_running)
        t.open_pulls.connect(self.show_pulls)
        t.open_settings.connect(self.show_settings)
        t.open_logs.connect(self.open_logs)
        t.quit_requested.connect(self.quit)
        t.unload_requested.connect(self.unload)
        self.monitor.running_changed.connect(self._running_changed)
        self.monitor.reachable_changed.connect(self._reachable_changed)
        self.pulls.active_changed.connect(lambda _: self._update_icon())
        self.pulls.finished.connect(self._pull_finished)
        self.pulls.failed.connect(self._pull_failed)
        t.open_update.connect(self.open_update)
        if self.updates is not None:
            self.updates.available.connect(self._update_available)

    def start(self, *, resume_pulls: bool = True) -> None:
        self.monitor.start()
        if self.updates is not None:
            self.updates.start()
        if resume_pulls:
            resumed = self.pulls.resume_pending()
            if resumed:
                log.info("resuming unfinished pulls: %s", ", ".join(resumed))

    # -- windows ---------------------------------------------------------------------------
    def library(self) -> LibraryWindow:
        if self._library is None:
            self._library = LibraryWindow(self.client, self.prompter)
            self.pulls.finished.connect(lambda _: self._library and self._library.refresh())
            self._library.refresh()
        return self._library

    def running(self) -> RunningWindow:
        if self._running is None:
            self._running = RunningWindow(self.client, self.monitor)
        return self._running

    def pull_window(self) -> PullWindow:
        if self._pull_window is None:
            self._pull_window = PullWindow(self.pulls, model_suggestions())
        return self._pull_window

    def settings_window(self) -> SettingsWindow:
        if self._settings_window is None:
            self._settings_window = SettingsWindow(self.settings, self.autostart, self.prompter)
            self._settings_window.saved.connect(self._settings_saved)
        return self._settings_window

    @staticmethod
    def _bring_forward(window: QWidget) -> QWidget:
        window.show()
        window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
        window.raise_()
        window.activateWindow()
        return window

    def show_library(self) -> LibraryWindow:
        window = self.library()
        window.refresh()
        self._bring_forward(window)
        return window

    def show_running(self) -> RunningWindow:
        window = self.running()
        self._bring_forward(window)
        return window

    def show_pulls(self) -> PullWindow:
        window = self.pull_window()
        self._bring_forward(window)
        window.name_edit.setFocus()
        return window

    def show_settings(self) -> SettingsWindow:
        window = self.settings_window()
        window.load()
        self._bring_forward(window)
        return window

    def handle_message(self, message: str) -> None:
        """A second launch asked us to come forward."""
        log.info("another launch asked to %s", message)
        self.show_library()

    def open_logs(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_dir)))

    # -- state -----------------------------------------------------------------------------
    def unload(self, name: str) -> None:
        call = self.client.unload(name)
        call.succeeded.connect(lambda _: self.monitor.refresh())
        call.failed.connect(lambda e: self.tray.notify("Could not unload " + name, friendly(e), error=True))

    def _running_changed(self, models: list[RunningModel]) -> None:
        self.tray.set_running(models)
        self._update_icon()

    def _reachable_changed(self, reachable: bool) -> None:
        if reachable:
            self.tray.set_status(self.base_status)
        else:
            error = self.monitor.last_error
            self.tray.set_status("Server not reachable" + (f": {friendly(error)}" if error else ""))
        self._update_icon()

    def _update_icon(self) -> None:
        self.tray.set_state(
            tray_state(reachable=self.monitor.reachable, running=len(self.monitor.running), pulling=self.pulls.active)
        )

    def _pull_finished(self, model: str) -> None:
        self.tray.notify("Pull finished", f"{model} is ready to use.")

    def _pull_failed(self, model: str, message: str) -> None:
        self.tray.notify(f"Pull of {model} failed", message, error=True)

    @Slot(object)
    def _update_available(self, release: Release) -> None:
        self.tray.show_update(f"pollama {release.version} is available…")
        self.tray.notify("A new pollama is available", f"Version {release.version}: {release.url}")

    def open_update(self) -> None:
        if self.updates is not None and self.updates.latest is not None:
            QDesktopServices.openUrl(QUrl(self.updates.latest.url))

    # -- settings → server -----------------------------------------------------------------
    def _settings_saved(self, changed: list[str]) -> None:
        if UPDATE_CHECK in changed and self.updates is not None:
            self.updates.check_now()
        if self.server is None or not RESTART_KEYS.intersection(changed):
            return
        self.tray.set_status("Restarting the server…")
        self.monitor.stop()
        self.pulls.checkpoint()
        self.server.restart(self._server_ready_from_thread)

    def _server_ready_from_thread(self, error: str | None) -> None:
        self._restart_error = error or ""
        QMetaObject.invokeMethod(self, "_server_ready", Qt.ConnectionType.QueuedConnection)

    @Slot()
    def _server_ready(self) -> None:
        assert self.server is not None
        self.client.base_url = self.server.url
        if self._restart_error:
            self.tray.set_status(f"The server did not restart: {self._restart_error}")
        else:
            self.base_status = f"Server running at {self.server.url.split('://', 1)[-1]}"
            self.tray.set_status(self.base_status)
        self.monitor.start()
        self.pulls.resume_pending()
        self.server_restarted.emit(self._restart_error)

    # -- quit ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Checkpoint pulls, stop polling, stop the embedded server (idempotent)."""
        if self.shut_down:
            return
        self.shut_down = True
        self.pulls.checkpoint()
        self.monitor.stop()
        if self.updates is not None:
            self.updates.stop()
        self.client.abort_all()
        for window in (self._library, self._running, self._pull_window, self._settings_window):
            if window is not None:
                window.close()
        if self.tray.icon is not None:
            self.tray.icon.hide()
        if self.server is not None:
            self.server.stop()

    def quit(self) -> None:
        self.shutdown()
        self.quit_app()
