"""Filled copy buffers on their way to the file and the hash, so a lane never waits for either.

A lane reads a response into a buffer and hands the filled buffer on as a
`Chunk`: a `ChunkWriter` thread puts it in the file, and the hasher, when the
chunk is next in the blob's order, hashes it from memory
(`frontier.FrontierHash.offer`). Meanwhile the lane reads into its next
buffer. Receiving, writing and hashing so overlap, on up to three cores,
and no byte is read back from the file unless it arrived ahead of the hash
(a lane further along the blob).

Each fetch may have `LaneBuffers.depth` buffers out at once: one being
filled, the others being written or hashed or waiting for it. A buffer
goes back when every holder has released it. The buffers are page-aligned (`mmap`), and a lane
fills each at the same offset modulo `partial.DIRECT_ALIGN` as the file
position its bytes go to, so that whole blocks can be written past the page
cache (`PartialFile.write_at`).
"""

from __future__ import annotations

import mmap
import queue
import threading
from collections.abc import Callable

from server.registry.claims import Claim
from server.registry.errors import Cancelled


class BufferPool:
    """Page-aligned copy buffers of one size, reused by a download's fetches.

    Reused because a fresh buffer costs a page fault on every first touch
    of each page (and on a VM that gave the memory back, a fault in the host).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self.size)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            self._free.append(buffer)


class Chunk:
    """Bytes read for `position` of `claim`, in a buffer that goes back once writer and hasher are done."""

    __slots__ = ("view", "position", "claim", "_lanes", "_buffer", "_holders")

    def __init__(self, lanes: LaneBuffers, buffer: mmap.mmap, view: memoryview, position: int, claim: Claim) -> None:
        self.view = view
        self.position = position
        self.claim = claim
        self._lanes = lanes
        self._buffer = buffer
        #: The writer holds every chunk; the hasher holds the ones it took (`hold`).
        self._holders = 1

    @property
    def end(self) -> int:
        return self.position + len(self.view)

    def hold(self) -> None:
        """Another holder (the hasher): the buffer stays out until it releases too."""
        with self._lanes.changed:
            self._holders += 1

    def release(self) -> None:
        with self._lanes.changed:
            self._holders -= 1
            if self._holders == 0:
                self.view.release()
                self._lanes.returned(self._buffer)


class LaneBuffers:
    """The buffers one fetch has out, at most `depth`: taking one waits while all are in flight.

    Six rather than three (fill, write, hash) to ride out the disk's
    uneven pace: on the bench blob, 6 gave pulls 0.84-0.89x curl's speed
    where 3 gave 0.75-0.80x, runs alternated; 10 gained nothing more. A
    slow lane never has more than two out, so only a fast download uses
    them all.
    """

    depth = 6

    def __init__(self, pool: BufferPool, align: int, cancelled: Callable[[], bool]) -> None:
        self.pool = pool
        self.align = align if pool.size % align == 0 and pool.size >= 2 * align else 1
        self.changed = threading.Condition()
        self._cancelled = cancelled
        self._out = 0

    @property
    def out(self) -> int:
        """Buffers taken and not yet back."""
        with self.changed:
            return self._out

    def fill_view(self, position: int, room: int) -> tuple[mmap.mmap, memoryview]:
        """A free buffer and the view of it to read `position`'s bytes into (at most `room`), aligned like the file.

        Waits while `depth` buffers are out; raises `Cancelled` if the
        download is called off meanwhile.
        """
        with self.changed:
            while self._out >= self.depth:
                if self._cancelled():
                    raise Cancelled()
                self.changed.wait(0.2)
            self._out += 1
        buffer = self.pool.take()
        skew = position % self.align
        return buffer, memoryview(buffer)[skew : skew + min(self.pool.size - skew, room)]

    def returned(self, buffer: mmap.mmap) -> None:
        """A buffer back from its last holder (called under `changed`)."""
        self.pool.give(buffer)
        self._out -= 1
        self.changed.notify_all()

    def put_back(self, buffer: mmap.mmap, view: memoryview) -> None:
        """A buffer taken but not handed on as a chunk."""
        view.release()
        with self.changed:
            self.returned(buffer)

    def read(self, position: int, room: int, read: Callable[[memoryview], int]) -> tuple[mmap.mmap, memoryview] | None:
        """A buffer that `read` filled for `position` (at most `room` bytes), and the view of what it read.

        None where `read` brought nothing; the buffer goes back then, and
        when `read` raises.
        """
        buffer, view = self.fill_view(position, room)
        try:
            n = read(view)
        except BaseException:
            self.put_back(buffer, view)
            raise
        if not n:
            self.put_back(buffer, view)
            return None
        return buffer, view[:n]

    def chunk(self, buffer: mmap.mmap, view: memoryview, position: int, claim: Claim) -> Chunk:
        return Chunk(self, buffer, view, position, claim)


class ChunkWriter:
    """A thread that writes one fetch's chunks in the order they were read.

    Order matters: a part counts its bytes as a high-water mark
    (`Claim.record`), so after a failed write none that follow it may land.
    The first error stops the writing; `put` and `check` raise it in the lane.
    """

    def __init__(self, write: Callable[[Chunk], None]) -> None:
        self._write = write
        self._queue: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="registry-writer", daemon=True)
        self._thread.start()

    def put(self, chunk: Chunk) -> None:
        if self.error is not None:
            chunk.release()
            raise self.error
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait until every chunk put is written (or dropped after an error)."""
        self._queue.put(None)
        self._thread.join()

    def check(self) -> None:
        """Raise the error that stopped the writing, if one did."""
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            try:
                if self.error is None:
                    self._write(chunk)
            except BaseException as exc:  # handed to the lane, which decides
                self.error = exc
            finally:
                chunk.release()
