"""Free disk space, checked before a write that would run the store's disk out of it.

A write that meets a full disk fails late: by then it has taken the last
free bytes from every other program on the machine (a browser's cache, the
desktop's settings, a database's journal), and whatever it wrote must be
cleaned up again. So pulls, uploads, creates and quantizes first add up
what they are about to write, as the file system will allocate it (whole
blocks), and refuse at once when that, plus a small margin, is more than
the disk has free. The write paths still handle ENOSPC (another program
may fill the disk meanwhile); this only makes the common case early and
clean.

Ollama has no such check (its `server/download.go` `blobDownload.run`
stops at ENOSPC); the wording of the refusal follows the one Ollama gives
for memory (`llm/server.go` `NewLlamaServer`: "model requires more system
memory (%s) than is available (%s)", sizes by `format.HumanBytes2`).
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from server.errors import StorageError

#: Bytes an operation must leave free: room for the small files that go with it (part records,
#: a manifest) and for the rest of the machine, which should never find the disk full.
MARGIN = 1024 * 1024
#: The allocation unit assumed where the OS does not say (`os.statvfs` is POSIX only).
DEFAULT_BLOCK = 4096
#: Errors that mean the disk (or the user's quota) is full.
NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


@dataclass(frozen=True)
class DiskSpace:
    """What a file system has left: `free` bytes a writer without privileges may still use, in `block`s."""

    free: int
    block: int

    def on_disk(self, size: int) -> int:
        """The bytes a file of `size` takes: whole blocks."""
        return -(-max(0, size) // self.block) * self.block


def disk_space(folder: Path) -> DiskSpace | None:
    """The free space of the file system `folder` is on; None where it cannot be told (then nothing is refused)."""
    try:
        free = shutil.disk_usage(folder).free  # statvfs f_bavail where there is one, GetDiskFreeSpaceEx on Windows
    except OSError:
        return None
    block = DEFAULT_BLOCK
    if hasattr(os, "statvfs"):
        try:
            block = os.statvfs(folder).f_frsize or DEFAULT_BLOCK
        except OSError:
            pass
    return DiskSpace(free, block)


def allocated(path: Path) -> int:
    """The bytes `path` already holds on its disk (a sparse file holds only what was written); 0 if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    blocks = getattr(st, "st_blocks", None)  # POSIX counts 512-byte units; Windows has no such field
    return blocks * 512 if blocks is not None else st.st_size


def human_bytes(n: int) -> str:
    """Go's `format.HumanBytes2` (1024-based, one decimal), as Ollama prints memory it lacks."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class NotEnoughSpace(StorageError):
    """A write refused before it started (or stopped before the disk filled): it needs more than is free."""

    def __init__(self, what: str, needed: int, available: int, folder: Path, *, at_least: bool = False) -> None:
        self.needed = needed
        self.available = available
        need = ("at least " if at_least else "") + human_bytes(needed)
        super().__init__(
            f"{what} requires more disk space ({need}) than is available ({human_bytes(available)}) in {folder}; "
            "free some disk space and try again"
        )


def require(folder: Path, needed: int, what: str, *, space: DiskSpace | None = None) -> None:
    """Refuse (`NotEnoughSpace`) unless `needed` bytes, plus `MARGIN`, are free where `folder` is.

    `needed` is what the operation will allocate (`DiskSpace.on_disk` of each file).
    """
    if needed <= 0:
        return
    space = space or disk_space(folder)
    if space is None:
        return
    if needed + MARGIN > space.free:
        raise NotEnoughSpace(what, needed + MARGIN, space.free, folder)
