"""Numbers as a person reads them: sizes, rates, durations, "3 days ago".

Sizes use decimal units like Ollama's CLI (`ollama list` says 2.0 GB for
2,000,000,000 bytes), so the window and the terminal agree.
"""

from __future__ import annotations

import datetime as dt

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_size(n: float) -> str:
    if n < 1000:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS[1:]:
        value /= 1000
        if value < 1000 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def human_rate(bytes_per_second: float) -> str:
    return f"{human_size(bytes_per_second)}/s"


def human_duration(seconds: float | None) -> str:
    """`4:59`, `1:02:03`; None means forever."""
    if seconds is None:
        return "forever"
    s = max(0, int(round(seconds)))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def human_eta(seconds: float | None) -> str:
    """Remaining time for a download, coarse on purpose: '2 min left'."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s left"
    if s < 3600:
        return f"{(s + 59) // 60} min left"
    return f"{s // 3600} h {(s % 3600) // 60} min left"


def relative_time(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """`Just now`, `5 minutes ago`, `3 days ago`, as `ollama list` writes MODIFIED."""
    if when is None:
        return ""
    now = now or dt.datetime.now(dt.UTC)
    seconds = (now - when).total_seconds()
    if seconds < 60:
        return "Just now"
    for size, unit in (
        (365 * 86400, "year"),
        (30 * 86400, "month"),
        (7 * 86400, "week"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ):
        if seconds >= size:
            n = int(seconds // size)
            if n == 1:
                return f"{'An' if unit == 'hour' else 'A'} {unit} ago"
            return f"{n} {unit}s ago"
    return "Just now"


def gpu_share(size: int, size_vram: int) -> str:
    """`ollama ps`'s PROCESSOR column: `100% GPU`, `48%/52% CPU/GPU`, `100% CPU`."""
    if size <= 0 or size_vram <= 0:
        return "100% CPU"
    if size_vram >= size:
        return "100% GPU"
    gpu = round(size_vram / size * 100)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def breakable(text: str) -> str:
    """Let a long path wrap at its separators (a zero-width space after each), so a label never widens a page."""
    return text.replace("/", "/\u200b").replace("\\", "\\\u200b")
