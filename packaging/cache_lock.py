"""One builder at a time per cache entry (a wheel, a build venv), across processes.

Two test workers, or a developer and a CI job sharing a cache folder, may ask for
the same wheel at once; both building it would take twice the (long) time, and
two pip runs installing into one venv would break it. The second waits for the
first and then finds its result. An OS lock on a file dies with its process, so a
killed build never leaves the cache locked.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked(path: Path, *, announce: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd, announce)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int, announce: str | None) -> None:
        told = False
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                if announce and not told:
                    print(announce, flush=True)
                    told = True
                time.sleep(1.0)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int, announce: str | None) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if announce:
                print(announce, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
