"""What a page of the main window is: a name, a title, an icon, a widget, and a hook for being shown.

The main window hosts every view (Chat, Discover, Library, Running,
Downloads, Developer, Settings) as a page behind one side bar, instead of
loose windows. A page is anything with these few members, so a new view is
one class (or one `LazyPage(...)` line) and one `add_page` call; the window
knows nothing about what a page does. Widgets are made on first show, so a
view nobody opens costs nothing.

`PAGE_NAMES` are the names `pollama app --show NAME` takes, in side-bar order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle, QWidget

PAGE_NAMES: tuple[str, ...] = ("chat", "discover", "library", "running", "pulls", "developer", "settings")
DEFAULT_PAGE = "chat"


@runtime_checkable
class Page(Protocol):
    name: str  # what `--show` takes: "chat", "pulls" …
    title: str  # the side bar's label: "Chat", "Downloads" …
    icon_name: str  # a freedesktop icon-theme name; a built-in icon stands in where the theme lacks it

    def widget(self) -> QWidget: ...

    def activated(self) -> None:
        """The page became the visible one (refresh, focus its main field)."""
        ...


@runtime_checkable
class ActivatedWidget(Protocol):
    """A page widget that wants to know when it is shown (optional for `LazyPage`'s widgets)."""

    def activated(self) -> None: ...


@dataclass
class LazyPage:
    """A `Page` whose widget `make()` builds on first use; `activated` is forwarded to the widget if it has one."""

    name: str
    title: str
    icon_name: str
    make: Callable[[], QWidget]
    on_activated: Callable[[QWidget], None] | None = None
    _widget: QWidget | None = field(default=None, init=False, repr=False)

    @property
    def made(self) -> bool:
        return self._widget is not None

    def widget(self) -> QWidget:
        if self._widget is None:
            self._widget = self.make()
        return self._widget

    def activated(self) -> None:
        widget = self.widget()
        if self.on_activated is not None:
            self.on_activated(widget)
        elif isinstance(widget, ActivatedWidget):
            widget.activated()


_FALLBACK_ICONS: dict[str, QStyle.StandardPixmap] = {
    "internet-group-chat": QStyle.StandardPixmap.SP_MessageBoxInformation,
    "system-search": QStyle.StandardPixmap.SP_FileDialogContentsView,
    "drive-harddisk": QStyle.StandardPixmap.SP_DriveHDIcon,
    "utilities-system-monitor": QStyle.StandardPixmap.SP_ComputerIcon,
    "folder-download": QStyle.StandardPixmap.SP_ArrowDown,
    "utilities-terminal": QStyle.StandardPixmap.SP_FileDialogDetailedView,
    "preferences-system": QStyle.StandardPixmap.SP_FileDialogInfoView,
}


def page_icon(icon_name: str) -> QIcon:
    """The theme's icon by name, else a built-in one from the style (offscreen and Windows have no theme)."""
    fallback = _FALLBACK_ICONS.get(icon_name, QStyle.StandardPixmap.SP_FileIcon)
    style = QApplication.style()
    return QIcon.fromTheme(icon_name, style.standardIcon(fallback))
