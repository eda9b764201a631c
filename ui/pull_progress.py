"""Turn a pull's NDJSON progress stream into per-layer bars with speed and ETA.

Pure: events in, state out, with an injectable clock, so speed and ETA are
tested without a network. Speed is measured over a sliding window of recent
samples: steady enough to read, quick enough to show a stall.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WINDOW_SECONDS = 5.0


@dataclass
class RateMeter:
    """Bytes per second over the last few seconds."""

    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, completed: int) -> None:
        self.samples.append((now, completed))
        while len(self.samples) > 2 and now - self.samples[0][0] > WINDOW_SECONDS:
            self.samples.popleft()

    @property
    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return max(0.0, (c1 - c0) / (t1 - t0)) if t1 > t0 else 0.0


@dataclass
class LayerProgress:
    digest: str
    total: int = 0
    completed: int = 0
    meter: RateMeter = field(default_factory=RateMeter)

    @property
    def short(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    @property
    def done(self) -> bool:
        return self.total > 0 and self.completed >= self.total

    @property
    def fraction(self) -> float:
        return min(1.0, self.completed / self.total) if self.total else 0.0

    @property
    def rate(self) -> float:
        return 0.0 if self.done else self.meter.rate

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if self.done or rate <= 0:
            return None
        return (self.total - self.completed) / rate


class PullTracker:
    """Everything the pull window shows for one pull, fed one progress event at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.status = "waiting"
        self.layers: dict[str, LayerProgress] = {}
        self.succeeded = False
        self.error = ""

    def feed(self, event: dict[str, Any]) -> None:
        if "error" in event:
            self.error = str(event["error"])
            return
        status = str(event.get("status", ""))
        if status:
            self.status = status
        digest = event.get("digest")
        if isinstance(digest, str) and digest:
            layer = self.layers.setdefault(digest, LayerProgress(digest))
            layer.total = int(event.get("total") or layer.total)
            layer.completed = int(event.get("completed") or layer.completed)
            now = self.clock()
            layer.meter.add(now, layer.completed)
        if status == "success":
            self.succeeded = True

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers.values())

    @property
    def completed(self) -> int:
        return sum(layer.completed for layer in self.layers.values())

    @property
    def fraction(self) -> float:
        if self.succeeded:
            return 1.0
        return min(1.0, self.completed / self.total) if self.total else 0.0

    @property
    def rate(self) -> float:
        """Sum of the layers' rates: a cached layer reported complete at once is not 'speed'."""
        return sum(layer.rate for layer in self.layers.values())

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if rate <= 0 or not self.total:
            return None
        return max(0.0, (self.total - self.completed) / rate)
