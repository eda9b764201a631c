"""Which lane fetches which parts: one ranged request per stretch of parts, split when lanes are added.

A blob's parts (`parts.py`) are the unit of resume records, not of
requests. A lane claims a whole stretch of consecutive parts and fetches it
with one ranged GET, so on a fast link (the registry on this machine or
the LAN, where one connection already brings bytes as fast as they can be
written and hashed) a blob costs one request, and the bytes arrive in
order, right behind the hasher. Measured on the bench blob, one request
instead of one per 32 MB part took a fifth off the CPU both sides spend.

Parallelism comes from splitting: a lane added because each lane is slow
(a long path), or one that finished its own stretch, takes the back half of
the untouched parts of the biggest claim still being fetched, and that
claim's lane stops where the taken half begins. Towards the end of a
download every lane keeps working until nothing is left to split.

No I/O here: lanes call in from worker threads, so every change is made
under one lock, and a lane reserves the bytes it is about to write before
writing them, so a split never hands out a part that is being written.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from server.registry.parts import Part


@dataclass(eq=False)
class Claim:
    """Consecutive parts one lane fetches with one request, up to `end` (which a split may lower)."""

    parts: list[Part]
    end: int
    #: Everything below this is written or being written by the claim's lane.
    reserved: int = field(init=False)

    def __post_init__(self) -> None:
        self.reserved = self.parts[0].next_byte

    @property
    def next_byte(self) -> int:
        """The first byte still missing (parts below it are complete, in order)."""
        for part in self.parts:
            if part.offset >= self.end:
                break
            if not part.done:
                return part.next_byte
        return self.end

    @property
    def done(self) -> bool:
        return self.next_byte >= self.end

    def range_header(self) -> str:
        """The HTTP Range of what is still missing (inclusive end)."""
        return f"bytes={self.next_byte}-{self.end - 1}"

    def untouched(self) -> list[Part]:
        """Parts at or past `reserved` and before `end`: what a split may hand to another lane.
        The first part always stays (a claim nobody has started is not worth splitting to one part)."""
        return [p for p in self.parts[1:] if self.reserved <= p.offset < self.end]

    def record(self, position: int, n: int) -> None:
        """Count `n` bytes written at `position` in the parts they fall in."""
        stop = position + n
        for part in self.parts:
            if part.offset < stop and part.end > position:
                part.completed = max(part.completed, min(part.size, stop - part.offset))


def stretches(parts: Sequence[Part]) -> list[list[Part]]:
    """The missing parts grouped into runs one request can fetch: contiguous bytes from the first
    part's next byte to the last part's end. A part already partly written starts a new run."""
    runs: list[list[Part]] = []
    for part in sorted(parts, key=lambda p: p.offset):
        if part.done:
            continue
        joins = runs and part.completed == 0 and runs[-1][-1].end == part.offset
        if joins:
            runs[-1].append(part)
        else:
            runs.append([part])
    return runs


class Claims:
    """Hands claims to lanes: unclaimed stretches first, then halves split off the biggest claim."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self._unclaimed = stretches(parts)
        self._active: list[Claim] = []
        self._lock = threading.Lock()

    def take(self) -> Claim | None:
        """Work for a lane, or None when nothing is left that another lane is not already on."""
        with self._lock:
            claim: Claim | None
            if self._unclaimed:
                run = self._unclaimed.pop(0)
                claim = Claim(run, run[-1].end)
            else:
                claim = self._split()
            if claim is not None:
                self._active.append(claim)
            return claim

    def release(self, claim: Claim) -> None:
        """The lane is done with `claim` (finished, or failed for good)."""
        with self._lock:
            if claim in self._active:
                self._active.remove(claim)

    def restart(self, claim: Claim) -> int:
        """Before a (new) request for `claim`: drop a reservation a failed try left; the next byte."""
        with self._lock:
            claim.reserved = claim.next_byte
            return claim.reserved

    def reserve(self, claim: Claim, position: int, n: int) -> int:
        """How many of `n` bytes read for `position` the lane may write (its end may have moved)."""
        with self._lock:
            n = max(0, min(n, claim.end - position))
            claim.reserved = position + n
            return n

    def room(self, claim: Claim, position: int) -> int:
        """Bytes the claim still wants from `position`."""
        with self._lock:
            return max(0, claim.end - position)

    def _split(self) -> Claim | None:
        """The back half of the untouched parts of the claim that has the most (None if none has any)."""
        best: Claim | None = None
        spare: list[Part] = []
        for claim in self._active:
            untouched = claim.untouched()
            if len(untouched) > len(spare):
                best, spare = claim, untouched
        if best is None:
            return None
        taken = spare[len(spare) // 2 :]
        new = Claim(taken, best.end)
        best.end = taken[0].offset
        best.parts = [p for p in best.parts if p.offset < best.end]
        return new
