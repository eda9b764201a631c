"""Pulls in progress: start, cancel, retry, remember across restarts. No widgets here.

The pull window draws what this holds; the tray asks it whether anything is
downloading. Quitting checkpoints: the stream is dropped (the server keeps its
partial files) and the pull stays in the pending list, so the next start
resumes it. Cancelling forgets it.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from PySide6.QtCore import QObject, Signal

from ui.client import ApiClient, Call
from ui.errors import ApiError, friendly
from ui.pull_progress import PullTracker
from ui.pull_state import PendingPulls

log = logging.getLogger("pollama.ui.pulls")


class PullStatus(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class PullJob:
    model: str
    insecure: bool
    tracker: PullTracker = field(default_factory=PullTracker)
    status: PullStatus = PullStatus.RUNNING
    error: str = ""
    call: Call | None = None


def is_loopback_registry(model: str) -> bool:
    """A name like `127.0.0.1:5000/library/tiny` points at a registry on this machine, which speaks plain HTTP."""
    first = model.split("/", 1)[0] if "/" in model else ""
    if "." not in first and ":" not in first and first != "localhost":
        return False
    host = urlsplit(f"//{first}").hostname or ""
    return host in ("localhost", "127.0.0.1", "::1")


class PullManager(QObject):
    changed = Signal(str)  # model
    added = Signal(str)
    finished = Signal(str)  # model pulled
    failed = Signal(str, str)  # model, message in words
    active_changed = Signal(bool)

    def __init__(self, client: ApiClient, pending: PendingPulls, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.pending = pending
        self.jobs: dict[str, PullJob] = {}

    @property
    def active(self) -> bool:
        return any(j.status is PullStatus.RUNNING for j in self.jobs.values())

    def start(self, model: str, *, insecure: bool | None = None) -> PullJob:
        model = model.strip()
        insecure = is_loopback_registry(model) if insecure is None else insecure
        job = self.jobs.get(model)
        if job is not None and job.status is PullStatus.RUNNING:
            return job
        was_active = self.active
        job = PullJob(model, insecure)
        is_new = model not in self.jobs
        self.jobs[model] = job
        self.pending.add(model, insecure=insecure)
        call = self.client.pull(model, insecure=insecure)
        job.call = call
        call.received.connect(lambda event, j=job: self._on_event(j, event))
        call.succeeded.connect(lambda _, j=job: self._on_success(j))
        call.failed.connect(lambda error, j=job: self._on_failure(j, error))
        if is_new:
            self.added.emit(model)
        self.changed.emit(model)
        if not was_active:
            self.active_changed.emit(True)
        return job

    def retry(self, model: str) -> PullJob:
        job = self.jobs[model]
        return self.start(model, insecure=job.insecure)

    def cancel(self, model: str) -> None:
        job = self.jobs.get(model)
        if job is None or job.status is not PullStatus.RUNNING:
            return
        job.status = PullStatus.CANCELLED
        self.pending.remove(model)
        if job.call is not None:
            job.call.abort()
        self._settled(job)

    def dismiss(self, model: str) -> None:
        """Forget a finished, failed or cancelled pull (the window's ✕); a failed one is not resumed later."""
        job = self.jobs.get(model)
        if job is not None and job.status is not PullStatus.RUNNING:
            del self.jobs[model]
            self.pending.remove(model)
            self.changed.emit(model)

    def resume_pending(self) -> list[str]:
        """Start again every pull the last session did not finish."""
        resumed = []
        for entry in self.pending.items():
            if entry.model not in self.jobs:
                self.start(entry.model, insecure=entry.insecure)
                resumed.append(entry.model)
        return resumed

    def checkpoint(self) -> None:
        """Quitting: drop the streams but keep the pending list, so the next start resumes them."""
        for job in self.jobs.values():
            if job.status is PullStatus.RUNNING and job.call is not None:
                call, job.call = job.call, None
                call.succeeded.disconnect()
                call.failed.disconnect()
                call.abort()

    # -- stream events -----------------------------------------------------------------
    def _on_event(self, job: PullJob, event: dict) -> None:
        if self.jobs.get(job.model) is not job:
            return
        job.tracker.feed(event)
        self.changed.emit(job.model)

    def _on_success(self, job: PullJob) -> None:
        if self.jobs.get(job.model) is not job or job.status is not PullStatus.RUNNING:
            return
        if not job.tracker.succeeded:
            job.status, job.error = (
                PullStatus.FAILED,
                "The download stopped before it finished. Press Retry to continue.",
            )
            self.failed.emit(job.model, job.error)
        else:
            job.status = PullStatus.SUCCEEDED
            self.pending.remove(job.model)
            self.finished.emit(job.model)
        self._settled(job)

    def _on_failure(self, job: PullJob, error: ApiError) -> None:
        if self.jobs.get(job.model) is not job or job.status is not PullStatus.RUNNING:
            return
        job.status = PullStatus.FAILED
        job.error = friendly(error)
        log.warning("pull of %s failed: %s", job.model, error.message or error.network)
        # A pull the server refused for good (bad name, no such model) is not worth resuming at the next start.
        if error.status in (400, 404) or "does not exist" in error.message:
            self.pending.remove(job.model)
        self.failed.emit(job.model, job.error)
        self._settled(job)

    def _settled(self, job: PullJob) -> None:
        job.call = None
        self.changed.emit(job.model)
        if not self.active:
            self.active_changed.emit(False)
