"""Go's duration syntax, because Ollama's clients and env vars speak it.

`keep_alive` and `OLLAMA_KEEP_ALIVE` accept `"5m"`, `"1h30m"`, `"300ms"`,
`"-1"`... exactly as Go's `time.ParseDuration` does, and the API serializes
durations back the way Go prints them (`"5m0s"`). A unitless non-zero string
(`"300"`) is an error in a request, as in Ollama.
"""

from __future__ import annotations

import math
import re

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
#: Go's longest `time.Duration` (`math.MaxInt64` nanoseconds, about 292 years), in seconds.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    pass


def parse_go_duration(text: str) -> float:
    """Parse a Go duration string into seconds (may be negative)."""
    s = text.strip()
    if not s:
        raise DurationError(f'time: invalid duration "{text}"')
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    total_ns = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            if re.fullmatch(r"\d+\.?\d*", s[pos:]):
                raise DurationError(f'time: missing unit in duration "{text}"')
            raise DurationError(f'time: invalid duration "{text}"')
        total_ns += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    if total_ns > 2**63 - 1:  # Go's `time.ParseDuration` refuses what overflows an int64 of nanoseconds
        raise DurationError(f'time: invalid duration "{text}"')
    return sign * total_ns / 1e9


def parse_keep_alive(value: object) -> float:
    """A request's `keep_alive`: a number of seconds or a Go duration string.

    Negative means forever (returned as `math.inf`), and so does a number beyond Go's longest
    duration: Ollama's `api/types.go` `Duration.UnmarshalJSON` turns a negative value into
    `math.MaxInt64`, and pollama does the same with one too large to be a duration at all
    (an expiry that far ahead is past the last date a timestamp can hold, so `/api/ps`
    could not print it). A string that long is Go's parse error, as in Ollama.
    """
    if isinstance(value, bool):
        raise DurationError("keep_alive must be a number or a duration string")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_go_duration(value)
    else:
        raise DurationError("keep_alive must be a number or a duration string")
    if math.isnan(seconds):
        raise DurationError("keep_alive must be a number or a duration string")
    return math.inf if seconds < 0 or seconds >= MAX_DURATION_SECONDS else seconds


def parse_env_duration(text: str) -> float:
    """An env var duration: Go syntax or plain integer seconds (`OLLAMA_KEEP_ALIVE=300`)."""
    s = text.strip()
    try:
        seconds = float(int(s))
    except ValueError:
        seconds = parse_go_duration(s)
    return math.inf if seconds < 0 or seconds >= MAX_DURATION_SECONDS else seconds


def format_go_duration(seconds: float) -> str:
    """Print seconds as Go's `Duration.String()` does (`5m0s`, `1h0m0s`, `300ms`)."""
    if math.isinf(seconds):
        return "-1"
    ns = int(round(seconds * 1e9))
    if ns == 0:
        return "0s"
    neg = ns < 0
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                text = _trim(ns / size) + unit
                break
    else:
        h, rem = divmod(ns, 3_600_000_000_000)
        m, rem = divmod(rem, 60_000_000_000)
        sec = _trim(rem / 1e9) + "s"
        text = (f"{h}h{m}m" if h else f"{m}m" if m else "") + sec
    return ("-" if neg else "") + text


def _trim(x: float) -> str:
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return text or "0"
