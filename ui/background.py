"""Work off the GUI thread (a folder scan, hashing a multi-GB file) that reports back through Qt signals and can be cancelled.

`start(work)` runs `work(report, cancelled)` on Qt's thread pool; whatever it
passes to `report` arrives as `progress` on the GUI thread, its return value
as `done`, an exception as `failed` (its text). `cancel()` only raises a
flag: the work checks `cancelled()` between pieces and stops there, so
nothing is left half-written by being killed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger("pollama.ui.background")

Work = Callable[[Callable[[Any], None], Callable[[], bool]], Any]


class Job(QObject):
    progress = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    ended = Signal()

    def __init__(self, work: Work, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._work = work
        self._cancel = threading.Event()
        self.running = False
        self.result: Any = None
        # first, so whoever hears `done`, `failed` or `ended` sees the job no longer running
        self.done.connect(self._ended)
        self.failed.connect(self._ended)

    def start(self) -> Job:
        self.running = True
        job = self

        class _Run(QRunnable):
            def run(self) -> None:
                try:
                    result = job._work(job.progress.emit, job._cancel.is_set)
                except Exception as exc:  # the GUI must hear of it, not a silent thread
                    log.exception("background work failed")
                    job.failed.emit(str(exc) or type(exc).__name__)
                else:
                    job.done.emit(result)
                finally:
                    job.ended.emit()

        QThreadPool.globalInstance().start(_Run())
        return self

    def _ended(self, *_: object) -> None:
        self.running = False

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()
