"""The server's recent activity, in memory: the last requests it answered and the last log records.

The desktop's Developer view shows both, as LM Studio's developer tab does.
Each is a ring of the last N entries with a sequence number, so a viewer
polls "what came after seq S" and gets only what is new; entries older than
the ring are gone (the log files keep them). Nothing here keeps a request's
body, headers or any key: a request is its route, method, model, status,
token counts and duration; a log record is what the server chose to log.

Both rings are written from any thread (log records come from worker
threads too) and read from the event loop, under one lock each.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from server.timefmt import rfc3339

#: How many requests and log records are kept; a viewer that polls every second or so sees all of them.
REQUESTS_KEPT = 200
LOGS_KEPT = 1000
#: A log message longer than this (a huge traceback) is cut; the log files have it whole.
MESSAGE_MAX = 8000

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class RequestRecord:
    seq: int
    time: float  # when it started, seconds since the epoch
    method: str
    route: str
    model: str
    status: int
    prompt_tokens: int | None
    eval_tokens: int | None
    duration_ms: float

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "time": rfc3339(self.time, utc=True),
            "method": self.method,
            "route": self.route,
            "model": self.model,
            "status": self.status,
            "prompt_tokens": self.prompt_tokens,
            "eval_tokens": self.eval_tokens,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass(frozen=True)
class LogRecord:
    seq: int
    time: float
    level: str
    levelno: int
    logger: str
    message: str

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "time": rfc3339(self.time, utc=True),
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
        }


class RequestRing:
    def __init__(self, kept: int = REQUESTS_KEPT) -> None:
        self._entries: deque[RequestRecord] = deque(maxlen=kept)
        self._seq = 0
        self._lock = threading.Lock()

    def add(
        self,
        *,
        started: float,
        method: str,
        route: str,
        model: str,
        status: int,
        prompt_tokens: int | None,
        eval_tokens: int | None,
        duration_ms: float,
    ) -> RequestRecord:
        with self._lock:
            self._seq += 1
            record = RequestRecord(
                self._seq, started, method, route, model, status, prompt_tokens, eval_tokens, duration_ms
            )
            self._entries.append(record)
            return record

    def since(self, seq: int) -> tuple[list[RequestRecord], int]:
        """The entries after `seq`, oldest first, and the newest sequence number (the next `since`)."""
        with self._lock:
            return [r for r in self._entries if r.seq > seq], self._seq


class LogRing(logging.Handler):
    """A logging handler that keeps the last records; `skip` drops the ones a viewer should not see
    (the log lines of its own polling, which would otherwise fill the ring with themselves)."""

    def __init__(self, kept: int = LOGS_KEPT, skip: Callable[[logging.LogRecord], bool] | None = None) -> None:
        super().__init__(logging.DEBUG)
        self._entries: deque[LogRecord] = deque(maxlen=kept)
        self._seq = 0
        self._ring_lock = threading.Lock()
        self._skip = skip

    def emit(self, record: logging.LogRecord) -> None:
        if self._skip is not None and self._skip(record):
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in some library's call must not break logging
            message = str(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        if len(message) > MESSAGE_MAX:
            message = message[:MESSAGE_MAX] + " …"
        with self._ring_lock:
            self._seq += 1
            self._entries.append(
                LogRecord(self._seq, record.created, record.levelname, record.levelno, record.name, message)
            )

    def since(self, seq: int, level: int = logging.DEBUG) -> tuple[list[LogRecord], int]:
        """Records after `seq` at `level` or above, oldest first, and the newest sequence number."""
        with self._ring_lock:
            return [r for r in self._entries if r.seq > seq and r.levelno >= level], self._seq
