"""One blob's upload (Ollama's `server/upload.go` `uploadBlob`, `blobUpload.Prepare`): HEAD, cross-repo mount, chunked PATCHes, PUT ?digest=.

Runs in a worker thread; `completed` is read by the progress ticker. Parts
go in order (a Docker registry only takes the next chunk at its current
offset); a registry that redirects a PATCH (307, Ollama's presigned upload
URLs) gets the part PUT there instead. Each part's MD5 feeds the `etag`
Ollama's registry expects on the final PUT; others ignore it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx

from server.registry import parts as pp
from server.registry.errors import RegistryError
from server.registry.settings import TransferSettings
from server.registry.transport import Repository, Transport, check_status
from server.store.manifest import Layer
from server.store.names import Name

_READ = 1024 * 1024


def mount_source(layer: Layer, target: Name) -> str | None:
    """`<ns>/<model>` to mount the layer from, if it came from another repo on the same registry."""
    if not layer.from_:
        return None
    source = Name.parse_lenient(layer.from_)
    if not source.is_valid or source.host.lower() != target.host.lower():
        return None
    path = f"{source.namespace}/{source.model}"
    if path == f"{target.namespace}/{target.model}":
        return None
    return path


def with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


class BlobUpload:
    def __init__(
        self,
        transport: Transport,
        repo: Repository,
        layer: Layer,
        path: Path,
        settings: TransferSettings,
        mount_from: str | None,
    ) -> None:
        self.transport = transport
        self.repo = repo
        self.layer = layer
        self.path = path
        self.settings = settings
        self.mount_from = mount_from
        self.total = layer.size
        self.completed = 0
        self._sent_before_part = 0

    def run(self) -> None:
        head = self.transport.request("HEAD", self.repo.blob_url(self.layer.digest), follow_redirects=True)
        if head.status_code == 200:
            self.completed = self.total
            return
        url = self.repo.url("blobs/uploads/")
        if self.mount_from:
            url = with_query(url, mount=self.layer.digest, **{"from": self.mount_from})
        started = self.transport.request("POST", url, headers={"Content-Length": "0"})
        if started.status_code == 201:
            self.completed = self.total
            return
        check_status(started, allow=(202,))
        location = self._next_location(url, started)
        part_md5s: list[bytes] = []
        for part in pp.plan(self.total, self.settings.sizing):
            location, md5 = self._upload_part(location, part)
            part_md5s.append(md5)
        etag = hashlib.md5(b"".join(part_md5s)).hexdigest() + f"-{len(part_md5s)}"
        done = self.transport.request(
            "PUT", with_query(location, digest=self.layer.digest, etag=etag), headers={"Content-Length": "0"}
        )
        check_status(done, allow=(201, 204))
        self.completed = self.total

    def _next_location(self, base: str, response: httpx.Response) -> str:
        location = response.headers.get("docker-upload-location") or response.headers.get("location")
        if not location:
            raise RegistryError(f"registry did not say where to upload ({response.status_code})")
        return urljoin(base, location)

    def _body(self, part: pp.Part, md5: hashlib._Hash) -> Iterator[bytes]:
        self.completed = self._sent_before_part
        with open(self.path, "rb") as f:
            offset = f.seek(part.offset)
            while offset < part.end:
                data = f.read(min(_READ, part.end - offset))
                if not data:
                    raise RegistryError(f"{self.path} is shorter than its manifest says")
                md5.update(data)
                offset += len(data)
                yield data
                self.completed += len(data)

    def _upload_part(self, location: str, part: pp.Part) -> tuple[str, bytes]:
        self._sent_before_part = part.offset
        holder: dict[str, hashlib._Hash] = {}

        def body() -> Iterator[bytes]:
            holder["md5"] = hashlib.md5()
            return self._body(part, holder["md5"])

        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(part.size),
            "Content-Range": f"{part.offset}-{part.end - 1}",
            "X-Redirect-Uploads": "1",
        }
        response = self.transport.request("PATCH", location, headers=headers, body=body)
        if response.status_code == 307:
            redirect = urljoin(location, response.headers.get("location", ""))
            put_headers = {"Content-Type": "application/octet-stream", "Content-Length": str(part.size)}
            put = self.transport.request("PUT", redirect, headers=put_headers, body=body, authenticate=False)
            check_status(put, allow=(200, 201, 204))
        else:
            check_status(response, allow=(202, 204))
        self.completed = part.end
        return self._next_location(location, response), holder["md5"].digest()
