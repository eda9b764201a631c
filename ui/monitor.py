"""Polls `/api/ps` so the tray, its menu and the running-models window agree.

One poller for the whole app, not one per window: a person who leaves the
window closed should not cost the server a request a second. It also notices
when the server stops answering, which the tray shows as an error.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from ui.api_types import RunningModel, parse_ps
from ui.client import ApiClient, Call
from ui.errors import ApiError

POLL_MS = 3000


class ServerMonitor(QObject):
    running_changed = Signal(list)  # list[RunningModel]
    reachable_changed = Signal(bool)

    def __init__(self, client: ApiClient, parent: QObject | None = None, interval_ms: int = POLL_MS) -> None:
        super().__init__(parent)
        self.client = client
        self.running: list[RunningModel] = []
        self.reachable: bool | None = None
        self.last_error: ApiError | None = None
        self._call: Call | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.refresh)

    def start(self) -> None:
        self._timer.start()
        self.refresh()

    def stop(self) -> None:
        self._timer.stop()
        if self._call is not None:
            self._call.abort()

    def refresh(self) -> None:
        if self._call is not None and not self._call.finished:
            return
        self._call = call = self.client.ps()
        call.succeeded.connect(self._got)
        call.failed.connect(self._failed)

    def _got(self, body: object) -> None:
        self._set_reachable(True)
        running = parse_ps(body)
        if running != self.running:
            self.running = running
            self.running_changed.emit(running)

    def _failed(self, error: ApiError) -> None:
        if error.network == "cancelled":
            return
        self.last_error = error
        self._set_reachable(False)
        if self.running:
            self.running = []
            self.running_changed.emit([])

    def _set_reachable(self, value: bool) -> None:
        if value != self.reachable:
            self.reachable = value
            self.reachable_changed.emit(value)
