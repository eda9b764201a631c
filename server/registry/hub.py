"""Concurrent pulls of one blob share one download.

Each pull that needs a blob joins its entry and leaves when it is done or
gone; the download runs as long as someone waits for it. When the last
waiter leaves (client disconnected, pull cancelled) the download is called
off, its progress checkpointed, and the next pull resumes it. A new download
of a blob never starts before the previous one's threads have stopped
writing its file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from server.registry.download import BlobDownload


@dataclass(eq=False)
class Entry:
    download: BlobDownload
    task: asyncio.Task[None]
    waiters: int = 0
    abandoned: bool = False

    @property
    def total(self) -> int:
        return self.download.total

    @property
    def completed(self) -> int:
        return self.download.completed


@dataclass
class DownloadHub:
    _entries: dict[str, Entry] = field(default_factory=dict)
    #: Downloads not ended yet, replaced ones included (an entry called off may still be stopping).
    _unfinished: set[Entry] = field(default_factory=set)
    #: Bytes fetched by downloads that have ended (see `bytes_transferred`).
    _transferred_done: int = 0

    def join(self, digest: str, make: Callable[[], BlobDownload]) -> Entry:
        entry = self._entries.get(digest)
        if entry is not None and not entry.abandoned and not entry.task.done():
            entry.waiters += 1
            return entry
        previous = entry.task if entry is not None else None
        download = make()
        task = asyncio.create_task(self._run(download, previous), name=f"download {digest[7:19]}")
        entry = Entry(download, task, waiters=1)
        self._entries[digest] = entry
        self._unfinished.add(entry)
        task.add_done_callback(functools.partial(self._task_done, digest, entry))
        return entry

    async def _run(self, download: BlobDownload, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous
        await download.run()

    def _task_done(self, digest: str, entry: Entry, _task: asyncio.Task[None]) -> None:
        self._finished(digest, entry)

    def _finished(self, digest: str, entry: Entry) -> None:
        if self._entries.get(digest) is entry:
            del self._entries[digest]
        if entry in self._unfinished:
            self._unfinished.discard(entry)
            self._transferred_done += entry.download.transferred
        if not entry.task.cancelled():
            entry.task.exception()  # retrieved: each waiter reads it from the task itself

    def leave(self, entry: Entry) -> bool:
        """Stop waiting for `entry`; True if that called its download off (nobody else waits for it)."""
        entry.waiters -= 1
        if entry.waiters <= 0 and not entry.task.done():
            entry.abandoned = True
            entry.task.cancel()
            return True
        return False

    def bytes_transferred(self) -> int:
        """Bytes every download of this hub has fetched so far, those running included; only grows.

        Read when `/metrics` is scraped, so a pull costs nothing per byte for being counted."""
        return self._transferred_done + sum(e.download.transferred for e in list(self._unfinished))

    def active(self) -> list[str]:
        return list(self._entries)

    def running(self) -> list[BlobDownload]:
        """The downloads still writing (what a free-space check must leave room for)."""
        return [entry.download for entry in self._entries.values() if not entry.task.done()]

    async def stop_all(self) -> None:
        """Call off every download (server shutdown) and wait until their progress is saved."""
        tasks: list[Awaitable[None]] = []
        for entry in list(self._entries.values()):
            entry.abandoned = True
            entry.task.cancel()
            tasks.append(entry.task)
        await asyncio.gather(*tasks, return_exceptions=True)
