"""How log lines look: Ollama's `key=value` text, or one JSON object per line (`POLLAMA_LOG_FORMAT=json`).

The JSON form is for log shippers (Loki, Vector, Fluent Bit, journald's JSON
readers): every line is an object with `time` (RFC 3339, UTC, microseconds),
`level`, `logger` and `message`, plus each field a call passes in `extra`
(the access log's `method`, `path`, `status`, `duration_ms`, `remote`) and
`exc_info` with the traceback of a logged exception. The formatting itself is
python-json-logger's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

#: Ollama's slog text handler writes `time=… level=… source=… msg=…`.
TEXT_FORMAT = "time=%(asctime)s level=%(levelname)s source=%(name)s msg=%(message)s"


class JsonLineFormatter(JsonFormatter):
    """python-json-logger with pollama's field names, `time` first."""

    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for `Config.log_format` (`text` or `json`)."""
    if log_format == "json":
        return JsonLineFormatter()
    return logging.Formatter(TEXT_FORMAT)
