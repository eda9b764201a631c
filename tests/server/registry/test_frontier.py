"""The threads that follow a download's frontier: the hash (from memory where it can, else read back) and the writeback."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from server.registry import parts as pp
from server.registry.chunks import BufferPool, LaneBuffers
from server.registry.claims import Claim
from server.registry.errors import Cancelled
from server.registry.frontier import FrontierFollower, FrontierHash, FrontierWriteback
from server.registry.partial import PartialFile
from tests.server.registry.conftest import random_bytes

DATA = random_bytes(3_000_000, seed=3)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
STEP = 1 << 20


def write_halves(
    file: PartialFile, parts: list[pp.Part], follower: FrontierFollower, order: list[tuple[int, int]]
) -> None:
    """Write `DATA` half a (1 MB) part at a time in `order` (part, half), counting each in its part and waking `follower`."""
    for n, half in order:
        part = parts[n]
        offset = part.offset + half * 500_000
        file.write_at(memoryview(DATA[offset : offset + 500_000]), offset)
        part.completed = offset + 500_000 - part.offset
        follower.wake()


def test_frontier_hash_of_out_of_order_writes(tmp_path: Path) -> None:
    """Bytes are hashed in order whatever order they land in, the hasher running alongside the writers."""
    file = PartialFile(tmp_path, DIGEST)
    file.open(len(DATA), fresh=True)
    parts = pp.plan(len(DATA), pp.PartSizing(fixed_size=1_000_000))
    hasher = FrontierHash(file, parts, len(DATA), threading.Event())
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(hasher.run()))
    thread.start()
    write_halves(file, parts, hasher, [(1, 0), (2, 0), (0, 0), (1, 1), (0, 1), (2, 1)])
    thread.join(30)
    assert result == [DIGEST]
    file.close()


def test_frontier_writeback_hands_over_each_byte_once_and_only_below_the_frontier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = PartialFile(tmp_path, DIGEST)
    file.open(len(DATA), fresh=True)
    parts = pp.plan(len(DATA), pp.PartSizing(fixed_size=1_000_000))
    handed: list[tuple[int, int, int]] = []  # offset, size, frontier at the time
    monkeypatch.setattr(file, "start_writeback", lambda offset, size: handed.append((offset, size, pp.frontier(parts))))
    follower = FrontierWriteback(file, parts, len(DATA), threading.Event())
    thread = threading.Thread(target=follower.follow)
    thread.start()
    write_halves(
        file, parts, follower, [(2, 0), (2, 1), (0, 0), (1, 0), (0, 1), (1, 1)]
    )  # the frontier stays at 0 until part 0 starts
    thread.join(30)
    assert not thread.is_alive()
    position = 0
    for offset, size, frontier in handed:
        assert offset == position and size > 0 and offset + size <= frontier
        position += size
    assert position == len(DATA)
    file.close()


def test_frontier_hash_stops_when_called_off(tmp_path: Path) -> None:
    file = PartialFile(tmp_path, DIGEST)
    file.open(len(DATA), fresh=True)
    cancel = threading.Event()
    hasher = FrontierHash(file, pp.plan(len(DATA), pp.PartSizing(fixed_size=1_000_000)), len(DATA), cancel)
    cancel.set()
    with pytest.raises(Cancelled):
        hasher.run()
    file.close()


class Feed:
    """Chunks of `DATA` as a lane makes them: read into pool buffers, offered to the hasher, then written and counted."""

    def __init__(self, file: PartialFile, parts: list[pp.Part], hasher: FrontierHash) -> None:
        self.file, self.parts, self.hasher = file, parts, hasher
        self.buffers = LaneBuffers(BufferPool(STEP), 4096, lambda: False)
        self.claim = Claim(parts, len(DATA))

    def span(self, start: int, end: int) -> None:
        """Bytes `start` to `end`, a buffer at a time."""
        position = start
        while position < end:
            buffer, view = self.buffers.fill_view(position, end - position)
            view[:] = DATA[position : position + len(view)]
            chunk = self.buffers.chunk(buffer, view, position, self.claim)
            self.hasher.offer(chunk)
            self.file.write_at(chunk.view, position)
            self.claim.record(position, len(chunk.view))
            self.hasher.wake()
            position = chunk.end
            chunk.release()


def reads_back(file: PartialFile, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The offsets the hasher reads back from `file`, as it does them."""
    offsets: list[int] = []
    real = file.read_into

    def read_into(view: memoryview, offset: int) -> int:
        offsets.append(offset)
        return real(view, offset)

    monkeypatch.setattr(file, "read_into", read_into)
    return offsets


def fed_hasher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[PartialFile, FrontierHash, Feed, list[int]]:
    """A partial file of `DATA` in 1 MB parts, its hasher, a lane feeding both, and the offsets read back."""
    file = PartialFile(tmp_path, DIGEST)
    file.open(len(DATA), fresh=True)
    parts = pp.plan(len(DATA), pp.PartSizing(fixed_size=1_000_000))
    hasher = FrontierHash(file, parts, len(DATA), threading.Event())
    return file, hasher, Feed(file, parts, hasher), reads_back(file, monkeypatch)


def hash_in_thread(hasher: FrontierHash) -> tuple[threading.Thread, list[str]]:
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(hasher.run()))
    thread.start()
    return thread, result


def test_bytes_that_arrive_in_order_are_hashed_from_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One lane's chunks, offered before they are written: none is read back from the file."""
    file, hasher, feed, read_back = fed_hasher(tmp_path, monkeypatch)
    thread, result = hash_in_thread(hasher)
    feed.span(0, len(DATA))
    thread.join(30)
    assert result == [DIGEST] and read_back == []
    file.close()


def test_a_chunk_ahead_of_the_hash_is_read_back_once_the_frontier_passes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two lanes: the back half comes first and is not held; the front half is hashed from memory, the back read back."""
    file, hasher, feed, read_back = fed_hasher(tmp_path, monkeypatch)
    half = 1_500_000
    feed.span(half, len(DATA))  # ahead of the hash: written only
    thread, result = hash_in_thread(hasher)
    feed.span(0, half)  # the front, in order: held
    thread.join(30)
    assert result == [DIGEST]
    assert read_back and min(read_back) >= half  # only the back half came from the file
    file.close()


def test_chunks_held_when_the_hash_stops_are_given_back(tmp_path: Path) -> None:
    """A hasher called off releases what it held, so the lane's buffers all come back and no lane waits forever."""
    file = PartialFile(tmp_path, DIGEST)
    file.open(len(DATA), fresh=True)
    parts = pp.plan(len(DATA), pp.PartSizing(fixed_size=1_000_000))
    cancel = threading.Event()
    hasher = FrontierHash(file, parts, len(DATA), cancel)
    buffers = LaneBuffers(BufferPool(STEP), 4096, cancel.is_set)
    claim = Claim(parts, len(DATA))
    buffer, view = buffers.fill_view(0, STEP)
    chunk = buffers.chunk(buffer, view, 0, claim)
    hasher.offer(chunk)
    chunk.release()  # the writer's hold: the hasher's keeps the buffer out
    assert buffers.out == 1
    cancel.set()
    with pytest.raises(Cancelled):
        hasher.run()
    assert buffers.out == 0
    later, view = buffers.fill_view(STEP, STEP)
    hasher.offer(buffers.chunk(later, view, STEP, claim))  # a closed hasher takes nothing
    assert buffers.out == 1
    file.close()
