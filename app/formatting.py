"""Human units, times and tables exactly as `ollama` prints them (Ollama's `format/bytes.go` `HumanBytes`, `format/time.go` `HumanTime`, `cmd/cmd.go`).

Scripts parse `ollama list` and `ollama ps`; `pollama` must print the same
bytes so those scripts keep working. Every function here is pure (no I/O,
no clock unless one is passed in) so it is tested exhaustively and cheaply.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

KB = 1000
MB = KB * 1000
GB = MB * 1000
TB = GB * 1000


def human_bytes(n: int | float) -> str:
    """Go's `format.HumanBytes`: 1000-based units; ≥10 → integer; else one decimal if fractional."""
    b = int(n)
    for size, unit in ((TB, "TB"), (GB, "GB"), (MB, "MB"), (KB, "KB")):  # noqa: B007 (unit is used after the loop)
        if b >= size:
            value = b / size
            break
    else:
        return f"{b} B"
    if value >= 10:
        return f"{int(value)} {unit}"
    if value != math.trunc(value):
        return f"{value:.1f} {unit}"  # Go %.1f rounds the binary value as Python does
    return f"{int(value)} {unit}"


def human_number(n: int | float) -> str:
    """Go's `format.HumanNumber`: `8B`, `3.2B`, `137M`, `22.57M`, `500K`, else the integer."""
    b = int(n)
    if b >= 1_000_000_000:
        v = b / 1_000_000_000
        return f"{v:.0f}B" if v == math.floor(v) else f"{v:.1f}B"
    if b >= 1_000_000:
        v = b / 1_000_000
        return f"{v:.0f}M" if v == math.floor(v) else f"{v:.2f}M"
    if b >= 1_000:
        return f"{b / 1_000:.0f}K"
    return str(b)


def human_duration(seconds: float) -> str:
    """Go's `format.humanDuration`: `Less than a second` … `N years` (no suffix)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(_go_round(seconds / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _go_round(x: float) -> float:
    """Go's math.Round: half away from zero (Python's round() is half-to-even)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def parse_time(text: str | None) -> dt.datetime | None:
    """An RFC 3339 timestamp from the API; Go's zero time (year 1) and junk become None."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when.year <= 1:
        return None
    return when


def human_time(when: dt.datetime | str | None, zero: str = "Never", *, now: dt.datetime | None = None) -> str:
    """Go's `format.HumanTime`: `3 weeks ago`, `4 minutes from now`, `Forever`, or `zero`."""
    if isinstance(when, str) or when is None:
        when = parse_time(when)
    if when is None:
        return zero
    now = now or dt.datetime.now(dt.UTC)
    delta = (now - when).total_seconds()
    # Go: int(delta.Hours())/24/365 < -20, integer divisions truncating toward zero.
    if math.trunc(math.trunc(delta / 3600) / (24 * 365)) < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def go_duration(nanoseconds: int | float) -> str:
    """A metrics duration (integer ns) printed as Go's `time.Duration.String()`."""
    from server.duration import format_go_duration

    return format_go_duration(float(nanoseconds) / 1e9)


def table(rows: Sequence[Sequence[str]], headers: Sequence[str] | None = None, padding: str = "    ") -> str:
    """tablewriter as Ollama configures it: no borders, left aligned, `padding` between columns.

    Cells are padded to their column's width and every cell of a row is
    followed by `padding` (so lines end in spaces, as Ollama's do); the header
    line's last cell is followed by a single space, a tablewriter quirk that
    scripts splitting on whitespace never notice but byte comparisons do.
    """
    all_rows = ([list(headers)] if headers else []) + [list(r) for r in rows]
    if not all_rows:
        return ""
    ncols = max(len(r) for r in all_rows)
    widths = [0] * ncols
    for r in all_rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], display_width(cell))
    out: list[str] = []
    if headers:
        cells = [_pad(h, widths[i]) for i, h in enumerate(headers)]
        out.append(padding.join(cells) + " ")
    for row in rows:
        out.append("".join(_pad(cell, widths[i]) + padding for i, cell in enumerate(row)))
    return "\n".join(out) + "\n"


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def display_width(text: str) -> int:
    """Terminal cells a string takes (wide East Asian characters count two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def processor(size: int, size_vram: int) -> str:
    """`ollama ps` PROCESSOR column."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = _go_round((size - size_vram) / size * 100)
    return f"{int(cpu)}%/{int(100 - cpu)}% CPU/GPU"


