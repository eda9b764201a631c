"""A download's files: `sha256-<hex>-partial` (data at offsets) and `-partial-<N>` (part records).

Names and record format are Ollama's, so either program resumes the other's
downloads. The data file is sparse at the blob's full size; a record claims
only bytes already written to it, and the data is fsynced before records
that claim it are replaced, so even a power cut never makes a record lie.
The store's start-up cleanup keeps names containing `-partial` and removes
`.tmp-*`, which is what record writes (`server.atomicfile`) use as temp names.

For a blob too big to stay cached or on a VM whose host reclaims free
memory (`TransferSettings.direct_for`), and where the OS allows (Linux
`O_DIRECT`, local disks), whole aligned blocks go to the disk without
passing through the page cache; see `PartialFile.write_at` for why.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from server import atomicfile
from server.registry.parts import Part, records_from_files
from server.store.blobs import parse_digest, publish_mode
from server.store.diskspace import allocated
from server.store.fileio import O_BINARY, PositionalIO, direct_flag, posix_calls, sync_data

_SYNC_FILE_RANGE_WRITE = 2
#: The largest single buffered write into the data file (see `PartialFile.write_at`).
_WRITE_PIECE = 256 * 1024
#: File offsets and memory addresses of direct writes are multiples of this (a page: at least any
#: disk's logical block, so it suits every file system that takes `O_DIRECT`).
DIRECT_ALIGN = 4096


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's `sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)`: start writing a range back, don't wait."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start(fd: int, offset: int, size: int) -> None:
        fn(fd, offset, size, _SYNC_FILE_RANGE_WRITE)  # a failure only means the fsync does the work later

    return start


_start_writeback = _sync_file_range()


def _address(view: memoryview) -> int | None:
    """Where `view`'s bytes are in memory (None for a read-only buffer, which is never handed to a direct write)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):
        return None


