"""A real, small file system for disk-full tests: a tmpfs mounted for one test and unmounted after it.

tmpfs allocates whole pages and reports its free space exactly
(`os.statvfs`), so a test can fill it to the last block, and see each
block a failed request took come back. Mounting needs root (or
CAP_SYS_ADMIN); where it is not allowed the test is skipped, saying why.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MiB = 1024 * 1024


@contextmanager
def mounted_tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes at `path` for the block's duration."""
    if not sys.platform.startswith("linux"):
        pytest.skip("needs Linux to mount a tmpfs")
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (mount -t tmpfs)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # still busy: detach it now, free it later


def free_bytes(path: Path) -> int:
    """What an unprivileged writer may still allocate there (what the server's free-space check reads)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def block_size(path: Path) -> int:
    return os.statvfs(path).f_frsize


def on_disk(path: Path, size: int) -> int:
    """The bytes a file of `size` takes on the file system of `path`: whole blocks."""
    block = block_size(path)
    return -(-size // block) * block


def fill(folder: Path, leave: int = 0, name: str = "filler") -> Path:
    """A file in `folder` that takes all its file system's free space but `leave` bytes (rounded down to a block).

    Allocated for real (`posix_fallocate`, then writes until ENOSPC when
    nothing is to be left), so the server meets a full disk, not a sparse file.
    The server may still be writing while the disk is filled (a pull whose
    bytes are in flight): an allocation that finds less room than `statvfs`
    promised a moment before is retried with what is free now.
    """
    path = folder / name
    block = block_size(folder)
    keep = leave // block * block
    with open(path, "ab", buffering=0) as f:
        while (want := free_bytes(folder) - keep) > 0:
            try:
                os.posix_fallocate(f.fileno(), f.seek(0, os.SEEK_END), want)
                break
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        if keep == 0:
            piece = b"\0" * block
            while True:
                try:
                    f.write(piece)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    left = free_bytes(folder)
    assert left == keep, f"filled {folder} to {left} bytes free, wanted {keep}"
    return path
