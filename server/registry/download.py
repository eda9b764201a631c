"""One blob's download: stretches of parts, each fetched with one ranged request, into the partial file, hashed as it fills.

The asyncio side decides (how many lanes, retry or give up, when to
checkpoint); the byte moving runs in worker threads, where socket reads,
`pwrite`, `fdatasync` and SHA-256 all release the GIL.

What keeps a download cheap, and its end nearly the blob published:

- One lane starts, fetching every missing part with one request
  (`claims.py`), so the bytes arrive in order and the hasher that follows
  the contiguous frontier (`frontier.FrontierHash`) hashes them from the
  lane's buffers. Lanes are added only while each moves too few bytes a
  second (`pp.LanePolicy`, a long path); a new lane takes the back half of
  the parts still ahead of a busy one.
- Bytes go from the socket into a few reused buffers (`ranges.py`,
  `chunks.py`); a writer thread per fetch writes each filled one, whole
  blocks past the page cache where possible (`PartialFile.write_at`),
  while the lane reads into the next.
- Another thread that follows the frontier (`FrontierWriteback`) hands
  what went through the page cache to the kernel's writeback as it
  arrives, and progress is checkpointed every `_CHECKPOINT_BYTES` as well
  as every interval, so the data reaches the disk while the download runs
  and the fsync before publishing has little left to do.

A blob becomes visible only under its final name, only after its digest
matched; a wrong blob leaves nothing behind, an interrupted one leaves its
checkpointed parts for the next pull. One the disk did not take (ENOSPC,
or a sync that failed: `DiskRefused`) leaves nothing behind either: its
bytes are what filled the disk, and after a failed sync no record of it
can be trusted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from server.gpu import system_memory
from server.host_reclaim import host_reclaims_free_memory
from server.registry import parts as pp
from server.registry.chunks import BufferPool, Chunk, ChunkWriter, LaneBuffers
from server.registry.claims import Claim, Claims
from server.registry.errors import (
    Cancelled,
    DigestMismatch,
    DiskRefused,
    PartUnusable,
    Permanent,
    RegistryError,
    TransferFailed,
)
from server.registry.frontier import FrontierHash, FrontierWriteback
from server.registry.partial import DIRECT_ALIGN, PartialFile
from server.registry.ranges import BodyStalled, RangeBody
from server.registry.settings import TransferSettings
from server.registry.transport import Repository, Transport, status_error
from server.store.blobs import storage_error
from server.store.diskspace import NO_SPACE

log = logging.getLogger(__name__)

_REDIRECTS = (301, 302, 303, 307, 308)
#: Bytes a lane writes between waking the threads that follow the frontier.
_WAKE_BYTES = 4 * 1024 * 1024
#: Written bytes that make a checkpoint due before its interval is up.
_CHECKPOINT_BYTES = 64 * 1024 * 1024
#: How often the asyncio side looks at the byte counts (checkpoints, lanes).
_POLL = 0.05
#: How often the byte rate is measured to decide on more lanes.
_PACE_INTERVAL = 0.25


class Stalled(Exception):
    """No bytes for the stall timeout: the request is restarted, not counted as a failure."""


class Lanes:
    """How many lanes fetch at once: a count that only widens, as `policy` says."""

    def __init__(self, limit: int, policy: pp.LanePolicy) -> None:
        self.limit = max(1, limit)
        self.policy = policy
        self.width = min(self.limit, max(1, policy.first))

    def widen(self, rate: float) -> int:
        """How many lanes to add, given the last interval's byte rate."""
        width = self.policy.next_width(self.width, self.limit, rate)
        added, self.width = width - self.width, width
        return added


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
        self._writeback: FrontierWriteback | None = None
        self._running: set[asyncio.Future[Any]] = set()
        #: Guards the three collections below, which worker threads share.
        self._lock = threading.Lock()
        #: Responses being read (what `_abort_bodies` wakes).
        self._bodies: set[RangeBody] = set()
        #: First byte asked for → a response `_resolve` opened, for that request's next try.
        self._opened: dict[int, RangeBody] = {}
        #: Copy buffers, reused by the fetches one after another.
        self._pool = BufferPool(settings.chunk_size)
        #: Part number → `completed` as its record on disk says (what a checkpoint need not rewrite).
        self._saved: dict[int, int] = {}
        #: Where the bytes are fetched from, and whether with registry credentials (`_resolve`).
        self._source: tuple[str, bool] = ("", True)
        #: Set when a response ignored Range: each further lane would fetch the blob from byte 0.
        self._ranges_ignored = False
        #: Set when a checkpoint found the disk refusing the data: the download stops and its file goes.
        self._refused: DiskRefused | None = None

    @property
    def completed(self) -> int:
        if self.file.final.exists() and not self.parts:
            return self.total
        return pp.completed(self.parts)

    @property
    def transferred(self) -> int:
        """Bytes fetched by this run (what resuming found on disk is not counted): `/metrics`' pull bytes."""
        return max(0, pp.completed(self.parts) - self.resumed_from)

    # ---- the asyncio side ------------------------------------------------------------------

    async def _in_thread(
        self, fn: Callable[..., Any], *args: Any, executor: concurrent.futures.Executor | None = None
    ) -> Any:
        """Run `fn` on the transfer pool (or `executor`); its thread outlives a cancelled caller, so `_settle` can wait for it."""
        fut = asyncio.get_running_loop().run_in_executor(executor or self.executor, fn, *args)
        fut.add_done_callback(_retrieve)
        self._running.add(fut)
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done():
                self._running.discard(fut)

    async def run(self) -> None:
        """Download, verify and publish; raises RegistryError (or DigestMismatch) on failure.

        On `DiskRefused` the partial file and its records are gone when this
        returns; on any other failure the records claim what is on disk.
        """
        if self.file.final.exists():
            return
        try:
            await self._in_thread(self._prepare)
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise storage_error(exc, "preparing download") from exc
            await self._in_thread(self.file.discard)
            raise _refused(exc, "preparing download") from exc
        checkpoints = asyncio.create_task(self._checkpoints())
        try:
            actual = await self._transfer()
        except BaseException as exc:
            error = _first_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
            refused = self._refused or (error if isinstance(error, DiskRefused) else None)
            await self._call_off(checkpoints, keep=refused is None)
            if refused is not None:
                log.warning("download of %s dropped: %s", self.digest[7:19], refused)
                raise refused from None
            if isinstance(exc, asyncio.CancelledError):
                log.info(
                    "download of %s stopped at %d of %d bytes; the next pull resumes it",
                    self.digest[7:19],
                    self.completed,
                    self.total,
                )
            if isinstance(exc, BaseExceptionGroup):
                raise error from None
            raise
        await _stop(checkpoints)
        await self._settle()  # a checkpoint already in its thread must not land after publish
        if self._refused is not None:  # a checkpoint's sync failed: the bytes hashed may not be the bytes on disk
            await self._in_thread(self.file.discard)
            raise self._refused
        if actual != self.digest:
            await self._in_thread(self.file.discard)
            raise DigestMismatch(self.digest, actual)
        try:
            await self._in_thread(self.file.sync)
            await self._in_thread(self.file.publish)
        except OSError as exc:
            if exc.errno not in NO_SPACE and self.file.fd is None:  # renaming failed: the data stands
                raise storage_error(exc, "saving downloaded blob") from exc
            await self._in_thread(self.file.discard)
            raise _refused(exc, "saving downloaded blob") from exc

    async def _transfer(self) -> str:
        """Fetch every missing part while hashing behind them; returns the blob's digest.

        The followers get threads of their own, not the shared transfer
        pool's: lanes wait for the hasher to give their buffers back, so it
        must be running whatever else the pool is busy with.
        """
        assert self._hash is not None and self._writeback is not None
        followers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="registry-follow")
        hashing = asyncio.ensure_future(self._in_thread(self._hash.run, executor=followers))
        writeback = asyncio.ensure_future(self._in_thread(self._writeback.follow, executor=followers))
        try:
            await self._fetch_missing()
            self._wake_followers()
            await writeback
            return str(await hashing)
        finally:
            await _stop(hashing)  # on failure; their threads end once `cancel` is set
            await _stop(writeback)
            followers.shutdown(wait=False)

    async def _fetch_missing(self) -> None:
        claims = Claims(self.parts)
        first = claims.take()
        if first is None:
            return
        lanes = Lanes(self.settings.parallel, self.lane_policy)
        try:
            self._source = await self._in_thread(self._resolve, first)
            async with asyncio.TaskGroup() as group:
                running = {group.create_task(self._lane(claims, first))}
                running.update(group.create_task(self._lane(claims)) for _ in range(lanes.width - 1))
                group.create_task(self._pace(lanes, claims, group, running))
        finally:
            self._close_opened()

    async def _call_off(self, checkpoints: asyncio.Task[None], *, keep: bool = True) -> None:
        """Stop every thread, then save how far each part got, for the next pull (`keep`), or drop the file."""
        self.cancel.set()
        self._wake_followers()  # they see `cancel`
        self._abort_bodies()
        await self._settle()
        self._close_opened()  # a `_resolve` that was still running has finished now
        await _stop(checkpoints)
        await self._settle()
        await self._in_thread(self._final_checkpoint if keep else self.file.discard)

    def _refuse(self, error: DiskRefused) -> None:
        """Stop the download from the asyncio side: the disk refused its data (`run` then drops the file)."""
        if self._refused is None:
            self._refused = error
        self.cancel.set()
        self._wake_followers()
        self._abort_bodies()

    async def _settle(self) -> None:
        """Wait for every worker thread to stop touching the file."""
        while self._running:
            pending = list(self._running)
            await asyncio.wait(pending)
            self._running.difference_update(pending)

    async def _lane(self, claims: Claims, claim: Claim | None = None) -> None:
        """One connection's worth of work: claims, one after another, until none is left."""
        if claim is None:
            claim = claims.take()
        while claim is not None:
            try:
                await self._drive(claims, claim)
            finally:
                claims.release(claim)
            claim = claims.take()

    async def _drive(self, claims: Claims, claim: Claim) -> None:
        """Fetch `claim` to its end, retrying as the policy says."""
        attempts = pp.PartAttempts(self.settings.retry)
        while not claim.done:
            before = claim.next_byte
            try:
                await self._in_thread(self._fetch_claim, claims, claim)
                continue
            except Permanent:
                raise
            except OSError as exc:
                raise storage_error(exc, "writing download") from exc
            except (RegistryError, Stalled) as exc:
                wait = attempts.failed(progressed=claim.next_byte > before, stalled=isinstance(exc, Stalled))
                reason = str(exc) or type(exc).__name__
                if wait is None:
                    raise TransferFailed(
                        f"download of {self.digest[7:19]} failed after {attempts.failures} tries: {reason}"
                    ) from None
                log.info(
                    "bytes %d-%d of %s: %s; retrying in %.1fs",
                    claim.next_byte,
                    claim.end - 1,
                    self.digest[7:19],
                    reason,
                    wait,
                )
            await asyncio.sleep(wait)
            if not self._source[1]:  # a CDN URL may have expired: ask the registry again
                self._source = await self._in_thread(self._resolve, claim)

    async def _pace(
        self, lanes: Lanes, claims: Claims, group: asyncio.TaskGroup, running: set[asyncio.Task[None]]
    ) -> None:
        """Measure the byte rate now and then, and add lanes while each is slow.

        Not before the first bytes have landed: a slow first response is
        not a slow lane, and only the first response tells whether the
        server honours Range at all.
        """
        loop = asyncio.get_running_loop()
        start = before = self.completed
        since = loop.time()
        while lanes.width < lanes.limit:
            await asyncio.wait(running, timeout=_PACE_INTERVAL)  # at once when every lane is done
            if all(task.done() for task in running) or self._ranges_ignored:
                return
            now, at = self.completed, loop.time()
            if now > start:
                for _ in range(lanes.widen((now - before) / max(at - since, 1e-6))):
                    running.add(group.create_task(self._lane(claims)))
            before, since = now, at

    async def _checkpoints(self) -> None:
        """Checkpoint every interval if anything moved, and at once after `_CHECKPOINT_BYTES`."""
        loop = asyncio.get_running_loop()
        saved, at = self.completed, loop.time()
        poll = min(_POLL, self.settings.checkpoint_interval)
        while True:
            await asyncio.sleep(poll)
            now = self.completed
            if now - saved < _CHECKPOINT_BYTES and (
                now == saved or loop.time() - at < self.settings.checkpoint_interval
            ):
                continue
            try:
                await self._in_thread(self._checkpoint)
                saved, at = now, loop.time()
            except DiskRefused as exc:
                self._refuse(exc)
                return
            except OSError as exc:
                log.warning("could not checkpoint %s: %s", self.digest, exc)
                saved, at = now, loop.time()  # try again after an interval, not at every poll

    # ---- worker threads --------------------------------------------------------------------

    def _prepare(self) -> None:
        records, size = self.file.load()
        self.parts, resumed = pp.restore(self.total, self.settings.sizing, records, size)
        direct = self.settings.direct_for(self.total, lambda: system_memory().free, host_reclaims_free_memory)
        self.file.open(self.total, fresh=not resumed, direct=direct)
        self.resumed_from = pp.completed(self.parts)
        self._hash = FrontierHash(self.file, self.parts, self.total, self.cancel)
        self._writeback = FrontierWriteback(self.file, self.parts, self.total, self.cancel)
        # A fresh download has no records yet: its first checkpoint writes them all.
        self._saved = {p.n: p.completed for p in self.parts} if resumed else {}

    def _checkpoint(self) -> None:
        """Make the data durable, then rewrite the records of the parts that moved since.

        `DiskRefused` when the sync fails (the bytes since the last one may
        not be on disk, and a later sync would not say so) or the disk is too
        full for a record; any other failure to write a record only leaves
        the older record, which claims less.
        """
        snapshot = [pp.Part(p.n, p.offset, p.size, p.completed) for p in self.parts]
        changed = [p for p in snapshot if self._saved.get(p.n) != p.completed]
        try:
            self.file.sync()
        except OSError as exc:
            raise _refused(exc, "saving download") from exc
        try:
            self.file.save_records(changed)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise _refused(exc, "saving download") from exc
            raise
        self._saved.update((p.n, p.completed) for p in changed)

    def _final_checkpoint(self) -> None:
        try:
            if self.file.fd is not None:
                self._checkpoint()
        except DiskRefused as exc:
            log.warning("could not save progress of %s (%s); its partial download is dropped", self.digest, exc)
            self.file.discard()
        except OSError as exc:
            log.warning("could not save progress of %s: %s", self.digest, exc)
        finally:
            self.file.close()

    def _resolve(self, claim: Claim) -> tuple[str, bool]:
        """The URL the blob is fetched from, and whether it takes registry credentials.

        Asked with a GET of `claim`'s range: where the registry serves the
        blob itself that response is the claim's first try (kept for
        `_fetch_claim`), so finding the URL costs no request of its own.
        Redirects within the registry's host are followed; one to another
        host (a CDN) is where the bytes are, fetched without registry auth.
        """
        url = self.repo.blob_url(self.digest)
        origin = urlsplit(url).netloc
        for _ in range(10):
            with_auth = urlsplit(url).netloc == origin
            body = self.transport.open_range(url, claim.range_header(), authenticate=with_auth)
            if body.status in (200, 206):
                with self._lock:
                    self._opened[claim.next_byte] = body
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

    def _fetch_claim(self, claims: Claims, claim: Claim) -> None:
        """One try at the rest of one claim; counts bytes in its parts as they hit the disk."""
        if self.cancel.is_set():
            raise Cancelled()
        start = claims.restart(claim)
        with self._lock:
            body = self._opened.pop(start, None)
        if body is None:
            url, with_auth = self._source
            body = self.transport.open_range(url, claim.range_header(), authenticate=with_auth)
        with self._tracked(body):
            skip = pp.skip_for(body.status, body.header("content-range"), start)
            if skip is None:
                raise _unusable(body)
            if body.status == 200:
                self._ranges_ignored = True
            buffers = LaneBuffers(self._pool, DIRECT_ALIGN, self.cancel.is_set)
            writer = ChunkWriter(self._write_chunk)
            try:
                self._copy(body, claims, claim, start, skip, buffers, writer)
            finally:
                writer.close()  # a next try starts from what is written
            writer.check()
        if not claim.done:
            raise PartUnusable("connection closed before the range was complete")

    def _close_opened(self) -> None:
        """Close responses `_resolve` opened for claims that never got to read them."""
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

    def _copy(
        self,
        body: RangeBody,
        claims: Claims,
        claim: Claim,
        position: int,
        skip: int,
        buffers: LaneBuffers,
        writer: ChunkWriter,
    ) -> None:
        """The body into the file from `position`, until it ends or the claim does (a split may end it early).

        Each filled buffer goes to the hasher (if its bytes are next) and to
        the writer, and the lane reads on into another.
        """
        assert self._hash is not None
        while skip:  # a 200 sends the blob from byte 0
            got = buffers.read(0, skip, lambda view: self._read(body, view))
            if got is None:
                return
            skip -= len(got[1])
            buffers.put_back(*got)
        while room := claims.room(claim, position):
            # called before the loop moves on, so `position` is this turn's
            got = buffers.read(position, room, lambda view: claims.reserve(claim, position, self._read(body, view)))  # noqa: B023
            if got is None:
                return
            chunk = buffers.chunk(*got, position, claim)
            self._hash.offer(chunk)
            writer.put(chunk)
            position = chunk.end

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

    def _write_chunk(self, chunk: Chunk) -> None:
        """On the fetch's writer thread: the chunk into the file, then counted in its parts."""
        position, n = chunk.position, len(chunk.view)
        try:
            self.file.write_at(chunk.view, position)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise _refused(exc, "writing download") from None
            raise
        chunk.claim.record(position, n)
        if (position + n) // _WAKE_BYTES != position // _WAKE_BYTES or chunk.claim.done:
            self._wake_followers()

    def _wake_followers(self) -> None:
        for follower in (self._hash, self._writeback):
            if follower is not None:
                follower.wake()


def _refused(exc: OSError, what: str) -> DiskRefused:
    """The disk's error in the words `storage_error` uses (`no space left on device; free some disk space...`)."""
    return DiskRefused(str(storage_error(exc, what)))


def _unusable(body: RangeBody) -> RegistryError:
    """Why a claim cannot use this response (the wrong range, or an error status)."""
    if body.status in (200, 206):
        return PartUnusable(f"registry sent the wrong range ({body.header('content-range')})")
    return status_error(body.status, body.text())


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a thread's exception as seen: when its caller was cancelled nobody awaits it,
    and asyncio would log it as `Future exception was never retrieved`."""
    if not fut.cancelled():
        fut.exception()


async def _stop(fut: asyncio.Future[Any]) -> None:
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
