"""The hard-link import: a GGUF on the store's file system becomes a blob without a second copy of its bytes.

Only the app that runs the server itself can do this: it knows the store's
folder, and the server never opens a path that came in a request. The file
is linked into the blobs folder under a temp name (`.tmp-*`, which start-up
removes if a crash leaves it), the *linked* file is hashed, and the store's
own `BlobStore.adopt` publishes it under that digest, so what is published
is exactly what was verified, with the store's permissions (`blob_mode`).

A hard link shares the file with its original: one mode for both. So a link
is made only where the store's mode takes no read permission away and gives
none (it may take group or other *write* away, which a blob must not have;
the original then loses it too, and the import dialog says so); otherwise,
and wherever linking fails (another file system: EXDEV; a file of another
user, or Windows without the right: EPERM/EACCES; a file system without
links), the bytes are uploaded over HTTP like any client's (`ui/gguf_import.py`
`HttpBlobImporter`). A linked model's file must then not be edited in place:
the blob would change with it (a download tool replaces files, it does not
edit them; deleting the original leaves the blob whole).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from server.store.blobs import BlobStore, blob_mode
from ui.gguf_import import BlobImporter, Cancelled, Imported, Progress, hash_file

log = logging.getLogger("pollama.app.import")

#: Write bits a link may take away from the original (a blob must not be writable by others).
_DROPPABLE = stat.S_IWGRP | stat.S_IWOTH


class StoreLinkImporter:
    """`BlobImporter` that hard-links into `blobs_dir()` (the running store's), else uses `fallback`."""

    def __init__(self, blobs_dir: Callable[[], Path], fallback: BlobImporter) -> None:
        self.blobs_dir = blobs_dir
        self.fallback = fallback

    def why_not_link(self, path: Path) -> str:
        """ "" when `path` can be linked into the store, else why a copy is made instead."""
        blobs = self.blobs_dir()
        try:
            st = os.stat(path)
            folder = blobs if blobs.is_dir() else blobs.parent
            folder_st = os.stat(folder)
        except OSError as exc:
            return f"cannot look at it: {exc.strerror or exc}"
        if st.st_dev != folder_st.st_dev:
            return "it is on another file system than the store"
        if sys.platform != "win32":
            if st.st_uid != os.geteuid():
                return "it belongs to another user"
            mode = stat.S_IMODE(st.st_mode)
            wanted = blob_mode(folder, mode)  # what `BlobStore.adopt` will set
            if (mode & ~wanted) & ~_DROPPABLE:
                return "its permissions differ from the store's"
        return ""

    def disk_use(self, path: Path) -> tuple[int, str]:
        if not self.why_not_link(path):
            return 0, "hard link"
        return self.fallback.disk_use(path)

    def import_blob(self, path: Path, progress: Progress, cancelled: Callable[[], bool]) -> Imported:
        reason = self.why_not_link(path)
        if reason:
            log.info("copying %s into the store: %s", path.name, reason)
            return self.fallback.import_blob(path, progress, cancelled)
        store = BlobStore(self.blobs_dir())
        tmp = store.temp_path()
        try:
            os.link(path, tmp)
        except OSError as exc:  # EXDEV, EPERM, EMLINK, a file system without links …
            log.info("cannot link %s into the store (%s); copying it", path.name, exc.strerror or exc)
            return self.fallback.import_blob(path, progress, cancelled)
        try:
            digest = hash_file(tmp, progress, cancelled, "Checking")
            new = store.adopt(tmp, digest)  # the store's mode, renamed in, folder synced
        except (Cancelled, OSError):
            tmp.unlink(missing_ok=True)
            raise
        return Imported(digest, 0, "linked" if new else "already in the store")
