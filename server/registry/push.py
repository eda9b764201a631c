"""`POST /api/push`: every blob (skipped if present, mounted if possible, else uploaded), then the manifest.

The manifest bytes sent are exactly the local file's, so the model keeps its
ID on the registry and whoever pulls it gets the same one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from server.registry import progress as pr
from server.registry.context import RegistryContext
from server.registry.errors import RegistryError
from server.registry.pull import blobs_of
from server.registry.transport import Repository, check_status
from server.registry.upload import BlobUpload, mount_source
from server.store.manifest import MANIFEST_MEDIA_TYPE
from server.store.names import Name


async def push(ctx: RegistryContext, name: Name, *, insecure: bool = False) -> AsyncIterator[pr.Progress]:
    store = ctx.store
    name = store.resolve(name)
    repo = Repository.of(name, insecure=insecure, endpoints=ctx.endpoints)
    yield pr.status("retrieving manifest")
    model = store.require(name)
    manifest = model.manifest
    reporter = pr.Reporter("pushing")
    with store.pinned(manifest.blob_digests()):
        for layer in blobs_of(manifest):
            path = store.blobs.path(layer.digest)
            if not path.is_file():
                raise RegistryError(f"blob {layer.digest} of {name.display} is missing locally")
            upload = BlobUpload(ctx.transport, repo, layer, path, ctx.settings, mount_source(layer, name))
            line = reporter.update(layer.digest, layer.size, 0)
            if line:
                yield line
            task = asyncio.ensure_future(ctx.call(upload.run))
            while True:
                done, _ = await asyncio.wait({task}, timeout=ctx.settings.tick)
                line = reporter.update(layer.digest, layer.size, upload.completed)
                if line:
                    yield line
                if done:
                    task.result()
                    break
            line = reporter.update(layer.digest, layer.size, layer.size)
            if line:
                yield line
        yield pr.status("pushing manifest")
        media_type = manifest.media_type or MANIFEST_MEDIA_TYPE

        def put_manifest() -> None:
            response = ctx.transport.request(
                "PUT",
                repo.manifest_url(name.tag),
                headers={"Content-Type": media_type},
                body=manifest.raw,
            )
            check_status(response, allow=(200, 201, 202))

        await ctx.call(put_manifest)
    yield pr.status("success")
