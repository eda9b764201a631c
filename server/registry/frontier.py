"""Threads that follow the contiguous frontier of a blob written out of order: its hash, its writeback."""

from __future__ import annotations

import collections
import hashlib
import threading

from server.registry import parts as pp
from server.registry.chunks import Chunk
from server.registry.errors import Cancelled, RegistryError
from server.registry.partial import PartialFile

#: Bytes the hasher reads back from the file at a time, into one buffer.
_HASH_STEP = 1024 * 1024


class FrontierFollower:
    """A thread that follows the contiguous frontier of a blob written out of order.

    Writers only wake it; `follow` does `_step` for what lies below the
    frontier until the whole blob is behind it.
    """

    def __init__(self, file: PartialFile, parts: list[pp.Part], total: int, cancel: threading.Event) -> None:
        self.file = file
        self.parts = parts
        self.total = total
        self.cancel = cancel
        self.position = 0
        self._moved = threading.Condition()

    def follow(self) -> None:
        """Step up to the frontier until the end."""
        while self.position < self.total:
            if self.cancel.is_set():
                raise Cancelled()
            self._step(pp.frontier(self.parts))
            with self._moved:  # writers notify under it: a move after this check ends the wait
                if not self._has_work() and self.position < self.total and not self.cancel.is_set():
                    self._moved.wait(0.2)

    def wake(self) -> None:
        """Bytes now count in their part (or the download was called off)."""
        with self._moved:
            self._moved.notify()

    def _has_work(self) -> bool:
        """Whether `_step` would move now (called under `_moved`)."""
        return pp.frontier(self.parts) > self.position

    def _step(self, frontier: int) -> None:
        """Deal with (some of) the bytes from `position` to `frontier`, and move `position` past them."""
        raise NotImplementedError


class FrontierHash(FrontierFollower):
    """SHA-256 of the blob, fed in order: from memory where a lane's chunk is next, else read back from the file.

    A chunk is taken (`offer`) only if it starts exactly where what the
    hasher has hashed or taken ends, so the chunks it holds are always the
    next bytes in order, and it reads back only bytes below the frontier
    that it does not hold. A download whose bytes arrive in order (one
    lane: every fast one) is hashed entirely from memory; a chunk that a
    lane further along brings is hashed from the file once the frontier
    passes it. (A resumed download reads its old bytes back, and the lane
    is ahead until the hasher catches up with what is written.)

    How many chunks it holds is bounded by the lanes' buffers
    (`LaneBuffers.depth`): a lane whose buffers are all held waits for the
    hash, which then is what limits the download. The hasher must run on a
    thread of its own for that wait to end (`BlobDownload._transfer`).
    """

    def __init__(self, file: PartialFile, parts: list[pp.Part], total: int, cancel: threading.Event) -> None:
        super().__init__(file, parts, total, cancel)
        self._sha = hashlib.sha256()
        #: For bytes read back from the file; made at the first, as a download in order never needs it.
        self._buffer: memoryview | None = None
        self._queue: collections.deque[Chunk] = collections.deque()
        self._closed = False

    def run(self) -> str:
        """Hash the whole blob; returns its digest."""
        try:
            self.follow()
        finally:
            with self._moved:
                self._closed = True
                held = list(self._queue)
                self._queue.clear()
            for chunk in held:
                chunk.release()
        return "sha256:" + self._sha.hexdigest()

    def offer(self, chunk: Chunk) -> None:
        """A lane's chunk, just read: taken (and held) if its bytes are next in order."""
        with self._moved:
            tail = self._queue[-1].end if self._queue else self.position
            if self._closed or chunk.position != tail:
                return
            chunk.hold()
            self._queue.append(chunk)
            self._moved.notify()

    def _has_work(self) -> bool:
        return bool(self._queue) or super()._has_work()

    def _step(self, frontier: int) -> None:
        """Hash the next chunk held, or the next buffer's worth below `frontier` read back.

        `frontier` was measured before the queue is looked at: a chunk
        offered later counts in the frontier only once written, and its
        bytes are then above the frontier measured here, so the read-back
        never covers a held chunk.
        """
        with self._moved:
            chunk = self._queue[0] if self._queue else None
        if chunk is not None:
            self._sha.update(chunk.view)
            with self._moved:
                self._queue.popleft()
                self.position = chunk.end
            chunk.release()
            return
        n = min(_HASH_STEP, frontier - self.position)
        if n <= 0:
            return
        if self._buffer is None:
            self._buffer = memoryview(bytearray(_HASH_STEP))
        n = self.file.read_into(self._buffer[:n], self.position)
        if not n:
            raise RegistryError("partial file shrank while downloading")
        self._sha.update(self._buffer[:n])
        with self._moved:
            self.position += n


class FrontierWriteback(FrontierFollower):
    """Hands the bytes below the frontier to the kernel's writeback as they arrive.

    Only bytes written through the page cache need it (an unaligned head or
    tail, or every byte where direct writes are not possible). Started
    early, writing to disk overlaps the download, and the fsync before
    publishing has little left to do. It is a thread of its own because
    starting writeback blocks while the disk's queue is full: measured,
    250 MB handed over 1 MB at a time cost the writer 0.07 to 0.11 s of
    waiting (0.015 s of CPU), which the lane that wrote them should not wait
    out.
    """

    def _step(self, frontier: int) -> None:
        if frontier > self.position:
            self.file.start_writeback(self.position, frontier - self.position)
            self.position = frontier
