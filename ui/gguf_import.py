"""Import GGUF files as models: each file's bytes become a blob of the server's store, then `/api/create` makes the model.

How the bytes get into the store is a `BlobImporter`. The one here uploads
over HTTP like any client (`HEAD /api/blobs/<digest>` first, so a file the
store already has is not sent again): the server never opens a path that
came in a request, so this is the only way for a server the app did not
start. The app, when it runs the server itself, gives a faster one
(`app/desktop.py` `StoreLinkImporter`): a hard link into the store's blobs
folder, verified by the store's own code, which takes no second copy of the
file's bytes, falling back to this one where linking is not possible.

`import_files` runs off the GUI thread: it reports progress, stops between
chunks when cancelled, and goes on with the next file when one fails, so
one bad file never costs the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

#: Read and upload in pieces this big: progress moves, cancel is heard, memory stays flat.
CHUNK = 4 * 1024 * 1024

#: (bytes done, bytes in all, what is happening) → nothing; called from the worker thread.
Progress = Callable[[int, int, str], None]


class Cancelled(Exception):
    pass


class ImportFailed(Exception):
    """One file could not be imported; the message says why in words."""


@dataclass(frozen=True)
class Imported:
    digest: str
    extra_bytes: int  # disk the store took for it: 0 for a hard link or a blob it had, the size for a copy
    how: str  # "linked", "copied", "already in the store"


class BlobImporter(Protocol):
    def disk_use(self, path: Path) -> tuple[int, str]:
        """Disk the store will take for `path` and how ("copy", "hard link"), before anything is done."""
        ...

    def import_blob(self, path: Path, progress: Progress, cancelled: Callable[[], bool]) -> Imported: ...


def hash_file(path: Path, progress: Progress, cancelled: Callable[[], bool], what: str = "Reading") -> str:
    """`sha256:<hex>` of the file, reporting as it reads."""
    total = path.stat().st_size
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            if cancelled():
                raise Cancelled()
            h.update(chunk)
            done += len(chunk)
            progress(done, total, f"{what} {path.name}")
    return "sha256:" + h.hexdigest()


def _http_error(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text.strip() or f"HTTP {r.status_code}"
    return str(body.get("error") or body) if isinstance(body, dict) else str(body)


class HttpBlobImporter:
    """Hash, ask, upload: the store gets its own copy of the file's bytes.

    `api_key`: sent as `Authorization: Bearer` when the server has API keys
    (`POLLAMA_API_KEYS`); a callable because a restart with new settings may change it."""

    def __init__(
        self, base_url: str | Callable[[], str], api_key: str | None | Callable[[], str | None] = None
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key

    @property
    def base_url(self) -> str:
        return self._base_url() if callable(self._base_url) else self._base_url

    @property
    def api_key(self) -> str | None:
        return self._api_key() if callable(self._api_key) else self._api_key

    def disk_use(self, path: Path) -> tuple[int, str]:
        return path.stat().st_size, "copy"

    def import_blob(self, path: Path, progress: Progress, cancelled: Callable[[], bool]) -> Imported:
        digest = hash_file(path, progress, cancelled)
        size = path.stat().st_size
        with httpx.Client(
            base_url=self.base_url,
            headers=bearer(self.api_key),
            timeout=httpx.Timeout(60, read=None),
            trust_env=False,
        ) as c:
            try:
                if c.head(f"/api/blobs/{digest}").status_code == 200:
                    return Imported(digest, 0, "already in the store")

                def body() -> Iterator[bytes]:
                    done = 0
                    with open(path, "rb") as f:
                        while chunk := f.read(CHUNK):
                            if cancelled():
                                raise Cancelled()
                            done += len(chunk)
                            progress(done, size, f"Copying {path.name} into the store")
                            yield chunk

                r = c.post(
                    f"/api/blobs/{digest}",
                    content=body(),
                    headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
                )
            except httpx.HTTPError as exc:
                raise ImportFailed(f"the server could not be reached: {exc}") from None
        if r.status_code not in (200, 201):
            raise ImportFailed(_http_error(r))
        return Imported(digest, size, "copied")


@dataclass(frozen=True)
class ImportItem:
    path: Path  # the bytes to import (a Hugging Face snapshot link resolved)
    name: str  # the model to create
    file_name: str  # how the Modelfile's FROM names it (the file's own name)


@dataclass(frozen=True)
class ItemResult:
    item: ImportItem
    error: str  # "" when the model was made
    imported: Imported | None = None

    @property
    def ok(self) -> bool:
        return not self.error


def bearer(api_key: str | None) -> dict[str, str]:
    """The header a server with API keys (`POLLAMA_API_KEYS`) asks of every request but `/` and `/api/version`."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def create_model(base_url: str, item: ImportItem, digest: str, *, api_key: str | None = None) -> None:
    """`/api/create` from the blob: the server reads the GGUF's template and parameters, as for `FROM file.gguf`."""
    body = {"model": item.name, "files": {item.file_name: digest}, "stream": False}
    try:
        with httpx.Client(
            base_url=base_url, headers=bearer(api_key), timeout=httpx.Timeout(60, read=600), trust_env=False
        ) as c:
            r = c.post("/api/create", json=body)
    except httpx.HTTPError as exc:
        raise ImportFailed(f"the server could not be reached: {exc}") from None
    if r.status_code != 200:
        raise ImportFailed(_http_error(r))


def import_files(
    items: list[ImportItem],
    importer: BlobImporter,
    base_url: str,
    progress: Callable[[int, int, int, str], None],
    cancelled: Callable[[], bool],
    done: Callable[[ItemResult], None] = lambda _: None,
    *,
    api_key: str | None = None,
) -> list[ItemResult]:
    """Each item in turn: its blob, then its model. `progress(index, bytes done, bytes total, text)`;
    `api_key`: what `/api/create` carries when the server has API keys."""
    results: list[ItemResult] = []
    for index, item in enumerate(items):
        if cancelled():
            break

        def step(done_bytes: int, total: int, text: str, i: int = index) -> None:
            progress(i, done_bytes, total, text)

        try:
            imported = importer.import_blob(item.path, step, cancelled)
            progress(index, 1, 1, f"Creating {item.name}")
            create_model(base_url, item, imported.digest, api_key=api_key)
            result = ItemResult(item, "", imported)
        except Cancelled:
            break
        except ImportFailed as exc:
            result = ItemResult(item, str(exc))
        except OSError as exc:
            result = ItemResult(item, f"cannot read {item.path.name}: {exc.strerror or exc}")
        results.append(result)
        done(result)
    return results
