"""Light and dark: the window follows the system's palette, and the few colours it adds follow too.

Widgets take their colours from the application palette, which the platform
theme fills from the system's light/dark setting (Qt's
`QStyleHints.colorScheme`). The app adds meaning colours only: an error is
red, success green, a warning amber, a hint muted. Those are picked here per
scheme (the dark shades are lighter, so they read on a dark background) and
re-applied when the palette changes, instead of being written into widgets.

`force_scheme` exists for screenshots and for platforms whose theme cannot
be asked: it sets Qt's colour scheme and, where the platform ignores that
(offscreen, plain X11), a matching Fusion palette.
"""

from __future__ import annotations

import enum

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QWidget


class Scheme(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


class Tone(enum.Enum):
    OK = "ok"
    ERROR = "error"
    WARNING = "warning"
    ACCENT = "accent"
    MUTED = "muted"
    PLAIN = "plain"


#: Meaning colours per scheme; contrast against the scheme's window colour is at least 4.5:1.
_TONES: dict[Scheme, dict[Tone, str]] = {
    Scheme.LIGHT: {Tone.OK: "#15803d", Tone.ERROR: "#b91c1c", Tone.WARNING: "#a16207", Tone.ACCENT: "#6b21a8"},
    Scheme.DARK: {Tone.OK: "#4ade80", Tone.ERROR: "#f87171", Tone.WARNING: "#fbbf24", Tone.ACCENT: "#d8b4fe"},
}


def scheme_of(palette: QPalette) -> Scheme:
    """What the palette in use looks like (the system may say "unknown"; the colours never lie)."""
    return Scheme.DARK if palette.color(QPalette.ColorRole.Window).lightness() < 128 else Scheme.LIGHT


def tone_color(tone: Tone, palette: QPalette) -> QColor:
    if tone is Tone.MUTED:
        return palette.color(QPalette.ColorRole.PlaceholderText)
    if tone is Tone.PLAIN:
        return palette.color(QPalette.ColorRole.WindowText)
    return QColor(_TONES[scheme_of(palette)][tone])


def tone_css(tone: Tone, palette: QPalette, *, bold: bool = False) -> str:
    if tone is Tone.PLAIN and not bold:
        return ""
    css = f"color: {tone_color(tone, palette).name()};"
    return css + (" font-weight: bold;" if bold else "")


_PALETTE_EVENTS = (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange, QEvent.Type.ThemeChange)


class ToneLabel(QLabel):
    """A label in a meaning colour that stays readable when the system switches light/dark."""

    def __init__(self, text: str = "", tone: Tone = Tone.PLAIN, parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.tone = tone
        self.bold = False
        self._restyle()

    def set_tone(self, tone: Tone, *, bold: bool = False) -> None:
        self.tone, self.bold = tone, bold
        self._restyle()

    def _restyle(self) -> None:
        css = tone_css(self.tone, QApplication.palette(), bold=self.bold)
        if css != self.styleSheet():
            self.setStyleSheet(css)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in _PALETTE_EVENTS:
            self._restyle()


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text, mid = QColor("#1e1e1e"), QColor("#2b2b2b"), QColor("#e6e6e6"), QColor("#3c3c3c")
    roles = QPalette.ColorRole
    for role, color in (
        (roles.Window, window),
        (roles.WindowText, text),
        (roles.Base, base),
        (roles.AlternateBase, QColor("#262626")),
        (roles.ToolTipBase, window),
        (roles.ToolTipText, text),
        (roles.PlaceholderText, QColor("#9a9a9a")),
        (roles.Text, text),
        (roles.Button, QColor("#353535")),
        (roles.ButtonText, text),
        (roles.BrightText, QColor("#ffffff")),
        (roles.Light, QColor("#4a4a4a")),
        (roles.Midlight, QColor("#404040")),
        (roles.Mid, mid),
        (roles.Dark, QColor("#151515")),
        (roles.Shadow, QColor("#000000")),
        (roles.Highlight, QColor("#3d6fb4")),
        (roles.HighlightedText, QColor("#ffffff")),
        (roles.Link, QColor("#7fb0ff")),
        (roles.LinkVisited, QColor("#c59bff")),
    ):
        p.setColor(role, color)
    disabled = QColor("#7a7a7a")
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


def force_scheme(scheme: Scheme, app: QApplication | None = None) -> None:
    """Make the app light or dark whatever the system says (screenshots, tests)."""
    application = app or QApplication.instance()
    assert isinstance(application, QApplication), "needs a QApplication"
    QGuiApplication.styleHints().setColorScheme(Qt.ColorScheme.Dark if scheme is Scheme.DARK else Qt.ColorScheme.Light)
    application.processEvents()
    if scheme_of(application.palette()) is scheme:
        return  # the platform theme followed
    application.setStyle("Fusion")
    application.setPalette(_dark_palette() if scheme is Scheme.DARK else application.style().standardPalette())
