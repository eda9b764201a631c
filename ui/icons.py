"""The tray's state icons, drawn at run time so every platform and scale gets crisp pixels.

One shape (a rounded badge with a llama-ish "p") in a colour per state, and
a small mark for pulling (arrow) and error (exclamation) so the state reads
without colour too.
"""

from __future__ import annotations

import enum

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF


class TrayState(enum.Enum):
    IDLE = "idle"
    LOADED = "loaded"
    PULLING = "pulling"
    ERROR = "error"


COLOURS = {
    TrayState.IDLE: QColor("#6b7280"),
    TrayState.LOADED: QColor("#16a34a"),
    TrayState.PULLING: QColor("#2563eb"),
    TrayState.ERROR: QColor("#dc2626"),
}


def tray_state(*, reachable: bool | None, running: int, pulling: bool) -> TrayState:
    """Which icon to show: a broken server beats a download, which beats a loaded model."""
    if reachable is False:
        return TrayState.ERROR
    if pulling:
        return TrayState.PULLING
    if running:
        return TrayState.LOADED
    return TrayState.IDLE


def draw_icon(state: TrayState, size: int = 64) -> QPixmap:
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 64
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(COLOURS[state])
    p.drawRoundedRect(QRectF(4 * s, 4 * s, 56 * s, 56 * s), 14 * s, 14 * s)
    p.setPen(QColor("white"))
    font = QFont()
    font.setBold(True)
    font.setPixelSize(int(40 * s))
    p.setFont(font)
    p.drawText(QRectF(0, -2 * s, 64 * s, 64 * s), Qt.AlignmentFlag.AlignCenter, "p")
    if state is TrayState.PULLING or state is TrayState.ERROR:
        p.setBrush(QColor("white"))
        p.setPen(QPen(COLOURS[state], 3 * s))
        p.drawEllipse(QPointF(48 * s, 48 * s), 14 * s, 14 * s)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(COLOURS[state])
        if state is TrayState.PULLING:
            arrow = QPolygonF([QPointF(41 * s, 44 * s), QPointF(55 * s, 44 * s), QPointF(48 * s, 56 * s)])
            p.drawPolygon(arrow)
            p.drawRect(QRectF(45.5 * s, 38 * s, 5 * s, 7 * s))
        else:
            path = QPainterPath()
            path.addRect(QRectF(46 * s, 38 * s, 4 * s, 12 * s))
            path.addEllipse(QPointF(48 * s, 55 * s), 2.5 * s, 2.5 * s)
            p.drawPath(path)
    p.end()
    return pix


def state_icon(state: TrayState) -> QIcon:
    icon = QIcon()
    for size in (16, 22, 32, 48, 64, 128):
        icon.addPixmap(draw_icon(state, size))
    return icon
