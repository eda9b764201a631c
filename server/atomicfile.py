"""Replacing a file whole, so a reader or a crash sees the old bytes or the new, never a mix.

Every file pollama rewrites (manifests, blobs, keys, pull records, the
settings file, the pull list, REPL history, chat exports) goes through here,
in one way: the new bytes go to a temp file in the same folder (`.tmp-<hex>`,
a name that is never a digest, a manifest tag or a setting, and that the
store's start-up sweep removes), the file is fsynced, renamed over the old
one, and the folder is fsynced so the rename itself survives a power cut. A
failure at any point removes the temp file and leaves the old file as it was.

The module imports nothing of pollama's: `ui` (which otherwise never imports
`server`) and `app` use it as well, and `tests/test_import_graph.py` keeps it
a leaf.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: The prefix of every temp file this module makes; a file so named is never a finished one.
TEMP_PREFIX = ".tmp-"

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def temp_path(folder: Path) -> Path:
    """A fresh temp name in `folder`, the one scheme for all: `.tmp-` and 16 random hex digits."""
    return folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable. Where a folder cannot be opened or synced (Windows,
    some network file systems) there is nothing more to do: the rename is as durable as
    that file system makes it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace(tmp: Path, path: Path) -> None:
    """Rename a finished, synced temp file over `path` and make the rename durable."""
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def writing(
    path: Path, *, mode: int | None = None, before_replace: Callable[[Path], None] | None = None
) -> Iterator[BinaryIO]:
    """Write the new contents of `path` to the file this yields; on a clean exit they replace it.

    `mode`: the file's permission bits, set from its creation on (a private key is
    never readable by others, not even for a moment) and exactly (the umask does not
    narrow them); None gives what `open()` would, 0o666 less the umask.
    `before_replace` sees the synced temp file just before the rename (to set a mode
    computed from it, say). An exception anywhere, the caller's included, removes the
    temp file, leaves `path` untouched and propagates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path.parent)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace(tmp)
        replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` (see `writing`)."""
    with writing(path, mode=mode) as f:
        f.write(data)


def write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace `path` with `text` as UTF-8, newlines as written (see `writing`)."""
    write_bytes(path, text.encode("utf-8"), mode=mode)
