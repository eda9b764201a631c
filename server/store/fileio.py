"""Positional reads and writes on a descriptor that threads share, and data syncs, on every OS.

A download writes its parts from several threads into one file and hashes it from
another, each at its own offset. POSIX gives `pread`/`pwrite` (no shared file
position) and `fdatasync`; Python on Windows has neither, and macOS has no
`fdatasync` while its `fsync` stops at the drive's cache. Where positional calls are
missing, a lock makes seek-then-transfer one step for the threads sharing the file.
"""

from __future__ import annotations

import os
import sys
import threading

#: Add to `os.open` flags: Windows opens descriptors in text mode otherwise.
O_BINARY: int = getattr(os, "O_BINARY", 0)

_NATIVE = hasattr(os, "pwrite") and hasattr(os, "pread")


class PositionalIO:
    def __init__(self, fd: int, *, native: bool = _NATIVE) -> None:
        self.fd = fd
        self._position_lock = None if native else threading.Lock()

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
            if hasattr(os, "preadv"):
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
    if sys.platform == "darwin":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # type: ignore[attr-defined,unused-ignore]
            return
        except OSError:
            pass  # not every file system supports it; fsync is the next best
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)  # FlushFileBuffers on Windows
