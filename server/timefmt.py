"""Timestamps as Go's `time.Time` marshals them: RFC 3339, nanoseconds, zeros trimmed."""

from __future__ import annotations

import datetime as dt

#: What Ollama shows for "never expires": Go's max duration after now (~292 years).
FOREVER_YEARS = 292


def rfc3339(ts: float | dt.datetime, *, utc: bool = False) -> str:
    """`2026-08-01T12:00:00.123456Z` (UTC) or with the local offset (`+02:00`)."""
    when = ts if isinstance(ts, dt.datetime) else dt.datetime.fromtimestamp(ts, dt.UTC)
    when = when.astimezone(dt.UTC) if utc else when.astimezone()
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    offset = when.utcoffset() or dt.timedelta(0)
    if offset == dt.timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def utc_now() -> str:
    return rfc3339(dt.datetime.now(dt.UTC), utc=True)


def far_future() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    return now.replace(year=now.year + FOREVER_YEARS)
