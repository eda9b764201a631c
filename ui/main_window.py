"""The one main window: a side bar of pages on the left, the current page on the right.

Pages are registered with `add_page` (see `ui/pages.py`) and made on first
show. Window-wide shortcuts (Ctrl+N, Ctrl+K) are actions on the window
itself, so they work whichever page is in front; the app wires what they do.
Closing the window hides it (the tray keeps the app); the app decides what
closing means where there is no tray. A `.gguf` file dropped where no page
takes it is handed on (`files_dropped`): the app offers to import it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QMainWindow, QStackedWidget, QWidget

from ui.first_run import gguf_paths
from ui.pages import DEFAULT_PAGE, Page, page_icon

SIDEBAR_WIDTH = 150
DEFAULT_SIZE = QSize(1100, 720)
NAME_ROLE = Qt.ItemDataRole.UserRole + 1


class MainWindow(QMainWindow):
    page_changed = Signal(str)
    closed = Signal()
    files_dropped = Signal(list)  # list[Path]: `.gguf` files dropped anywhere a page does not take them

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("pollama")
        self.pages: dict[str, Page] = {}
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(SIDEBAR_WIDTH)
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setSpacing(2)
        self.sidebar.currentItemChanged.connect(self._sidebar_picked)
        self.stack = QStackedWidget()
        body = QWidget()
        layout = QHBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(body)
        self.resize(DEFAULT_SIZE)
        self.setAcceptDrops(True)
        self._current = ""

    # -- pages -----------------------------------------------------------------------------
    def add_page(self, page: Page) -> None:
        if page.name in self.pages:
            raise ValueError(f"a page named {page.name!r} is already there")
        self.pages[page.name] = page
        item = QListWidgetItem(page_icon(page.icon_name), page.title)
        item.setData(NAME_ROLE, page.name)
        item.setToolTip(page.title)
        self.sidebar.addItem(item)

    def page(self, name: str) -> Page:
        return self.pages[name]

    @property
    def current(self) -> str:
        return self._current

    def show_page(self, name: str = "") -> QWidget:
        """Bring `name` (or the current page, or the default one) to the front and tell it."""
        name = name or self._current or DEFAULT_PAGE
        page = self.pages[name]
        widget = page.widget()
        if self.stack.indexOf(widget) < 0:
            self.stack.addWidget(widget)
        self.stack.setCurrentWidget(widget)
        changed = name != self._current
        self._current = name
        self.setWindowTitle(f"pollama — {page.title}")
        for row in range(self.sidebar.count()):
            item = self.sidebar.item(row)
            if item.data(NAME_ROLE) == name and self.sidebar.currentRow() != row:
                self.sidebar.blockSignals(True)
                self.sidebar.setCurrentRow(row)
                self.sidebar.blockSignals(False)
        page.activated()
        if changed:
            self.page_changed.emit(name)
        return widget

    def _sidebar_picked(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if item is not None:
            self.show_page(str(item.data(NAME_ROLE)))

    def bring_forward(self) -> None:
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()

    # -- window-wide shortcuts -------------------------------------------------------------
    def add_shortcut(
        self, keys: QKeySequence | QKeySequence.StandardKey | str, text: str, do: Callable[[], None]
    ) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(keys))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(lambda: do())
        self.addAction(action)
        return action

    # -- a .gguf dropped on the window ---------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if gguf_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = gguf_paths(event)
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.files_dropped.emit(paths)

    def closeEvent(self, event: QCloseEvent) -> None:
        super().closeEvent(event)
        self.closed.emit()
