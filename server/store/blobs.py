"""Content-addressed blobs: `blobs/sha256-<hex>`.

A blob becomes visible only under its final name, and only after its bytes
have been hashed and found equal to its digest: writers stream into a temp
file (`.tmp-*`, a name that is never a digest), fsync, then rename. A crash
leaves at most a temp file, which start-up removes; it is never taken for a
model. Partial pull state (`-partial`, `-partial-N`) is the registry's and is
kept for resume.

Only bytes the server was sent (an upload, a pull) or made itself (configs,
templates, quantized models) become blobs, each checked against its digest;
nothing is copied in from a path. A published blob is readable by others only
as far as the blobs folder itself is (`blob_mode`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time
from collections.abc import AsyncIterable, Iterable
from pathlib import Path

from server import atomicfile
from server.atomicfile import TEMP_PREFIX
from server.errors import BadRequest, NotFound, StorageError
from server.store import diskspace
from server.store.diskspace import NotEnoughSpace, disk_space

_DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
_WRITE_BUFFER = 4 * 1024 * 1024


def parse_digest(digest: object) -> str:
    """`sha256:<hex>` or `sha256-<hex>` → canonical `sha256:<lowercase hex>`."""
    m = _DIGEST.match(digest) if isinstance(digest, str) else None
    if not m:
        raise BadRequest("invalid digest format")
    return "sha256:" + m.group(1).lower()


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"{what}: no space left on device; free some disk space and try again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"{what}: permission denied ({exc.strerror})")
    return StorageError(f"{what}: {exc.strerror or exc}")


#: What a blob may be at most: written by its owner, read by anyone the folder lets in.
BLOB_MODE = 0o644


def blob_mode(folder: Path, created: int) -> int:
    """The permission bits a new blob in `folder` gets: `BLOB_MODE`, never more than the
    file was created with (so the umask holds) and never more than the folder's own bits,
    so a store kept private (a 0700 folder) never holds a world-readable file that a later
    `chmod` of the folder or a hard link would expose."""
    return BLOB_MODE & created & os.stat(folder).st_mode & 0o777


def publish_mode(tmp: Path, folder: Path) -> None:
    """Set a finished temp file's mode by `blob_mode` before it is renamed into `folder`."""
    os.chmod(tmp, blob_mode(folder, os.stat(tmp).st_mode))