class PartialFile:
    def __init__(self, blobs_root: Path, digest: str) -> None:
        self.root = blobs_root
        self.final = blobs_root / parse_digest(digest).replace(":", "-")
        self.data = self.final.with_name(self.final.name + "-partial")
        self._io: PositionalIO | None = None
        #: A second descriptor of the data file, opened `O_DIRECT` (None where unsupported or refused).
        self._direct: int | None = None

    @property
    def direct(self) -> bool:
        """Whether aligned blocks are being written past the page cache."""
        return self._direct is not None

    @property
    def fd(self) -> int | None:
        """The open data file's descriptor; None before `open` and after `close`."""
        return self._io.fd if self._io is not None else None

    def record_path(self, n: int) -> Path:
        return self.final.with_name(f"{self.final.name}-partial-{n}")

    def record_paths(self) -> list[Path]:
        prefix = self.final.name + "-partial-"
        with contextlib.suppress(OSError):
            return [p for p in self.root.iterdir() if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()]
        return []

    def load(self) -> tuple[list[Part], int | None]:
        """Recorded parts and the data file's size (None if there is no data file)."""
        files = {}
        for path in self.record_paths():
            with contextlib.suppress(OSError):
                files[path.name] = path.read_bytes()
        try:
            size: int | None = self.data.stat().st_size
        except OSError:
            size = None
        return records_from_files(files), size

    def open(self, total: int, *, fresh: bool, direct: bool = True) -> None:
        """Open the data file; a fresh download drops old records and starts from an empty sparse file.

        `direct`: write whole blocks past the page cache where the OS and file system allow it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if fresh:
            for path in self.record_paths():
                path.unlink(missing_ok=True)
        flags = os.O_RDWR | os.O_CREAT | O_BINARY | (os.O_TRUNC if fresh else 0)
        fd = os.open(self.data, flags, 0o644)
        self._io = PositionalIO(fd)
        if os.fstat(fd).st_size != total:
            os.ftruncate(fd, total)
        self._close_direct()
        self._direct = _open_direct(self.data) if direct else None

    def write_at(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """`data` at `offset`: its whole aligned blocks written direct where possible, the rest through the page cache.

        Direct writes are for a blob that would not stay cached anyway, or a
        VM's (`TransferSettings.direct_for`): the download hashes from memory
        and never reads its bytes back, so caching them would only push a
        40 GB pull's worth of page cache, evicting what the machine was
        using (the weights of a model being served, mapped from its file).
        And on a virtual machine that reports free memory to its host
        (virtio-balloon free page reporting), every page-cache page taken
        from memory the host took back costs a fault in the host on first
        touch: measured here, buffered 1 MB writes of 250 MB a few seconds
        after another file was deleted took 0.2 to 0.4 s, direct writes of
        the same blocks from reused buffers never more than the disk's time.

        Direct writes need the block's file offset and memory address both
        multiples of `DIRECT_ALIGN`, which the copy buffers arrange
        (`chunks.py`); an unaligned head or tail, a read-only buffer, a
        file system not on a local disk (`_open_direct`), or one that
        refuses `O_DIRECT` take the buffered path, in
        writes of at most `_WRITE_PIECE` bytes (Linux sizes page-cache
        folios by the write, and large ones come from the high-order free
        blocks the host has taken back: 1 MB writes measured three to five
        times slower than 256 KiB ones after a delete). A page is only ever
        written one way, as blocks are either whole in one direct write or
        are a head or tail.
        """
        assert self._io is not None
        view = memoryview(data)
        if self._direct is not None:
            head = min(len(view), -offset % DIRECT_ALIGN)
            body = (len(view) - head) // DIRECT_ALIGN * DIRECT_ALIGN
            start = _address(view[head:]) if body else None
            if start is not None and start % DIRECT_ALIGN == 0:
                self._write_buffered(view[:head], offset)
                done = self._write_direct(view[head : head + body], offset + head)
                self._write_buffered(view[head + done :], offset + head + done)
                return
        self._write_buffered(view, offset)

    def _write_buffered(self, view: memoryview, offset: int) -> None:
        assert self._io is not None
        for start in range(0, len(view), _WRITE_PIECE):
            self._io.write_at(view[start : start + _WRITE_PIECE], offset + start)

    def _write_direct(self, view: memoryview, offset: int) -> int:
        """Write aligned blocks past the page cache; how many bytes went (the caller writes the rest buffered).

        A file system that turns `O_DIRECT` down only at the first write
        (EINVAL) switches this file to buffered writes for good.
        """
        assert self._direct is not None
        done = 0  # os.pwrite is safe here: only an OS with O_DIRECT (Linux) opens a direct descriptor
        while done < len(view) and done % DIRECT_ALIGN == 0:  # a short write ends it: the rest is unaligned
            try:
                done += os.pwrite(self._direct, view[done:], offset + done)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._close_direct()
                break
        return done

    def read_into(self, view: memoryview, offset: int) -> int:
        """Read into `view` (the hasher's one buffer, so no allocation per read)."""
        assert self._io is not None
        return self._io.read_into(view, offset)

    def start_writeback(self, offset: int, size: int) -> None:
        """Have the kernel start writing a range to disk now, without waiting for it to land (Linux; elsewhere nothing).

        The call itself may block while the disk's queue is full, which is
        why a thread of its own makes it (`frontier.FrontierWriteback`).

        A fast download otherwise leaves the whole blob dirty in the page
        cache, and the fsync before publishing writes all of it while the
        pull waits; started early, the writing overlaps the download.
        """
        if _start_writeback is not None and self._io is not None and posix_calls():
            _start_writeback(self._io.fd, offset, size)

    def checkpoint(self, parts: list[Part]) -> None:
        """Make written data durable, then record how far each of `parts` got (the others' records stand)."""
        self.sync()
        self.save_records(parts)

    def sync(self) -> None:
        """Make the written data durable. A failure means the bytes since the last sync may not be on disk:
        Linux reports a failed writeback once, so a later sync that succeeds proves nothing about them."""
        assert self._io is not None
        sync_data(self._io.fd)

    def save_records(self, parts: list[Part]) -> None:
        """Record how far each of `parts` got; only after a `sync` that covered those bytes.

        Each record is replaced whole (temp file, rename): one that cannot be
        written (a full disk) leaves the older record, which claims less.
        """
        for part in parts:
            atomicfile.write_bytes(self.record_path(part.n), part.to_json())

    def close(self) -> None:
        self._close_direct()
        if self._io is not None:
            os.close(self._io.fd)
            self._io = None

    def _close_direct(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None

    def held(self) -> int:
        """The bytes the data file already takes on disk (sparse: only what was written); 0 without one."""
        return allocated(self.data)

    def discard(self) -> None:
        """Forget the download entirely (its bytes were wrong, or did not fit)."""
        self.close()
        self.data.unlink(missing_ok=True)
        for path in self.record_paths():
            path.unlink(missing_ok=True)

    def publish(self) -> None:
        """The verified data becomes the blob; the records go."""
        assert self._io is not None
        sync_data(self._io.fd)
        self.close()
        publish_mode(self.data, self.root)
        os.replace(self.data, self.final)
        for path in self.record_paths():
            path.unlink(missing_ok=True)
        atomicfile.fsync_dir(self.root)


#: File systems on a local disk, where a direct write costs what the disk takes. On a network file
#: system (NFS, SMB) each direct write is a synchronous round trip, far slower than cached writes.
_LOCAL_DISK_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "bcachefs", "jfs", "nilfs2"})


def _file_system(path: Path) -> str | None:
    """The type of the file system `path` is on, from the longest mount point above it (Linux)."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
        target = os.path.realpath(path)
    except OSError:
        return None
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _open_direct(path: Path) -> int | None:
    """`path` opened for direct writes, where the OS allows them and the file system is on a local disk."""
    flag = direct_flag()
    if not flag or _file_system(path) not in _LOCAL_DISK_FILE_SYSTEMS:
        return None
    try:
        return os.open(path, os.O_WRONLY | O_BINARY | flag)
    except OSError:
        return None
