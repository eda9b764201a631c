"""The desktop app's wiring: one client, one monitor, one pull manager, the chat store, the tray and the main window.

Every view is a page of one main window (`ui/main_window.py`), registered
below, one line each; pages are made on first show and kept, so a person's
filter, selection, pull cards and half-written message survive switching
pages or closing the window. A second launch hands over a message ("show"
or "show PAGE") through the single-instance channel. Quitting stops an
answer in flight (what arrived is kept), checkpoints pulls, stops polling
and stops the embedded server if there is one.
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
from ui.chat_page import ChatPage
from ui.chat_store import ChatStore, StoreError
from ui.client import ApiClient
from ui.developer_page import DeveloperPage
from ui.discover_page import DiscoverPage
from ui.errors import friendly
from ui.first_run import ChatHome, FirstRunPage
from ui.gguf_import import BlobImporter, HttpBlobImporter, ItemResult
from ui.gguf_scan import Source, default_sources
from ui.icons import tray_state
from ui.import_dialog import ImportDialog
from ui.library import LibraryWindow
from ui.main_window import MainWindow
from ui.monitor import ServerMonitor
from ui.pages import DEFAULT_PAGE, PAGE_NAMES, LazyPage
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


def parse_message(message: str) -> str | None:
    """A handoff message → the page to show ("" = the window as it was), None if it is not one we know."""
    verb, _, page = message.strip().partition(" ")
    if verb != "show":
        return None
    page = page.strip()
    return page if page in PAGE_NAMES else ""


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
        chat_store: ChatStore | None = None,
        version: str | None = None,
        importer: BlobImporter | None = None,
        import_sources: Callable[[], list[Source]] = default_sources,
        api_key: str | None = None,
    ) -> None:
        """`version`: the running release, which the update check compares with (no check without it).

        `importer`: how imported GGUFs get into the store; by default uploaded over HTTP (the app
        that runs the server itself hands in one that hard-links). `import_sources`: where
        "Import from disk" looks. `api_key`: what the app's own requests carry when the server
        has API keys."""
        super().__init__()
        self.server = server
        self.prompter = prompter or Prompter()
        self.settings = settings or SettingsStore()
        self.autostart = autostart or for_this_system()
        self.log_dir = log_dir or Path(platformdirs.user_log_dir("pollama"))
        self.quit_app = quit_app or QApplication.quit
        self.client = ApiClient(base_url, self, api_key=api_key)
        self.monitor = ServerMonitor(self.client, self, interval_ms=poll_ms)
        self.pulls = PullManager(self.client, pending or PendingPulls(), self)
        self.tray = Tray(self, use_system_tray=use_system_tray)
        self.updates = UpdateChecker(self.settings, version, self) if version else None
        self.base_status = status or f"Server at {base_url}"
        self.tray.set_status(self.base_status)
        self.chat_store_error = ""
        self.chat_store = chat_store or self._open_chat_store()
        self._chat: ChatPage | None = None
        self._chat_home: ChatHome | None = None
        self.importer: BlobImporter = importer or HttpBlobImporter(
            lambda: self.client.base_url, lambda: self.client.api_key
        )
        self.import_sources = import_sources
        self.import_dialog: ImportDialog | None = None
        self._library: LibraryWindow | None = None
        self._running: RunningWindow | None = None
        self._pull_window: PullWindow | None = None
        self._settings_window: SettingsWindow | None = None
        self.window = MainWindow()
        self._add_pages()
        self._wire()
        self._restart_error = ""
        self.shut_down = False

    def _open_chat_store(self) -> ChatStore:
        try:
            return ChatStore()
        except StoreError as exc:
            # Chat still works, it just forgets: better than no window. The page says so.
            log.error("%s; chats are kept in memory only", exc)
            self.chat_store_error = f"Chats are not being saved: {exc}."
            return ChatStore(Path(":memory:"))

    def _add_pages(self) -> None:
        """The side bar, in order. A page is one line: name (for --show), title, icon, how to make its widget."""
        w = self.window
        w.add_page(LazyPage("chat", "Chat", "internet-group-chat", self.chat_home))
        w.add_page(LazyPage("discover", "Discover", "system-search", lambda: DiscoverPage(self.client, self.pulls)))
        w.add_page(LazyPage("library", "Library", "drive-harddisk", self.library))
        w.add_page(LazyPage("running", "Running", "utilities-system-monitor", self.running))
        w.add_page(LazyPage("pulls", "Downloads", "folder-download", self.pull_window))
        w.add_page(LazyPage("developer", "Developer", "utilities-terminal", lambda: DeveloperPage(self.client)))
        w.add_page(LazyPage("settings", "Settings", "preferences-system", self.settings_window))
        w.add_shortcut("Ctrl+N", "New chat", self.new_chat)
        w.add_shortcut("Ctrl+K", "Pick a model", self.pick_model)
        w.closed.connect(self._window_closed)
        w.files_dropped.connect(self.import_files)

    def _wire(self) -> None:
        t = self.tray
        t.open_window.connect(lambda: self.show_page(""))
        t.open_chat.connect(lambda: self.show_page("chat"))
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

    # -- pages -----------------------------------------------------------------------------
    def chat(self) -> ChatPage:
        if self._chat is None:
            self._chat = ChatPage(self.client, self.chat_store, self.monitor, self.prompter)
            self.pulls.finished.connect(lambda _: self._chat and self._chat.refresh_models())
            if self.chat_store_error:
                self._chat.status.error(self.chat_store_error)
        return self._chat

    def chat_home(self) -> ChatHome:
        """The Chat page's place: the chat, or the first-run screen while there is no model."""
        if self._chat_home is None:
            first_run = FirstRunPage()
            first_run.discover_requested.connect(lambda: self.show_page("discover"))
            first_run.import_requested.connect(self.import_from_disk)
            first_run.choose_file_requested.connect(self.choose_gguf)
            first_run.files_dropped.connect(self.import_files)
            self._chat_home = ChatHome(self.chat(), first_run)
        return self._chat_home

    def show_first_run(self) -> FirstRunPage:
        home = self.chat_home()
        self.show_page("chat")
        home.show_first_run()
        return home.first_run

    # -- importing GGUF files ----------------------------------------------------------------
    def import_from_disk(self) -> ImportDialog:
        """Look for GGUFs other tools downloaded and offer to import them."""
        return self._open_import(
            ImportDialog(
                self.client, self.importer, sources=self.import_sources(), prompter=self.prompter, parent=self.window
            )
        )

    def import_files(self, paths: list[Path]) -> ImportDialog:
        """Files dropped on the window or chosen: the same dialog, with just those."""
        return self._open_import(
            ImportDialog(self.client, self.importer, paths=paths, prompter=self.prompter, parent=self.window)
        )

    def choose_gguf(self) -> None:
        path = self.prompter.open_file(self.window, "Choose a GGUF file", "GGUF models (*.gguf)")
        if path is not None:
            self.import_files([path])

    def _open_import(self, dialog: ImportDialog) -> ImportDialog:
        if self.import_dialog is not None:
            self.import_dialog.reject()  # one at a time: the last one asked for
        self.import_dialog = dialog
        dialog.imported.connect(self._imported)
        dialog.show()
        dialog.begin()
        return dialog

    def _imported(self, results: list[ItemResult]) -> None:
        made = [r.item.name for r in results if r.ok]
        if not made:
            return
        self.chat_home().models_added()
        if self._library is not None:
            self._library.refresh()
        self.tray.notify("Models imported", ", ".join(made) + (" is" if len(made) == 1 else " are") + " ready to use.")

    def library(self) -> LibraryWindow:
        if self._library is None:
            self._library = LibraryWindow(self.client, self.prompter)
            self._library.add_models_requested.connect(self.show_first_run)
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

    def show_page(self, name: str = DEFAULT_PAGE) -> QWidget:
        """Bring the main window forward on page `name` ("" = the page it was on)."""
        widget = self.window.show_page(name)
        self.window.bring_forward()
        return widget

    def show_chat(self) -> ChatPage:
        self.show_page("chat")
        return self.chat()

    def show_library(self) -> LibraryWindow:
        self.show_page("library")
        return self.library()

    def show_running(self) -> RunningWindow:
        self.show_page("running")
        return self.running()

    def show_pulls(self) -> PullWindow:
        self.show_page("pulls")
        return self.pull_window()

    def show_settings(self) -> SettingsWindow:
        self.show_page("settings")
        return self.settings_window()

    def new_chat(self) -> None:
        self.show_chat()
        self.chat_home().show_chat()
        self.chat().new_chat()

    def pick_model(self) -> None:
        self.show_chat()
        self.chat_home().show_chat()
        self.chat().focus_model_picker()

    def handle_message(self, message: str) -> None:
        """A second launch asked us to come forward ("show"), maybe on a page ("show library")."""
        log.info("another launch asked to %s", message)
        page = parse_message(message)
        self.show_page(page if page is not None else "")

    def _window_closed(self) -> None:
        """Without a tray icon nothing would be left to reopen the window: closing it quits."""
        if self.tray.icon is None and not self.shut_down:
            self.quit()

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
        self.client.api_key = self.server.api_key  # the settings may have changed the keys
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
        if self._chat is not None:
            self._chat.shutdown()  # before the client aborts everything: the answer is kept as stopped
        if self.import_dialog is not None:
            self.import_dialog.reject()  # a running scan or import stops between pieces
        self.pulls.checkpoint()
        self.monitor.stop()
        if self.updates is not None:
            self.updates.stop()
        self.client.abort_all()
        self.window.hide()
        self.chat_store.close()
        if self.tray.icon is not None:
            self.tray.icon.hide()
        if self.server is not None:
            self.server.stop()

    def quit(self) -> None:
        self.shutdown()
        self.quit_app()
