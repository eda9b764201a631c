"""The main window: one side bar, a page per view, keyboard shortcuts, 800×600, light and dark."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QApplication, QLabel, QWidget

from ui.main_window import MainWindow
from ui.pages import PAGE_NAMES, LazyPage, Page

SMALL = QSize(800, 600)


def test_the_side_bar_has_every_page_in_order(qtbot, desktop) -> None:
    window = desktop.window
    titles = [window.sidebar.item(r).text() for r in range(window.sidebar.count())]
    assert titles == ["Chat", "Discover", "Library", "Running", "Downloads", "Developer", "Settings"]
    assert tuple(window.pages) == PAGE_NAMES
    assert all(isinstance(p, Page) for p in window.pages.values())
    assert not window.page("library").made  # made on first show, not before
    window.sidebar.setCurrentRow(2)  # a click in the side bar
    assert window.current == "library" and window.page("library").made
    assert window.windowTitle() == "pollama — Library"


def test_adding_a_page_is_one_line(qtbot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    shown: list[str] = []
    window.add_page(LazyPage("hello", "Hello", "system-search", lambda: QLabel("hi"), lambda w: shown.append("hello")))
    assert window.sidebar.item(0).text() == "Hello" and not window.sidebar.item(0).icon().isNull()
    widget = window.show_page("hello")
    assert isinstance(widget, QLabel) and shown == ["hello"]
    with pytest.raises(ValueError, match="already there"):
        window.add_page(LazyPage("hello", "Again", "x", QWidget))


def test_every_page_fits_800_by_600(qtbot, desktop) -> None:
    window = desktop.window
    window.resize(SMALL)
    for name in PAGE_NAMES:
        widget = desktop.show_page(name)
        QApplication.processEvents()
        hint = window.minimumSizeHint()
        assert hint.width() <= SMALL.width() and hint.height() <= SMALL.height(), (name, hint)
        assert window.size() == SMALL, name  # the window was not pushed larger
        page_hint = widget.minimumSizeHint()
        assert page_hint.width() <= widget.width() and page_hint.height() <= widget.height(), (name, page_hint)
    # the chat page's options tab too
    chat = desktop.show_chat()
    chat.side_tabs.setCurrentIndex(1)
    QApplication.processEvents()
    assert window.minimumSizeHint().width() <= SMALL.width() and window.minimumSizeHint().height() <= SMALL.height()


def test_shortcuts_new_chat_and_model_picker(qtbot, desktop) -> None:
    window = desktop.window
    chat = desktop.chat()
    with qtbot.waitSignal(chat.models_refreshed, timeout=10_000):
        desktop.show_page("chat")
    desktop.show_page("library")
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)  # shortcuts go to the active window
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert window.current == "chat"
    qtbot.waitUntil(lambda: chat.model_combo.view().isVisible(), timeout=5000)  # the picker is open
    chat.model_combo.hidePopup()
    before = len(chat.store.conversations())
    desktop.show_page("running")
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.current == "chat" and len(chat.store.conversations()) == before + 1
    assert chat.session.conversation is not None and chat.composer.hasFocus()


def test_tray_click_and_chat_item(qtbot, desktop) -> None:
    desktop.show_page("settings")
    desktop.window.hide()
    desktop.tray.open_window.emit()  # a click on the icon: back where it was
    assert desktop.window.isVisible() and desktop.window.current == "settings"
    desktop.tray.chat_action.trigger()
    assert desktop.window.current == "chat"


def test_closing_the_window_quits_when_there_is_no_tray(qtbot, server, prompter, tmp_path) -> None:
    from ui.desktop import DesktopApp
    from ui.pull_state import PendingPulls

    quits: list[bool] = []
    app = DesktopApp(
        server.url,
        None,
        pending=PendingPulls(tmp_path / "p.json"),
        prompter=prompter,
        use_system_tray=False,
        quit_app=lambda: quits.append(True),
    )
    app.show_page("chat")
    app.window.close()
    assert quits == [True] and app.shut_down


@pytest.fixture
def dark(qapp) -> Iterator[None]:
    from ui.theme import Scheme, force_scheme

    palette, style = QApplication.palette(), QApplication.style().name()
    force_scheme(Scheme.DARK)
    try:
        yield
    finally:
        QApplication.setStyle(style)
        QApplication.setPalette(palette)


def test_dark_palette_reaches_the_transcript_and_status_lines(qtbot, desktop, dark) -> None:
    from PySide6.QtGui import QPalette

    from ui.theme import Scheme, Tone, scheme_of, tone_color

    assert scheme_of(QApplication.palette()) is Scheme.DARK
    chat = desktop.show_chat()
    with qtbot.waitSignal(chat.rendered, timeout=5000):
        chat.redraw()
    html = chat.transcript.toHtml()
    assert QApplication.palette().color(QPalette.ColorRole.PlaceholderText).name() in html  # the hint, muted
    chat.status.error("Something broke.")
    assert tone_color(Tone.ERROR, QApplication.palette()).name() in chat.status.styleSheet()
