"""The partial file: writes that land whole, direct where they can, buffered in small pieces where they cannot."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
from pathlib import Path

import pytest

from server.registry import partial
from server.registry.partial import DIRECT_ALIGN, PartialFile
from server.store.fileio import PositionalIO
from tests.server.registry.conftest import random_bytes

DATA = random_bytes(3_000_000, seed=3)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_partial_file_writes_in_pieces_that_keep_page_cache_folios_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write larger than a piece lands whole and in order, each system write at most `_WRITE_PIECE` bytes."""
    sizes: list[int] = []
    real = PositionalIO.write_at

    def counted(io: PositionalIO, data: memoryview, offset: int) -> None:
        sizes.append(len(data))
        real(io, data, offset)

    monkeypatch.setattr(PositionalIO, "write_at", counted)
    file = PartialFile(tmp_path, DIGEST)
    file.open(len(DATA), fresh=True)
    odd = 3 * partial._WRITE_PIECE + 12_345
    file.write_at(memoryview(DATA[7 : 7 + odd]), 7)
    file.write_at(memoryview(DATA[:7]), 0)
    file.write_at(memoryview(DATA[7 + odd :]), 7 + odd)
    file.close()
    assert file.data.read_bytes() == DATA
    assert max(sizes) == partial._WRITE_PIECE and sizes[:4] == [partial._WRITE_PIECE] * 3 + [12_345]


def aligned_copy(data: bytes, skew: int) -> memoryview:
    """`data` in page-aligned memory, starting `skew` bytes into it (as a lane lays out a read for a file offset)."""
    buffer = mmap.mmap(-1, len(data) + skew)
    buffer[skew : skew + len(data)] = data
    return memoryview(buffer)[skew:]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[int, int]]]:
    """(offset, size) of each direct and each buffered system write."""
    seen: dict[str, list[tuple[int, int]]] = {"direct": [], "buffered": []}
    real_direct, real_buffered = PartialFile._write_direct, PartialFile._write_buffered

    def direct(self: PartialFile, view: memoryview, offset: int) -> int:
        seen["direct"].append((offset, len(view)))
        return real_direct(self, view, offset)

    def buffered(self: PartialFile, view: memoryview, offset: int) -> None:
        if len(view):
            seen["buffered"].append((offset, len(view)))
        real_buffered(self, view, offset)

    monkeypatch.setattr(PartialFile, "_write_direct", direct)
    monkeypatch.setattr(PartialFile, "_write_buffered", buffered)
    return seen


def direct_file(tmp_path: Path) -> PartialFile:
    file = PartialFile(tmp_path, DIGEST)
    file.open(len(DATA), fresh=True)
    if not file.direct:
        file.close()
        pytest.skip(f"{tmp_path} does not take O_DIRECT")
    return file


def fail_direct_writes(file: PartialFile, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Every write on `file`'s direct descriptor fails with `code`."""
    direct_fd, real = file._direct, os.pwrite

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        if fd == direct_fd:
            raise OSError(code, os.strerror(code))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


def test_whole_aligned_blocks_go_direct_and_the_ragged_ends_buffered(
    tmp_path: Path, writes: dict[str, list[tuple[int, int]]]
) -> None:
    file = direct_file(tmp_path)
    cut = 1_000_123  # not a multiple of the block: both writes have a ragged end
    file.write_at(aligned_copy(DATA[:cut], 0), 0)
    file.write_at(aligned_copy(DATA[cut:], cut % DIRECT_ALIGN), cut)
    file.checkpoint([])
    file.close()
    assert file.data.read_bytes() == DATA
    assert writes["direct"] == [
        (0, cut // DIRECT_ALIGN * DIRECT_ALIGN),
        (-cut % DIRECT_ALIGN + cut, (len(DATA) - cut - (-cut % DIRECT_ALIGN)) // DIRECT_ALIGN * DIRECT_ALIGN),
    ]
    for offset, size in writes["direct"]:
        assert offset % DIRECT_ALIGN == 0 and size % DIRECT_ALIGN == 0
    spans = sorted(writes["direct"] + writes["buffered"])
    assert [o for o, _ in spans] == [0] + [o + s for o, s in spans[:-1]] and sum(s for _, s in spans) == len(DATA)


def test_memory_not_aligned_with_the_file_offset_is_written_buffered(
    tmp_path: Path, writes: dict[str, list[tuple[int, int]]]
) -> None:
    file = direct_file(tmp_path)
    file.write_at(aligned_copy(DATA, 512), 0)  # the offset is aligned, the memory is not
    file.write_at(memoryview(DATA[:10]), 0)  # read-only memory: never direct
    file.close()
    assert file.data.read_bytes() == DATA
    assert writes["direct"] == []


def test_a_file_system_that_refuses_direct_writes_gets_buffered_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = direct_file(tmp_path)
    fail_direct_writes(file, monkeypatch, errno.EINVAL)
    file.write_at(aligned_copy(DATA, 0), 0)
    assert not file.direct
    file.close()
    assert file.data.read_bytes() == DATA


def test_a_full_disk_on_a_direct_write_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = direct_file(tmp_path)
    fail_direct_writes(file, monkeypatch, errno.ENOSPC)
    with pytest.raises(OSError) as caught:
        file.write_at(aligned_copy(DATA, 0), 0)
    assert caught.value.errno == errno.ENOSPC and file.direct
    file.close()


def test_direct_io_can_be_turned_off(tmp_path: Path) -> None:
    file = PartialFile(tmp_path, DIGEST)
    file.open(len(DATA), fresh=True, direct=False)
    assert not file.direct
    file.close()


def test_direct_writes_only_on_a_local_disk_file_system(tmp_path: Path) -> None:
    """A RAM or network file system gets cached writes (on NFS each direct write would be a synchronous round trip)."""
    assert partial._file_system(Path("/proc/self")) == "proc"  # the longest mount point above a path wins over "/"
    shm = Path("/dev/shm")
    if partial._file_system(shm) != "tmpfs" or not os.access(shm, os.W_OK):
        pytest.skip("no writable tmpfs at /dev/shm")
    folder = shm / f"pollama-test-{os.getpid()}-{tmp_path.name}"
    folder.mkdir()
    try:
        file = PartialFile(folder, DIGEST)
        file.open(len(DATA), fresh=True)
        assert not file.direct
        file.close()
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
