"""Positional reads and writes on a descriptor that threads share, and data syncs, on every OS.

A download writes its parts from several threads into one file and hashes it from
another, each at its own offset. POSIX gives `pread`/`pwrite` (no shared file
position) and `fdatasync`; Python on Windows has neither, and macOS has no
`fdatasync` while its `fsync` stops at the drive's cache. Where positional calls are
missing, a lock makes seek-then-transfer one step for the threads sharing the file.

This module is the one place that decides whether a POSIX-only file call may be
used (`posix_calls`), so `POLLAMA_PORTABLE_IO=1` makes a Linux process take the
same paths Windows and macOS take: the test suite runs its pull and store tests
that way too (`tests/portable/`), so the fallbacks are never untried code.
"""

from __future__ import annotations

import os
import sys
import threading

#: Add to `os.open` flags: Windows opens descriptors in text mode otherwise.
O_BINARY: int = getattr(os, "O_BINARY", 0)

#: `1`: use only the file calls every OS has (positional I/O under a lock, `fsync`,
#: no `O_DIRECT`, no `sync_file_range`), as on Windows; read at each decision, so a
#: test can switch it, and inherited by child processes.
PORTABLE_ENV = "POLLAMA_PORTABLE_IO"


def posix_calls() -> bool:
    """Whether the POSIX-only calls may be used where the OS has them (not under `POLLAMA_PORTABLE_IO=1`)."""
    return os.environ.get(PORTABLE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def has_call(name: str) -> bool:
    """`os.<name>` exists and may be used."""
    return posix_calls() and hasattr(os, name)


def direct_flag() -> int:
    """The `os.open` flag for writes past the page cache (`O_DIRECT`, Linux); 0 where there is none or it may not be used."""
    return getattr(os, "O_DIRECT", 0) if posix_calls() else 0


class PositionalIO:
    def __init__(self, fd: int, *, native: bool | None = None) -> None:
        """`native`: use pread/pwrite (default: where the OS has them and `posix_calls` allows)."""
        if native is None:
            native = has_call("pwrite") and has_call("pread")
        self.fd = fd
        self._position_lock = None if native else threading.Lock()
        self._preadv = native and has_call("preadv")

    @property
    def native(self) -> bool:
        """Whether pread/pwrite are used (False: seek and transfer under a lock)."""
        return self._position_lock is None

    def write_at(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """All of `data` at `offset`."""
        view = memoryview(data)
        while view:
            if self._position_lock is None:
                n = os.pwrite(self.fd, view, offset)
            else:
                with self._position_lock:
                    os.lseek(self.fd, offset, os.SEEK_SET)
                    n = os.write(self.fd, view)
            view = view[n:]
            offset += n

    def read_into(self, view: memoryview, offset: int) -> int:
        """Up to len(view) bytes from `offset` into `view`; 0 at the end of the file."""
        if self._position_lock is None:
            if self._preadv:
                return os.preadv(self.fd, [view], offset)
            data = os.pread(self.fd, len(view), offset)
        else:
            with self._position_lock:
                os.lseek(self.fd, offset, os.SEEK_SET)
                data = os.read(self.fd, len(view))
        view[: len(data)] = data
        return len(data)


def sync_data(fd: int) -> None:
    """Make a file's written data durable before anything that claims it is written."""
    if sys.platform == "darwin" and posix_calls():
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # type: ignore[attr-defined,unused-ignore]
            return
        except OSError:
            pass  # not every file system supports it; fsync is the next best
    if has_call("fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)  # FlushFileBuffers on Windows
