"""Positional I/O from many threads, with and without the OS's pread/pwrite."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from server.store.fileio import O_BINARY, PositionalIO, sync_data

CHUNK = 64 * 1024
CHUNKS = 48


def chunk(n: int) -> bytes:
    return bytes([n % 251]) * (CHUNK - 7) + n.to_bytes(7, "big")  # each chunk distinct, CRLF-free


@pytest.mark.parametrize("native", [True, False], ids=["pread-pwrite", "seek-under-lock"])
def test_threads_write_and_read_their_own_offsets(tmp_path: Path, native: bool) -> None:
    if native and not hasattr(os, "pwrite"):
        pytest.skip("no pwrite on this OS")
    fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT | O_BINARY, 0o644)
    try:
        os.ftruncate(fd, CHUNK * CHUNKS)
        io = PositionalIO(fd, native=native)

        def write(lane: int) -> None:  # 4 threads, interleaved chunks, the last ones first
            for n in reversed(range(lane, CHUNKS, 4)):
                io.write_at(memoryview(chunk(n))[:100], n * CHUNK)  # in two pieces, to
                io.write_at(memoryview(chunk(n))[100:], n * CHUNK + 100)  # exercise the offsets

        threads = [threading.Thread(target=write, args=(lane,)) for lane in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sync_data(fd)

        seen: dict[int, bytes] = {}

        def read(lane: int) -> None:
            buffer = memoryview(bytearray(CHUNK))
            for n in range(lane, CHUNKS, 3):
                assert io.read_into(buffer, n * CHUNK) == CHUNK
                seen[n] = bytes(buffer)

        threads = [threading.Thread(target=read, args=(lane,)) for lane in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [seen[n] == chunk(n) for n in range(CHUNKS)] == [True] * CHUNKS
        assert io.read_into(memoryview(bytearray(10)), CHUNK * CHUNKS) == 0  # end of file
    finally:
        os.close(fd)
    assert (tmp_path / "data").read_bytes() == b"".join(chunk(n) for n in range(CHUNKS))
