"""`POST /api/pull`: manifest, then every blob (in parallel, shared, resumable), then the manifest file.

Order of effects is what keeps the store honest: blobs appear one by one,
each only once verified; the manifest, which is what makes a model exist, is
written last and byte for byte as the registry sent it (the model's ID is
its digest). Blobs the pull needs are pinned, so a concurrent delete cannot
collect one between its download and the manifest write.

A pull that would not fit on the store's disk is refused before its first
byte is written (`check_space`); one that runs out of space all the same
(another program filled the disk) drops the partial file of the blob that
did not fit (`download.py`), keeps the blobs already verified, and answers
its error only once the downloads it called off have settled, so what the
client sees afterwards is what stays.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator

from server.registry import progress as pr
from server.registry.context import RegistryContext
from server.registry.download import BlobDownload
from server.registry.errors import DigestMismatch, RegistryError, Unreachable
from server.registry.hub import Entry
from server.registry.partial import PartialFile
from server.registry.transport import Repository, check_status
from server.store.diskspace import disk_space, require
from server.store.manifest import MANIFEST_MEDIA_TYPE, Layer, Manifest, ManifestError
from server.store.names import Name

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPTED_MANIFESTS = (MANIFEST_MEDIA_TYPE, OCI_MANIFEST)
ACCEPT_HEADER = ", ".join(ACCEPTED_MANIFESTS)


def parse_manifest(raw: bytes, content_type: str | None) -> Manifest:
    """A manifest pollama can store, or a clear error (no I/O)."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError("pull model manifest: the registry sent a manifest that is not JSON") from None
    if not isinstance(obj, dict):
        raise RegistryError("pull model manifest: the registry sent a manifest that is not a JSON object")
    if obj.get("schemaVersion") != 2:
        raise RegistryError(f"pull model manifest: unsupported manifest schema version {obj.get('schemaVersion')!r}")
    header_type = (content_type or "").split(";")[0].strip()
    media_type = obj.get("mediaType") or (
        header_type if header_type.startswith("application/vnd.") else MANIFEST_MEDIA_TYPE
    )
    if media_type not in ACCEPTED_MANIFESTS:
        raise RegistryError(f"pull model manifest: unsupported manifest media type {media_type!r}")
    try:
        return Manifest.parse(raw)
    except ManifestError as exc:
        raise RegistryError(f"pull model manifest: {exc}") from None


def fetch_manifest(ctx: RegistryContext, repo: Repository, tag: str) -> Manifest:
    try:
        response = ctx.transport.request(
            "GET", repo.manifest_url(tag), headers={"Accept": ACCEPT_HEADER}, follow_redirects=True
        )
        check_status(response)
    except Unreachable as exc:
        raise Unreachable(f"pull model manifest: {exc}") from None
    except RegistryError as exc:
        raise RegistryError(f"pull model manifest: {exc}", exc.status) from None
    return parse_manifest(response.content, response.headers.get("content-type"))


def blobs_of(manifest: Manifest) -> list[Layer]:
    """Layers then config (Ollama's order), each digest once."""
    seen: set[str] = set()
    out = []
    for layer in (*manifest.layers, manifest.config):
        if layer.digest not in seen:
            seen.add(layer.digest)
            out.append(layer)
    return out


def check_space(ctx: RegistryContext, name: Name, layers: list[Layer]) -> None:
    """Refuse (`NotEnoughSpace`, 500) a pull whose missing blobs do not fit on the store's disk.

    Counted, in whole blocks: each missing blob, less what its partial file
    holds already (a resumed download writes into those blocks again; a
    fresh one frees them when it truncates the file); what the downloads of
    other pulls still have to write, as they take from the same free space
    (a blob one of them is downloading counts once, as theirs); and the
    margin `require` adds, which covers part records and the manifest.

    Called on the event loop right before the downloads are joined, with no
    await between, so two pulls never both count the same free bytes.
    """
    blobs = ctx.store.blobs
    space = disk_space(blobs.root)
    if space is None:
        return
    running = {download.digest: download for download in ctx.hub.running()}
    needed = 0
    for layer in layers:
        if layer.digest in running or blobs.exists(layer.digest):
            continue
        needed += max(0, space.on_disk(layer.size) - PartialFile(blobs.root, layer.digest).held())
    if needed == 0:
        return
    others = sum(max(0, space.on_disk(d.total) - d.file.held()) for d in running.values())
    what = f"pulling {name.display}"
    if others:
        what += f" (with {len(running)} download{'s' if len(running) != 1 else ''} already running)"
    require(blobs.root, needed + others, what, space=space)


async def pull(ctx: RegistryContext, name: Name, *, insecure: bool = False) -> AsyncIterator[pr.Progress]:
    store = ctx.store
    name = store.resolve(name)
    repo = Repository.of(name, insecure=insecure, endpoints=ctx.endpoints)
    yield pr.status("pulling manifest")
    manifest: Manifest = await ctx.call(fetch_manifest, ctx, repo, name.tag)
    layers = blobs_of(manifest)
    reporter = pr.Reporter("pulling")
    entries: dict[str, Entry] = {}
    with store.pinned(manifest.blob_digests()):
        check_space(ctx, name, layers)
        try:
            for layer in layers:
                if store.blobs.exists(layer.digest):
                    line = reporter.update(layer.digest, layer.size, layer.size)
                else:
                    entries[layer.digest] = ctx.hub.join(
                        layer.digest,
                        functools.partial(
                            BlobDownload,
                            ctx.transport,
                            repo,
                            layer.digest,
                            layer.size,
                            store.blobs.root,
                            ctx.settings,
                            ctx.executor,
                        ),
                    )
                    line = reporter.update(layer.digest, layer.size, entries[layer.digest].completed)
                if line:
                    yield line
            mismatch: DigestMismatch | None = None
            pending = {entry.task for entry in entries.values()}
            while pending:
                done, pending = await asyncio.wait(pending, timeout=ctx.settings.tick)
                for layer in layers:
                    entry = entries.get(layer.digest)
                    if entry is None:
                        continue
                    if entry.task in done:
                        error = None if entry.task.cancelled() else entry.task.exception()
                        if isinstance(error, DigestMismatch):
                            mismatch = mismatch or error
                            continue
                        if entry.task.cancelled():
                            raise RegistryError(f"download of {layer.digest[7:19]} was cancelled")
                        if error is not None:
                            raise error
                        line = reporter.update(layer.digest, layer.size, layer.size)
                    else:
                        line = reporter.update(layer.digest, layer.size, entry.completed)
                    if line:
                        yield line
            yield pr.status("verifying sha256 digest")
            if mismatch is not None:
                raise mismatch
            for layer in layers:
                if not store.blobs.exists(layer.digest):
                    raise RegistryError(f"blob {layer.digest} is missing after download")
        finally:
            abandoned = [entry.task for entry in entries.values() if ctx.hub.leave(entry)]
            if abandoned:
                # Until they have saved their progress (or dropped their files). `wait`, not `gather`:
                # if this pull is cancelled meanwhile, they must not be cancelled again mid-call-off.
                await asyncio.wait(abandoned)
        yield pr.status("writing manifest")
        removed = await asyncio.to_thread(store.write_manifest, name, manifest)
        if removed:
            yield pr.status("removing unused layers")
    yield pr.status("success")
