"""One blob's download: parallel ranged parts into the partial file, hashed as it fills.

The asyncio side decides (which part, retry or give up, when to checkpoint);
the byte moving runs in worker threads, where socket reads, `pwrite` and
SHA-256 all release the GIL. Hashing follows the contiguous frontier of
written bytes while parts are still arriving, so verification costs almost
nothing after the last byte. A blob becomes visible only under its final
name, only after its digest matched; a wrong blob leaves nothing behind, an
interrupted one leaves its checkpointed parts for the next pull.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import httpx

from server.registry import parts as pp
from server.registry.errors import DigestMismatch, PartUnusable, Permanent, RegistryError, TransferFailed
from server.registry.partial import PartialFile
from server.registry.settings import TransferSettings
from server.registry.transport import Repository, Transport, check_status, describe
from server.store.blobs import storage_error

log = logging.getLogger(__name__)

_REDIRECTS = (301, 302, 303, 307, 308)
_HASH_READ = 4 * 1024 * 1024


class Cancelled(Exception):
    """The download was called off (every waiting pull went away)."""


class Stalled(Exception):
    """No bytes for the stall timeout: the part is restarted, not counted as a failure."""


class BlobDownload:
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
        self._written = threading.Condition()
        self._running: set[asyncio.Future[Any]] = set()

    @property
    def completed(self) -> int:
        if self.file.final.exists() and not self.parts:
            return self.total
        return pp.completed(self.parts)

    # ---- the asyncio side ------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        fut = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
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
        failed = False
        checkpoints = asyncio.create_task(self._checkpoints())
        hashing = asyncio.ensure_future(self._in_thread(self._hash))
        try:
            url, with_auth = await self._in_thread(self._resolve) if any(not p.done for p in self.parts) else ("", True)
            semaphore = asyncio.Semaphore(self.settings.parallel)
            async with asyncio.TaskGroup() as group:
                for part in self.parts:
                    if not part.done:
                        group.create_task(self._drive(part, url, with_auth, semaphore))
            actual = await hashing
        except BaseException as exc:
            failed = True
            self.cancel.set()
            with self._written:
                self._written.notify_all()
            await self._settle()
            hashing.cancel()
            await asyncio.gather(hashing, return_exceptions=True)
            checkpoints.cancel()
            await asyncio.gather(checkpoints, return_exceptions=True)
            await self._in_thread(self._final_checkpoint)
            if isinstance(exc, BaseExceptionGroup):
                raise _first_error(exc) from None
            raise
        finally:
            if not failed:
                checkpoints.cancel()
                await asyncio.gather(checkpoints, return_exceptions=True)
                await self._settle()  # a checkpoint already in its thread must not land after publish
        if actual != self.digest:
            await self._in_thread(self.file.discard)
            raise DigestMismatch(self.digest, actual)
        try:
            await self._in_thread(self.file.publish)
        except OSError as exc:
            raise storage_error(exc, "saving downloaded blob") from exc

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
                    url, with_auth = await self._in_thread(self._resolve)

    async def _checkpoints(self) -> None:
        saved: list[int] = []
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval)
            now = [p.completed for p in self.parts]
            if now != saved:
                try:
                    await self._in_thread(self._checkpoint)
                    saved = now
                except OSError as exc:
                    log.warning("could not checkpoint %s: %s", self.digest, exc)

    # ---- worker threads --------------------------------------------------------------------

    def _prepare(self) -> None:
        records, size = self.file.load()
        self.parts, resumed = pp.restore(self.total, self.settings.sizing, records, size)
        self.file.open(self.total, fresh=not resumed)
        self.resumed_from = pp.completed(self.parts)
        if not resumed:
            self.file.checkpoint(self.parts)

    def _checkpoint(self) -> None:
        snapshot = [pp.Part(p.n, p.offset, p.size, p.completed) for p in self.parts]
        self.file.checkpoint(snapshot)

    def _final_checkpoint(self) -> None:
        try:
            if self.file.fd is not None:
                self._checkpoint()
        except OSError as exc:
            log.warning("could not save progress of %s: %s", self.digest, exc)
        finally:
            self.file.close()

    def _resolve(self) -> tuple[str, bool]:
        """The URL the parts are fetched from, and whether it takes registry credentials.

        Redirects within the registry's host are followed; one to another host
        (a CDN) is where the bytes are, fetched without registry auth. A
        registry that answers 200 itself is fetched directly.
        """
        url = self.repo.blob_url(self.digest)
        origin = urlsplit(url).netloc
        for _ in range(10):
            response = self.transport.request(
                "GET", url, headers={"Range": "bytes=0-0"}, stream=True, authenticate=urlsplit(url).netloc == origin
            )
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise RegistryError(f"{response.status_code} redirect without a Location")
                    target = urljoin(url, location)
                    if urlsplit(target).netloc != urlsplit(url).netloc:
                        return target, False
                    url = target
                    continue
                if response.status_code in (200, 206):
                    return url, urlsplit(url).netloc == origin
                try:
                    check_status(response)
                except RegistryError as exc:
                    if response.status_code in (404, 401, 403):
                        raise Permanent(f"blob {self.digest[7:19]}: {exc}") from None
                    raise
            finally:
                response.close()
        raise Permanent("too many redirects")

    def _fetch_part(self, part: pp.Part, url: str, with_auth: bool) -> None:
        """One try at the rest of one part; updates `part.completed` as bytes hit the disk."""
        if self.cancel.is_set():
            raise Cancelled()
        response = self.transport.request("GET", url, headers={"Range": part.range_header()}, stream=True, authenticate=with_auth)
        try:
            skip = pp.skip_for(response.status_code, response.headers.get("content-range"), part)
            if skip is None:
                if response.status_code in (200, 206):
                    raise PartUnusable(f"registry sent the wrong range ({response.headers.get('content-range')})")
                check_status(response)
                raise PartUnusable(f"unexpected status {response.status_code}")
            self._copy(response, part, skip)
        finally:
            response.close()
        if not part.done:
            raise PartUnusable("connection closed before the part was complete")

    def _copy(self, response: httpx.Response, part: pp.Part, skip: int) -> None:
        chunk_size = self.settings.chunk_size
        buffer = bytearray()
        position = part.next_byte
        try:
            for chunk in response.iter_raw():
                if self.cancel.is_set():
                    raise Cancelled()
                if skip:
                    drop = min(skip, len(chunk))
                    chunk = chunk[drop:]
                    skip -= drop
                room = part.end - position - len(buffer)
                if len(chunk) > room:
                    chunk = chunk[:room]
                buffer += chunk
                if len(buffer) >= chunk_size or position + len(buffer) >= part.end:
                    self._write(part, buffer, position)
                    position += len(buffer)
                    buffer.clear()
                if position >= part.end:
                    break
        except httpx.ReadTimeout as exc:
            self._flush(part, buffer, position)
            raise Stalled(f"no data for {self.settings.retry.stall_timeout:g}s") from exc
        except httpx.HTTPError as exc:
            self._flush(part, buffer, position)
            raise RegistryError(describe(exc, str(response.request.url))) from exc
        except Cancelled:
            self._flush(part, buffer, position)
            raise
        self._flush(part, buffer, position)

    def _flush(self, part: pp.Part, buffer: bytearray, position: int) -> None:
        if buffer:
            self._write(part, buffer, position)
            buffer.clear()

    def _write(self, part: pp.Part, data: bytearray, position: int) -> None:
        try:
            self.file.write_at(data, position)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise Permanent(str(storage_error(exc, "writing download"))) from None
            raise
        part.completed = position + len(data) - part.offset
        with self._written:
            self._written.notify_all()

    def _hash(self) -> str:
        """SHA-256 of the blob, reading each byte once as the written frontier passes it."""
        hasher = hashlib.sha256()
        position = 0
        while position < self.total:
            if self.cancel.is_set():
                raise Cancelled()
            limit = pp.frontier(self.parts)
            if limit <= position:
                with self._written:
                    self._written.wait(0.2)
                continue
            while position < limit:
                data = self.file.read_at(min(_HASH_READ, limit - position), position)
                if not data:
                    raise RegistryError("partial file shrank while downloading")
                hasher.update(data)
                position += len(data)
        return "sha256:" + hasher.hexdigest()


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
