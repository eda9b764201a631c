"""One blob's download: ranged parts, in order, into the partial file, hashed as it fills.

The asyncio side decides (which part, how many at once, retry or give up,
when to checkpoint); the byte moving runs in worker threads, where socket
reads, `pwrite`, `fdatasync` and SHA-256 all release the GIL.

What keeps the end of a download cheap, so that the last byte in is nearly
the blob published:

- Parts start in offset order, only a few at a time (`pp.LanePolicy`), so
  the contiguous frontier of written bytes moves steadily and the hasher
  that follows it (`FrontierHash`) has little left to read when the last
  part lands.
- Written ranges are handed to the kernel's writeback at once, and progress
  is checkpointed every `_CHECKPOINT_BYTES` as well as every interval, so
  the data reaches the disk while the download runs and the fsync before
  publishing has little left to do.
- Bytes go from the socket into one reused buffer and from there to the
  file (`ranges.py`), with no allocation per read.

A blob becomes visible only under its final name, only after its digest
matched; a wrong blob leaves nothing behind, an interrupted one leaves its
checkpointed parts for the next pull.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlsplit

from server.registry import parts as pp
from server.registry.errors import DigestMismatch, PartUnusable, Permanent, RegistryError, TransferFailed
from server.registry.partial import PartialFile
from server.registry.ranges import BodyStalled, RangeBody
from server.registry.settings import TransferSettings
from server.registry.transport import Repository, Transport, status_error
from server.store.blobs import storage_error

log = logging.getLogger(__name__)

_REDIRECTS = (301, 302, 303, 307, 308)
#: Bytes the hasher reads back from the file at a time, into one buffer.
_HASH_STEP = 1024 * 1024
#: Written bytes that make a checkpoint due before its interval is up.
_CHECKPOINT_BYTES = 64 * 1024 * 1024
#: How often the asyncio side looks at the byte counts (checkpoints, lanes).
_POLL = 0.05
#: How often the byte rate is measured to decide on more lanes.
_PACE_INTERVAL = 0.25


class Cancelled(Exception):
    """The download was called off (every waiting pull went away)."""


class Stalled(Exception):
    """No bytes for the stall timeout: the part is restarted, not counted as a failure."""


class Lanes:
    """How many parts move at once: a semaphore that only widens, as `policy` says."""

    def __init__(self, limit: int, policy: pp.LanePolicy) -> None:
        self.limit = max(1, limit)
        self.policy = policy
        self.width = min(self.limit, max(1, policy.first))
        self.semaphore = asyncio.Semaphore(self.width)

    def adjust(self, rate: float) -> None:
        """Open more lanes if the last interval's byte rate says they would help."""
        width = self.policy.next_width(self.width, self.limit, rate)
        for _ in range(width - self.width):
            self.semaphore.release()
        self.width = width


class FrontierHash:
    """SHA-256 of a blob written out of order, fed in order as its contiguous frontier advances.

    One thread (`run`) follows the frontier, reading the bytes back from the
    file as soon as everything before them is there too. Writers only wake
    it. (Writers that hashed in place, or that lent a hand when it lagged,
    measured slower: the reads, writes and hashing spread over more threads
    keep both cores busier.)
    """

    def __init__(self, file: PartialFile, parts: list[pp.Part], total: int, cancel: threading.Event) -> None:
        self.file = file
        self.parts = parts
        self.total = total
        self.cancel = cancel
        self.position = 0
        self._sha = hashlib.sha256()
        self._moved = threading.Condition()
        self._buffer = memoryview(bytearray(_HASH_STEP))

    def run(self) -> str:
        """Hash up to the frontier until the end; returns the digest."""
        while self.position < self.total:
            if self.cancel.is_set():
                raise Cancelled()
            self._step(pp.frontier(self.parts))
            with self._moved:  # writers notify under it: a move after this check ends the wait
                if pp.frontier(self.parts) <= self.position < self.total and not self.cancel.is_set():
                    self._moved.wait(0.2)
        return "sha256:" + self._sha.hexdigest()

    def wake(self) -> None:
        """Bytes now count in their part (or the download was called off)."""
        with self._moved:
            self._moved.notify()

    def _step(self, frontier: int) -> None:
        """Hash the next buffer's worth below `frontier`."""
        n = min(len(self._buffer), frontier - self.position)
        if n <= 0:
            return
        n = self.file.read_into(self._buffer[:n], self.position)
        if not n:
            raise RegistryError("partial file shrank while downloading")
        self._sha.update(self._buffer[:n])
        self.position += n


