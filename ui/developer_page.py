"""The Developer page: the server's log as it is written, and the last requests it answered.

What LM Studio shows in its developer tab, kept simple: a live tail of the
log with a level filter, and a table of the last requests (time, method,
route, model, status, prompt and generated tokens, duration). Both come
from the server's in-memory rings (`GET /api/pollama/logs` and
`/api/pollama/requests`), polled by sequence number while the page is on
screen, so each poll brings only what is new. The tail follows new lines
unless the person scrolled up to read, and then stays where they are.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ui.client import ApiClient, Call
from ui.errors import ApiError, friendly
from ui.status_line import StatusLine

LEVELS = (("Debug", "debug"), ("Info", "info"), ("Warning", "warning"), ("Error", "error"))
REQUEST_COLUMNS = ("Time", "Method", "Route", "Model", "Status", "Prompt tokens", "Generated", "Duration")
#: As many lines and rows as the server keeps, so the page never shows less than it could.
MAX_LOG_LINES = 1000
MAX_REQUEST_ROWS = 200


def _local_time(text: str) -> str:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return text


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


class DeveloperPage(QWidget):
    def __init__(self, client: ApiClient, *, poll_ms: int = 1000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.log_since = 0
        self.requests_since = 0
        self._calls: dict[str, Call] = {}

        self.level_combo = QComboBox()
        for label, value in LEVELS:
            self.level_combo.addItem(label, value)
        self.level_combo.setCurrentIndex(1)  # info: debug is a lot, and the server logs at info by default
        self.level_combo.currentIndexChanged.connect(self._level_changed)
        self.log_view = QPlainTextEdit()
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.log_view.clear)
        self.log_view.setReadOnly(True)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        self.log_view.setPlaceholderText("The server's log appears here as it is written.")
        font = self.log_view.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        self.log_view.setFont(font)
        log_tab = QWidget()
        top = QHBoxLayout()
        top.addWidget(QLabel("Level"))
        top.addWidget(self.level_combo)
        top.addStretch(1)
        top.addWidget(self.clear_button)
        log_layout = QVBoxLayout(log_tab)
        log_layout.addLayout(top)
        log_layout.addWidget(self.log_view, 1)

        self.requests_table = QTableWidget(0, len(REQUEST_COLUMNS))
        self.requests_table.setHorizontalHeaderLabels(REQUEST_COLUMNS)
        self.requests_table.verticalHeader().setVisible(False)
        self.requests_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.requests_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.requests_table.setAlternatingRowColors(True)
        self.requests_table.setWordWrap(False)
        self.requests_table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header = self.requests_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)  # the route

        self.tabs = QTabWidget()
        self.tabs.addTab(log_tab, "Server log")
        self.tabs.addTab(self.requests_table, "Requests")
        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)

        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self.poll)

    # -- page hooks ------------------------------------------------------------------------
    def activated(self) -> None:
        self.poll()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.timer.stop()  # nobody looks: no polling

    @property
    def level(self) -> str:
        return str(self.level_combo.currentData())

    def _level_changed(self) -> None:
        """The server filters by level: start the tail again from what it still keeps."""
        self.log_view.clear()
        self.log_since = 0
        self._calls.pop("logs", None)
        self.poll()

    # -- polling ---------------------------------------------------------------------------
    def poll(self) -> None:
        if "logs" not in self._calls:
            self._start("logs", self.client.logs(self.log_since, self.level), self._got_logs)
        if "requests" not in self._calls:
            self._start("requests", self.client.recent_requests(self.requests_since), self._got_requests)

    def _start(self, key: str, call: Call, then: Any) -> None:
        self._calls[key] = call

        def ok(body: Any) -> None:
            if self._calls.get(key) is call:
                del self._calls[key]
                then(body)

        def bad(error: ApiError) -> None:
            if self._calls.get(key) is call:
                del self._calls[key]
                self.status.error(f"Cannot read the server's {key}: {friendly(error)}")

        call.succeeded.connect(ok)
        call.failed.connect(bad)

    def _got_logs(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        entries = body.get("logs") or []
        self.log_since = int(body.get("last") or self.log_since)
        if self.status.kind == "error":
            self.status.busy("")
        if not entries:
            return
        bar = self.log_view.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 2
        kept = bar.value()
        lines = [
            f"{_local_time(e['time'])} {e['level']:<7} {e['logger']}: {e['message']}"
            for e in entries
            if isinstance(e, dict)
        ]
        self.log_view.appendPlainText("\n".join(lines))
        if following:
            bar.setValue(bar.maximum())
        else:
            bar.setValue(kept)  # the person scrolled up to read: stay there

    def log_lines(self) -> list[str]:
        return self.log_view.toPlainText().splitlines()

    def _got_requests(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        self.requests_since = int(body.get("last") or self.requests_since)
        table = self.requests_table
        for e in body.get("requests") or []:
            if not isinstance(e, dict):
                continue
            table.insertRow(0)  # newest on top
            cells = (
                _local_time(str(e.get("time", ""))),
                str(e.get("method", "")),
                str(e.get("route", "")),
                str(e.get("model", "")),
                str(e.get("status", "")),
                "" if e.get("prompt_tokens") is None else str(e["prompt_tokens"]),
                "" if e.get("eval_tokens") is None else str(e["eval_tokens"]),
                _duration(float(e.get("duration_ms") or 0)),
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col >= 4:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(0, col, item)
        while table.rowCount() > MAX_REQUEST_ROWS:
            table.removeRow(table.rowCount() - 1)

    def request_rows(self) -> list[tuple[str, ...]]:
        t = self.requests_table
        return [
            tuple(item.text() if (item := t.item(r, c)) is not None else "" for c in range(t.columnCount()))
            for r in range(t.rowCount())
        ]
