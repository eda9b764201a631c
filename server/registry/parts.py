"""The part planner and resume state of one blob download: no I/O here.

A blob is fetched as ranged parts written into `<blob>-partial` at their
offsets; each part's progress is persisted as `<blob>-partial-<N>` in
Ollama's JSON shape, so a pull that dies (crash, kill, disconnect) picks up
where the last checkpoint left it, and Ollama's own partial downloads resume
here too. Everything that decides *what* to fetch is in this module so it can
be tested exhaustively without sockets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MB = 1000 * 1000


@dataclass(frozen=True)
class PartSizing:
    """How a blob is cut: total/max_parts clamped to [min_size, max_size].

    Ollama (`server/download.go` `blobDownload.Prepare`) cuts at most 16 parts of at least 100 MB and fetches each
    with its own request, all at once. In pollama a part is the unit of the
    resume records and of handing work to another lane, not of requests: a
    lane fetches a whole stretch of parts with one request (`claims.py`).
    Parts of 32 MB let a slow link spread over more lanes, and let a lane
    that is added take work close behind the hasher's frontier. The records
    are Ollama's format either way, and a download resumes from any tiling
    of the blob, so partial downloads still move between the two programs.
    """

    min_size: int = 32 * MB
    max_size: int = 1000 * MB
    max_parts: int = 64
    #: A fixed size overrides the computed one (tests, slow links).
    fixed_size: int = 0

    def part_size(self, total: int) -> int:
        if self.fixed_size > 0:
            return self.fixed_size
        size = total // max(1, self.max_parts)
        return max(self.min_size, min(self.max_size, size))


@dataclass
class Part:
    """One range of a blob. `completed` counts bytes written to disk, from `offset`."""

    n: int
    offset: int
    size: int
    completed: int = 0

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.offset + self.size

    @property
    def next_byte(self) -> int:
        return self.offset + self.completed

    @property
    def remaining(self) -> int:
        return self.size - self.completed

    @property
    def done(self) -> bool:
        return self.completed >= self.size

    def to_json(self) -> bytes:
        """Ollama's part file: `{"N":..,"Offset":..,"Size":..,"Completed":..}`."""
        obj = {"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed}
        return json.dumps(obj, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Part | None:
        """A part record, or None if it is not one (a damaged file is just ignored)."""
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(obj, dict):
            return None
        values = []
        for key in ("N", "Offset", "Size", "Completed"):
            v = obj.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                return None
            values.append(v)
        n, offset, size, completed = values
        if size <= 0 or completed > size:
            return None
        return cls(n, offset, size, completed)


def plan(total: int, sizing: PartSizing) -> list[Part]:
    """Fresh parts covering [0, total)."""
    if total <= 0:
        return []
    size = sizing.part_size(total)
    return [Part(n, offset, min(size, total - offset)) for n, offset in enumerate(range(0, total, size))]


def resume(total: int, records: Iterable[Part]) -> list[Part] | None:
    """The recorded parts if they tile [0, total) exactly (any sizing), else None.

    Anything else (a different total, a gap, an overlap, a duplicate number)
    means the state is not ours to trust, and the download starts over.
    """
    parts = sorted(records, key=lambda p: p.offset)
    if not parts:
        return None
    if len({p.n for p in parts}) != len(parts):
        return None
    cursor = 0
    for part in parts:
        if part.offset != cursor:
            return None
        cursor = part.end
    if cursor != total:
        return None
    return parts


def restore(total: int, sizing: PartSizing, records: Iterable[Part], file_size: int | None) -> tuple[list[Part], bool]:
    """Parts to download and whether they resume earlier work.

    The partial data file must exist with the full size (it is created sparse
    at `total`); without it recorded progress means nothing.
    """
    if file_size == total:
        parts = resume(total, records)
        if parts is not None:
            return parts, any(p.completed for p in parts)
    return plan(total, sizing), False


def completed(parts: Sequence[Part]) -> int:
    return sum(p.completed for p in parts)


def frontier(parts: Sequence[Part]) -> int:
    """Offset up to which every byte is on disk: the hasher may read up to here."""
    cursor = 0
    for part in sorted(parts, key=lambda p: p.offset):
        if part.offset != cursor:
            return cursor
        cursor = part.next_byte
        if not part.done:
            return cursor
    return cursor


@dataclass(frozen=True)
class LanePolicy:
    """How many lanes (connections) fetch one blob at once, up to the configured parallelism.

    Ollama opens 16 connections per blob, which a CDN path needs: one TCP
    stream over a long path carries a few tens of MB/s. Against a registry
    on this machine or the LAN one connection already brings bytes as fast
    as they can be written and hashed; more only cost CPU on both ends and
    spread the bytes in flight, while the hasher needs them in order. So a
    download starts with `first` lane and doubles them while each lane
    moves less than `fast_lane` bytes a second: a lane that slow is limited
    by its path, and another one adds to it.
    """

    first: int = 1
    fast_lane: float = 64 * MB

    def next_width(self, width: int, limit: int, rate: float) -> int:
        """Lanes for the next interval, given the bytes per second of the last one."""
        if width >= limit or rate >= width * self.fast_lane:
            return width
        return min(limit, width * 2)


@dataclass(frozen=True)
class RetryPolicy:
    """When a part that failed is tried again (Ollama's `server/download.go` `blobDownload.run`: 6 tries, 2^try s apart).

    A stall (no bytes for `stall_timeout`) restarts the part without counting
    as a try: the link is slow or a connection hung, not the registry broken.
    A try that made progress resets the count, so a long download over a
    flaky link is not failed by errors spread over hours.
    """

    max_tries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 32.0
    stall_timeout: float = 30.0

    def delay(self, failures: int) -> float | None:
        """Seconds to wait before the next try after `failures` consecutive failures; None = give up."""
        if failures >= self.max_tries:
            return None
        return min(self.backoff_max, self.backoff_base * (2 ** (failures - 1))) if failures > 0 else 0.0


class PartAttempts:
    """The consecutive-failure count of one part, fed with what each try did."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def failed(self, *, progressed: bool, stalled: bool, permanent: bool = False) -> float | None:
        """Record a failed try; returns the wait before retrying, or None to give up."""
        if permanent:
            return None
        if progressed:
            self.failures = 0
        if stalled:
            return 0.0
        self.failures += 1
        return self.policy.delay(self.failures)


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """`bytes <start>-<end>/<total|*>` → (start, end inclusive, total or None)."""
    if not value:
        return None
    value = value.strip()
    if not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    start, sep, end = span.partition("-")
    try:
        return int(start), int(end), (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def skip_for(status: int, content_range: str | None, next_byte: int) -> int | None:
    """How many leading body bytes to discard before `next_byte`, the first one asked for; None = unusable.

    206 must start exactly at the requested byte. A 200 (a server that ignores
    Range) sends the whole blob from byte 0, so the bytes before it are
    skipped: slower, but correct.
    """
    if status == 206:
        parsed = parse_content_range(content_range)
        if parsed is None or parsed[0] != next_byte:
            return None
        return 0
    if status == 200:
        return next_byte
    return None


def records_from_files(files: Mapping[str, bytes]) -> list[Part]:
    """Parse `-partial-<N>` files (name → content), skipping anything damaged."""
    out = []
    for _, raw in sorted(files.items()):
        part = Part.from_json(raw)
        if part is not None:
            out.append(part)
    return out