class BlobDownload:
    #: When to open more connections; a class attribute so tests can change it.
    lane_policy = pp.LanePolicy()

    def __init__(
        self,
        transport: Transport,
        repo: Repository,
        digest: str,
        total: int,
        blobs_root: Path,
        settings: TransferSettings,
        executor: concurrent.futures.Executor,
    ) -> None:
        self.transport = transport
        self.repo = repo
        self.digest = digest
        self.total = total
        self.settings = settings
        self.executor = executor
        self.file = PartialFile(blobs_root, digest)
        self.parts: list[pp.Part] = []
        self.resumed_from = 0
        self.cancel = threading.Event()
        self._hash: FrontierHash | None = None
        self._running: set[asyncio.Future[Any]] = set()
        #: Guards the three collections below, which worker threads share.
        self._lock = threading.Lock()
        #: Responses being read (what `_abort_bodies` wakes).
        self._bodies: set[RangeBody] = set()
        #: Part number → a response `_resolve` opened for it, for its next try.
        self._opened: dict[int, RangeBody] = {}
        #: Copy buffers of finished part fetches, reused: fresh ones are page faults on every first touch.
        self._buffers: list[bytearray] = []
        #: Part number → `completed` as its record on disk says (what a checkpoint need not rewrite).
        self._saved: dict[int, int] = {}

    @property
    def completed(self) -> int:
        if self.file.final.exists() and not self.parts:
            return self.total
        return pp.completed(self.parts)

    # ---- the asyncio side ------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn` on the transfer pool; its thread outlives a cancelled caller, so `_settle` can wait for it."""
        fut = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        fut.add_done_callback(_retrieve)
        self._running.add(fut)
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done():
                self._running.discard(fut)

    async def run(self) -> None:
        """Download, verify and publish; raises RegistryError (or DigestMismatch) on failure."""
        if self.file.final.exists():
            return
        try:
            await self._in_thread(self._prepare)
        except OSError as exc:
            raise storage_error(exc, "preparing download") from exc
        checkpoints = asyncio.create_task(self._checkpoints())
        try:
            actual = await self._transfer()
        except BaseException as exc:
            await self._call_off(checkpoints)
            if isinstance(exc, asyncio.CancelledError):
                log.info("download of %s stopped at %d of %d bytes; the next pull resumes it", self.digest[7:19], self.completed, self.total)
            if isinstance(exc, BaseExceptionGroup):
                raise _first_error(exc) from None
            raise
        await _stop(checkpoints)
        await self._settle()  # a checkpoint already in its thread must not land after publish
        if actual != self.digest:
            await self._in_thread(self.file.discard)
            raise DigestMismatch(self.digest, actual)
        try:
            await self._in_thread(self.file.publish)
        except OSError as exc:
            raise storage_error(exc, "saving downloaded blob") from exc

    async def _transfer(self) -> str:
        """Fetch every missing part while hashing behind them; returns the blob's digest."""
        assert self._hash is not None
        hashing = asyncio.ensure_future(self._in_thread(self._hash.run))
        try:
            await self._fetch_missing()
            return str(await hashing)
        finally:
            await _stop(hashing)  # on failure; its thread ends once `cancel` is set

    async def _fetch_missing(self) -> None:
        missing = [p for p in self.parts if not p.done]
        if not missing:
            return
        lanes = Lanes(self.settings.parallel, self.lane_policy)
        pacing: asyncio.Task[None] | None = None
        try:
            url, with_auth = await self._in_thread(self._resolve, missing[0])
            pacing = asyncio.create_task(self._pace(lanes))
            async with asyncio.TaskGroup() as group:
                for part in missing:  # the semaphore is fair: parts start in offset order
                    group.create_task(self._drive(part, url, with_auth, lanes.semaphore))
        finally:
            if pacing is not None:
                await _stop(pacing)
            self._close_opened()

    async def _call_off(self, checkpoints: "asyncio.Task[None]") -> None:
        """Stop every thread, then save how far each part got, for the next pull."""
        self.cancel.set()
        if self._hash is not None:
            self._hash.wake()  # the hasher sees `cancel`
        self._abort_bodies()
        await self._settle()
        self._close_opened()  # a `_resolve` that was still running has finished now
        await _stop(checkpoints)
        await self._settle()
        await self._in_thread(self._final_checkpoint)

    async def _settle(self) -> None:
        """Wait for every worker thread to stop touching the file."""
        while self._running:
            pending = list(self._running)
            await asyncio.wait(pending)
            self._running.difference_update(pending)

    async def _drive(self, part: pp.Part, url: str, with_auth: bool, semaphore: asyncio.Semaphore) -> None:
        attempts = pp.PartAttempts(self.settings.retry)
        async with semaphore:
            while not part.done:
                before = part.completed
                try:
                    await self._in_thread(self._fetch_part, part, url, with_auth)
                    continue
                except Permanent:
                    raise
                except OSError as exc:
                    raise storage_error(exc, "writing download") from exc
                except (RegistryError, Stalled) as exc:
                    wait = attempts.failed(progressed=part.completed > before, stalled=isinstance(exc, Stalled))
                    reason = str(exc) or type(exc).__name__
                    if wait is None:
                        raise TransferFailed(
                            f"download of {self.digest[7:19]} failed after {attempts.failures} tries: {reason}"
                        ) from None
                    log.info("part %d of %s: %s; retrying in %.1fs", part.n, self.digest[7:19], reason, wait)
                await asyncio.sleep(wait)
                if not with_auth:  # a CDN URL may have expired: ask the registry again
                    url, with_auth = await self._in_thread(self._resolve, part)

    async def _pace(self, lanes: Lanes) -> None:
        """Measure the byte rate now and then and let the lanes widen on it."""
        loop = asyncio.get_running_loop()
        before, since = self.completed, loop.time()
        while lanes.width < lanes.limit:
            await asyncio.sleep(_PACE_INTERVAL)
            now, at = self.completed, loop.time()
            lanes.adjust((now - before) / max(at - since, 1e-6))
            before, since = now, at

    async def _checkpoints(self) -> None:
        """Checkpoint every interval if anything moved, and at once after `_CHECKPOINT_BYTES`."""
        loop = asyncio.get_running_loop()
        saved, at = self.completed, loop.time()
        poll = min(_POLL, self.settings.checkpoint_interval)
        while True:
            await asyncio.sleep(poll)
            now = self.completed
            if now - saved < _CHECKPOINT_BYTES and (now == saved or loop.time() - at < self.settings.checkpoint_interval):
                continue
            try:
                await self._in_thread(self._checkpoint)
                saved, at = now, loop.time()
            except OSError as exc:
                log.warning("could not checkpoint %s: %s", self.digest, exc)
                saved, at = now, loop.time()  # try again after an interval, not at every poll

    # ---- worker threads --------------------------------------------------------------------

    def _prepare(self) -> None:
        records, size = self.file.load()
        self.parts, resumed = pp.restore(self.total, self.settings.sizing, records, size)
        self.file.open(self.total, fresh=not resumed)
        self.resumed_from = pp.completed(self.parts)
        self._hash = FrontierHash(self.file, self.parts, self.total, self.cancel)
        # A fresh download has no records yet: its first checkpoint writes them all.
        self._saved = {p.n: p.completed for p in self.parts} if resumed else {}

    def _checkpoint(self) -> None:
        """Make the data durable, then rewrite the records of the parts that moved since."""
        snapshot = [pp.Part(p.n, p.offset, p.size, p.completed) for p in self.parts]
        changed = [p for p in snapshot if self._saved.get(p.n) != p.completed]
        self.file.checkpoint(changed)
        self._saved.update((p.n, p.completed) for p in changed)

    def _final_checkpoint(self) -> None:
        try:
            if self.file.fd is not None:
                self._checkpoint()
        except OSError as exc:
            log.warning("could not save progress of %s: %s", self.digest, exc)
        finally:
            self.file.close()

    def _resolve(self, part: pp.Part) -> tuple[str, bool]:
        """The URL the parts are fetched from, and whether it takes registry credentials.

        Asked with a GET of `part`'s range: where the registry serves the
        blob itself that response is the part's first try (kept for
        `_fetch_part`), so finding the URL costs no request of its own.
        Redirects within the registry's host are followed; one to another
        host (a CDN) is where the bytes are, fetched without registry auth.
        """
        url = self.repo.blob_url(self.digest)
        origin = urlsplit(url).netloc
        for _ in range(10):
            with_auth = urlsplit(url).netloc == origin
            body = self.transport.open_range(url, part.range_header(), authenticate=with_auth)
            if body.status in (200, 206):
                with self._lock:
                    self._opened[part.n] = body
                return url, with_auth
            if body.status not in _REDIRECTS:
                error = status_error(body.status, body.text())
                body.close()
                if body.status in (404, 401, 403):
                    raise Permanent(f"blob {self.digest[7:19]}: {error}")
                raise error
            location = body.header("location")
            body.close()
            if not location:
                raise RegistryError(f"{body.status} redirect without a Location")
            target = urljoin(url, location)
            if urlsplit(target).netloc != urlsplit(url).netloc:
                return target, False
            url = target
        raise Permanent("too many redirects")

    def _fetch_part(self, part: pp.Part, url: str, with_auth: bool) -> None:
        """One try at the rest of one part; updates `part.completed` as bytes hit the disk."""
        if self.cancel.is_set():
            raise Cancelled()
        with self._lock:
            body = self._opened.pop(part.n, None)
        if body is None:
            body = self.transport.open_range(url, part.range_header(), authenticate=with_auth)
        with self._tracked(body):
            skip = pp.skip_for(body.status, body.header("content-range"), part)
            if skip is None:
                raise _unusable(body)
            self._copy(body, part, skip)
        if not part.done:
            raise PartUnusable("connection closed before the part was complete")

    def _close_opened(self) -> None:
        """Close responses `_resolve` opened for parts that never got to read them."""
        with self._lock:
            opened = list(self._opened.values())
            self._opened.clear()
        for body in opened:
            body.close()

    @contextmanager
    def _tracked(self, body: RangeBody) -> Iterator[None]:
        """Keep `body` where `_abort_bodies` finds it while it is read; close it after."""
        try:
            with self._lock:
                if self.cancel.is_set():
                    raise Cancelled()
                self._bodies.add(body)
            yield
        finally:
            with self._lock:
                self._bodies.discard(body)
            body.close()

    def _abort_bodies(self) -> None:
        """Wake threads blocked on a socket read, so a called-off download settles at once."""
        with self._lock:
            bodies = list(self._bodies)
        for body in bodies:
            body.abort()

    @contextmanager
    def _buffer(self) -> Iterator[memoryview]:
        """A copy buffer for one part fetch."""
        with self._lock:
            raw = self._buffers.pop() if self._buffers else bytearray(self.settings.chunk_size)
        try:
            yield memoryview(raw)
        finally:
            with self._lock:
                self._buffers.append(raw)

    def _copy(self, body: RangeBody, part: pp.Part, skip: int) -> None:
        with self._buffer() as buffer:
            self._copy_through(body, part, skip, buffer)

    def _copy_through(self, body: RangeBody, part: pp.Part, skip: int, buffer: memoryview) -> None:
        """The body into the file from the part's next byte."""
        while skip:  # a 200 sends the blob from byte 0
            n = self._read(body, buffer[: min(len(buffer), skip)])
            if not n:
                return
            skip -= n
        position = part.next_byte
        while position < part.end:
            view = buffer[: min(len(buffer), part.end - position)]
            n = self._read(body, view)
            if not n:
                return
            self._write(part, view[:n], position)
            position += n

    def _read(self, body: RangeBody, view: memoryview) -> int:
        if self.cancel.is_set():
            raise Cancelled()
        try:
            return body.readinto(view)
        except BodyStalled as exc:
            raise Stalled(f"no data for {self.settings.retry.stall_timeout:g}s") from exc
        except RegistryError:
            if self.cancel.is_set():  # the read failed because `_abort_bodies` closed it
                raise Cancelled() from None
            raise

    def _write(self, part: pp.Part, data: memoryview, position: int) -> None:
        try:
            self.file.write_at(data, position)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise Permanent(str(storage_error(exc, "writing download"))) from None
            raise
        self.file.start_writeback(position, len(data))
        part.completed = position + len(data) - part.offset
        assert self._hash is not None
        self._hash.wake()


def _unusable(body: RangeBody) -> RegistryError:
    """Why a part cannot use this response (the wrong range, or an error status)."""
    if body.status in (200, 206):
        return PartUnusable(f"registry sent the wrong range ({body.header('content-range')})")
    return status_error(body.status, body.text())


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    """Mark a thread's exception as seen: when its caller was cancelled nobody awaits it,
    and asyncio would log it as `Future exception was never retrieved`."""
    if not fut.cancelled():
        fut.exception()


async def _stop(fut: "asyncio.Future[Any]") -> None:
    """Cancel a helper task (or shielded thread wait) and wait until it is gone."""
    fut.cancel()
    await asyncio.gather(fut, return_exceptions=True)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to report from a failed group of parts: a real cause over a cancellation."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if not isinstance(exc, (Cancelled, asyncio.CancelledError)):
            return exc
    return leaves[0] if leaves else RegistryError("download failed")