class BlobStore:
    #: Small blobs (configs, templates, params) are read on every listing; they never change.
    SMALL_CACHE_ENTRIES = 4096
    SMALL_BLOB_MAX = 256 * 1024

    def __init__(self, root: Path) -> None:
        self.root = root
        self._small: dict[str, bytes] = {}

    def read_small(self, digest: str) -> bytes:
        """Read a small blob, cached by digest (content-addressed, so never stale)."""
        cached = self._small.get(digest)
        if cached is not None:
            return cached
        data = self.path(digest).read_bytes()
        if len(data) <= self.SMALL_BLOB_MAX:
            if len(self._small) >= self.SMALL_CACHE_ENTRIES:
                self._small.pop(next(iter(self._small)))
            self._small[digest] = data
        return data

    def path(self, digest: str) -> Path:
        """The on-disk path of a digest; the digest is validated, so it cannot escape."""
        canonical = parse_digest(digest)
        return self.root / canonical.replace(":", "-")

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f'blob "{digest}" not found') from None

    def temp_path(self) -> Path:
        """A new temp file name in the blobs folder (`.tmp-*`: start-up removes what a crash leaves)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return atomicfile.temp_path(self.root)

    def _publish(self, tmp: Path, expected: str, actual: str) -> Path:
        if expected != actual:
            tmp.unlink(missing_ok=True)
            raise BadRequest(f'digest mismatch, expected "{expected}", got "{actual}"')
        final = self.path(expected)
        publish_mode(tmp, self.root)
        atomicfile.replace(tmp, final)
        return final

    def adopt(self, tmp: Path, digest: str) -> bool:
        """A complete, synced temp file whose bytes hash to `digest` becomes that blob, or is
        dropped where the blob is there already; returns whether it was new."""
        if self.exists(digest):
            tmp.unlink()
            return False
        self._publish(tmp, digest, digest)
        return True

    def write_bytes(self, data: bytes) -> str:
        """Store small bytes (config, template, params...) and return their digest."""
        digest = sha256_digest(data)
        if self.exists(digest):
            return digest
        try:
            with atomicfile.writing(self.path(digest), before_replace=lambda tmp: publish_mode(tmp, self.root)) as f:
                f.write(data)
        except OSError as exc:
            raise storage_error(exc, "writing blob") from exc
        return digest

    async def write_stream(self, expected: str, chunks: AsyncIterable[bytes], *, length: int | None = None) -> Path:
        """Stream bytes to disk, hashing as they come; publish only if the digest matches.

        Writes are batched and done in a worker thread so a multi-GB upload does
        not stall the event loop.

        The disk is never filled: an upload whose `length` (the request's
        Content-Length) does not fit is refused before a byte is read, and
        every batch is checked against the space still free before it is
        written, so one without a length (or a disk another program fills
        meanwhile) stops at the margin, not at ENOSPC. Whatever stops the
        upload, its temp file goes.
        """
        import asyncio

        expected = parse_digest(expected)
        tmp = self.temp_path()
        what = f"uploading blob {expected}"
        space = disk_space(self.root)
        if length is not None and space is not None:
            diskspace.require(self.root, space.on_disk(length), what, space=space)
        hasher = hashlib.sha256()
        buffer = bytearray()
        written = 0

        async def write() -> None:
            nonlocal written
            self._check_room(what, written, len(buffer), length)
            await asyncio.to_thread(f.write, bytes(buffer))
            written += len(buffer)
            buffer.clear()

        try:
            f = await asyncio.to_thread(open, tmp, "wb")
            try:
                async for chunk in chunks:
                    hasher.update(chunk)
                    buffer += chunk
                    if len(buffer) >= _WRITE_BUFFER:
                        await write()
                if buffer:
                    await write()
                await asyncio.to_thread(_flush_sync, f)
            finally:
                f.close()
            return self._publish(tmp, expected, "sha256:" + hasher.hexdigest())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise storage_error(exc, "writing blob") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _check_room(self, what: str, written: int, size: int, length: int | None) -> None:
        """Refuse the next `size` bytes of an upload unless they leave `MARGIN` free.

        Counted as allocated: the temp file's `written` bytes are taken already, and go
        again when the upload is refused.
        """
        space = disk_space(self.root)
        if space is None or space.on_disk(written + size) - space.on_disk(written) + diskspace.MARGIN <= space.free:
            return
        needed = space.on_disk(length if length is not None else written + size) + diskspace.MARGIN
        raise NotEnoughSpace(what, needed, space.free + space.on_disk(written), self.root, at_least=length is None)

    def digests(self) -> Iterable[str]:
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if is_digest(entry.name) and entry.is_file():
                yield parse_digest(entry.name)

    def normalize_names(self) -> None:
        """Rename `sha256:<hex>` files (old Ollama) to `sha256-<hex>`."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.name.startswith("sha256:") and is_digest(entry.name):
                os.replace(entry, self.root / entry.name.replace(":", "-"))

    def remove_temp_files(self) -> int:
        """Remove what interrupted writers left; no writer runs before start-up ends."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for entry in self.root.iterdir():
            if entry.name.startswith(TEMP_PREFIX):
                entry.unlink(missing_ok=True)
                removed += 1
        return removed

    def prune(self, referenced: set[str], *, min_age: float = 0.0, keep: set[str] | None = None) -> list[str]:
        """Delete blobs no manifest references (and stray invalid names); returns what went."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        now = time.time()
        keep = keep or set()
        for entry in self.root.iterdir():
            name = entry.name
            if "-partial" in name or name.startswith(TEMP_PREFIX):
                continue
            if not is_digest(name):
                if entry.is_file():
                    entry.unlink(missing_ok=True)
                    removed.append(name)
                continue
            digest = parse_digest(name)
            if digest in referenced or digest in keep:
                continue
            try:
                if min_age and now - entry.stat().st_mtime < min_age:
                    continue
            except FileNotFoundError:
                continue
            entry.unlink(missing_ok=True)
            removed.append(digest)
        return removed


def _flush_sync(f) -> None:  # type: ignore[no-untyped-def]
    f.flush()
    os.fsync(f.fileno())