def until(expires_at: str | None, *, now: dt.datetime | None = None) -> str:
    """`ollama ps` UNTIL column: `Stopping...` once the time has passed."""
    when = parse_time(expires_at)
    now = now or dt.datetime.now(dt.UTC)
    if when is not None and now > when:
        return "Stopping..."
    return human_time(when, "Never", now=now)


def go_value(value: Any) -> str:
    """A JSON value printed as Go's `%v` would print the decoded `any`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) or isinstance(value, int):
        return go_g(float(value))
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    return str(value)


def go_g(value: float) -> str:
    """Go's `%g` for a float64 (shortest digits; exponent form below 1e-4 or from 1e+06)."""
    import decimal

    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exp = decimal.Decimal(repr(value)).as_tuple()
    digits = list(digit_tuple)
    assert isinstance(exp, int)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exp += 1
    nd = len(digits)
    dp = nd + exp  # position of the decimal point within the digits
    x = dp - 1
    s = "-" if sign else ""
    ds = "".join(map(str, digits))
    if x < -4 or x >= 6:  # Go: shortest formatting uses eprec = 6
        mantissa = ds[0] + ("." + ds[1:] if nd > 1 else "")
        return f"{s}{mantissa}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if dp <= 0:
        return s + "0." + "0" * (-dp) + ds
    if dp >= nd:
        return s + ds + "0" * (dp - nd)
    return s + ds[:dp] + "." + ds[dp:]


def metrics_summary(resp: dict[str, Any]) -> str:
    """`--verbose` timing stats, line for line as Ollama's `Metrics.Summary`."""
    lines: list[str] = []
    total = resp.get("total_duration") or 0
    load = resp.get("load_duration") or 0
    pcount = resp.get("prompt_eval_count") or 0
    pdur = resp.get("prompt_eval_duration") or 0
    ecount = resp.get("eval_count") or 0
    edur = resp.get("eval_duration") or 0
    if total > 0:
        lines.append(f"total duration:       {go_duration(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration(load)}")
    if pcount > 0:
        lines.append(f"prompt eval count:    {pcount} token(s)")
    if pdur > 0:
        lines.append(f"prompt eval duration: {go_duration(pdur)}")
        lines.append(f"prompt eval rate:     {pcount / (pdur / 1e9):.2f} tokens/s")
    if ecount > 0:
        lines.append(f"eval count:           {ecount} token(s)")
    if edur > 0:
        lines.append(f"eval duration:        {go_duration(edur)}")
        lines.append(f"eval rate:            {ecount / (edur / 1e9):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)


def head_lines(text: str, n: int) -> list[str]:
    """The first `n` non-empty trimmed lines, then `...` if there were more (show's System/License)."""
    kept: list[str] = []
    count = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        count += 1
        if n < 0 or count <= n:
            kept.append(line)
    if 0 <= n < count:
        kept.append("...")
    return kept


def float32_json(value: float) -> str:
    """A float32 as Go's encoding/json writes it (`ollama run` prints embeddings this way).

    Shortest digits that read back as the same float32, positional unless
    tiny or huge, exponent without a leading zero (`1.5e-7`).
    """
    import decimal
    import struct

    def f32(x: float) -> float:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])

    x = f32(value)
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"json: unsupported value: {x}")
    for precision in range(1, 10):
        text = f"{x:.{precision}g}"
        if f32(float(text)) == x:
            break
    if 1e-6 <= abs(x) < 1e21:
        out = format(decimal.Decimal(text), "f")
        return out.rstrip("0").rstrip(".") if "." in out else out
    mantissa, _, exp = f"{decimal.Decimal(text):e}".partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    e = int(exp)
    return f"{mantissa}e{'-' if e < 0 else '+'}{abs(e)}"
