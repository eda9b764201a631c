"""Copy buffers on their way from a lane to the file and the hash: how many are out, in what order they are written."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from server.registry import parts as pp
from server.registry.chunks import BufferPool, Chunk, ChunkWriter, LaneBuffers
from server.registry.claims import Claim
from server.registry.errors import Cancelled

STEP = 64 * 1024


def lane(cancel: threading.Event | None = None) -> tuple[LaneBuffers, Claim]:
    parts = pp.plan(10 * STEP, pp.PartSizing(fixed_size=5 * STEP))
    return LaneBuffers(BufferPool(STEP), 4096, (cancel or threading.Event()).is_set), Claim(parts, 10 * STEP)


def test_a_fill_view_is_aligned_like_the_file_offset_and_bounded_by_the_room() -> None:
    buffers, _ = lane()
    buffer, view = buffers.fill_view(4096 * 3 + 100, STEP)
    assert len(view) == STEP - 100  # the next read then starts on a block boundary
    buffers.put_back(buffer, view)
    buffer, view = buffers.fill_view(8192, 1000)
    assert len(view) == 1000
    buffers.put_back(buffer, view)
    assert buffers.out == 0


def test_a_read_hands_back_what_it_brought_and_returns_the_buffer_when_it_brought_nothing_or_failed() -> None:
    buffers, _ = lane()

    def fill(view: memoryview) -> int:
        view[:3] = b"abc"
        return 3

    got = buffers.read(0, STEP, fill)
    assert got is not None and bytes(got[1]) == b"abc" and buffers.out == 1
    buffers.put_back(*got)
    assert buffers.read(0, STEP, lambda view: 0) is None and buffers.out == 0

    def fail(view: memoryview) -> int:
        raise OSError(errno.ECONNRESET, "reset")

    with pytest.raises(OSError):
        buffers.read(0, STEP, fail)
    assert buffers.out == 0


def test_a_lane_waits_while_all_its_buffers_are_out_and_gets_one_back_when_released() -> None:
    buffers, claim = lane()
    chunks = []
    for n in range(LaneBuffers.depth):
        buffer, view = buffers.fill_view(n * STEP, STEP)
        chunks.append(buffers.chunk(buffer, view, n * STEP, claim))
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(len(buffers.fill_view(0, STEP)[1])))
    waiter.start()
    time.sleep(0.3)
    assert got == []  # still waiting
    chunks[0].hold()  # a second holder (the hasher): one release is not enough
    chunks[0].release()
    time.sleep(0.3)
    assert got == []
    chunks[0].release()
    waiter.join(5)
    assert got == [STEP]


def test_a_lane_waiting_for_a_buffer_stops_when_the_download_is_called_off() -> None:
    cancel = threading.Event()
    buffers, claim = lane(cancel)
    for n in range(LaneBuffers.depth):
        buffers.fill_view(n * STEP, STEP)
    threading.Timer(0.1, cancel.set).start()
    with pytest.raises(Cancelled):
        buffers.fill_view(0, STEP)


def test_the_writer_writes_in_order_and_stops_at_the_first_error() -> None:
    buffers, claim = lane()
    written: list[int] = []

    def write(chunk: Chunk) -> None:
        if chunk.position == 2 * STEP:
            raise OSError(errno.ENOSPC, "No space left on device")
        time.sleep(0.01)
        written.append(chunk.position)

    writer = ChunkWriter(write)
    queued = 0
    with pytest.raises(OSError):
        for n in range(6):  # the error surfaces at a later put (or at check)
            buffer, view = buffers.fill_view(n * STEP, STEP)
            writer.put(buffers.chunk(buffer, view, n * STEP, claim))
            queued += 1
        writer.close()
        writer.check()
    writer.close()
    assert written == [0, STEP]  # nothing after the failed chunk lands: parts count bytes as a high-water mark
    assert buffers.out == 0  # dropped chunks gave their buffers back
    assert queued >= 3
