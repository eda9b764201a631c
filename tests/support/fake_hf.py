"""A small Hugging Face Hub on loopback: the documented routes that `huggingface_hub` and `hf.co/...` pulls use.

The desktop's Discover page searches Hugging Face through `huggingface_hub`
(`HfApi.list_models`, `HfApi.list_repo_tree`) and pulls through pollama's own
`hf.co/<user>/<repo>:<quant>`, which speaks Hugging Face's Ollama-compatible
registry. With `HF_ENDPOINT` pointing here, all of that reaches this server
instead of hf.co. It answers, from real files on disk (tiny GGUFs from
tests/fixtures):

- `GET /api/models?search=&filter=&limit=`: the model search (Hub API docs,
  "GET /api/models"), a JSON list of `{id, author, tags, downloads, likes, ...}`;
- `GET /api/models/{repo}/tree/{revision}[/{path}]`: the repo's files with sizes,
  LFS files with `lfs: {oid, size, pointerSize}` (Hub API docs, "list repo tree");
- `GET|HEAD /{repo}/resolve/{revision}/{file}`: file bytes, with `Range`;
- `GET /v2/{repo}/manifests/{tag}` and `GET|HEAD /v2/{repo}/blobs/{digest}`: the
  registry `ollama pull hf.co/...` uses. A tag is a quantization matched
  against the GGUF file names case-insensitively (`latest`: Q4_K_M if there is
  one, else the first); an `mmproj` file becomes a projector layer; a split
  (`-00001-of-00002`) model is refused, as Hugging Face refuses it to Ollama.
  Blobs of files redirect (302) to their `resolve` URL, as hf.co redirects to
  its storage.

It counts what it serves (`bytes_served`, per path in `served`) and records
every request line, so tests can assert on the wire.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.support.live_server import free_port

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
MODEL = "application/vnd.ollama.image.model"
PROJECTOR = "application/vnd.ollama.image.projector"
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)


@dataclass
class HubFile:
    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()  # noqa: S324 (git's id)

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(".gguf")


@dataclass
class HubRepo:
    id: str
    files: dict[str, HubFile] = field(default_factory=dict)
    downloads: int = 0
    likes: int = 0
    tags: tuple[str, ...] = ("gguf",)

    @classmethod
    def of(cls, repo_id: str, files: dict[str, Path | bytes], **kwargs: Any) -> HubRepo:
        loaded = {
            name: HubFile(name, data if isinstance(data, bytes) else Path(data).read_bytes())
            for name, data in files.items()
        }
        return cls(repo_id, loaded, **kwargs)

    def info(self) -> dict[str, Any]:
        return {
            "_id": hashlib.md5(self.id.encode()).hexdigest()[:24],  # noqa: S324 (an id, not security)
            "id": self.id,
            "modelId": self.id,
            "author": self.id.split("/")[0],
            "private": False,
            "gated": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "tags": list(self.tags),
            "library_name": "gguf",
            "pipeline_tag": "text-generation",
            "lastModified": "2025-06-01T12:00:00.000Z",
            "createdAt": "2025-05-01T12:00:00.000Z",
        }

    def models(self) -> list[HubFile]:
        return [f for f in self.files.values() if f.path.endswith(".gguf") and "mmproj" not in f.path.lower()]

    def projectors(self) -> list[HubFile]:
        return [f for f in self.files.values() if f.path.endswith(".gguf") and "mmproj" in f.path.lower()]

    def for_tag(self, tag: str) -> list[HubFile]:
        models = self.models()
        if tag == "latest":
            tag = "Q4_K_M" if any("q4_k_m" in f.path.lower() for f in models) else ""
            if not tag:
                return models[:1]
        return [f for f in models if re.search(rf"(^|[-._]){re.escape(tag.lower())}([-._]|$)", f.path.lower())]


class FakeHub:
    def __init__(self, repos: list[HubRepo]) -> None:
        self.repos = {r.id.lower(): r for r in repos}
        self.port = free_port()
        self.requests: list[str] = []
        self.served: dict[str, int] = {}
        self.bytes_served = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._configs: dict[str, bytes] = {}
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with hub._lock:
                    hub._connections.add(self.connection)

            def finish(self) -> None:
                with hub._lock:
                    hub._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:  # noqa: N802
                hub._route(self, head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                hub._route(self, head=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the kept-alive connections too: afterwards the hub is gone."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.served.clear()
            self.bytes_served = 0

    # ---- routing ------------------------------------------------------------------------

    def _route(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        url = urlsplit(h.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        with self._lock:
            self.requests.append(f"{h.command} {h.path}")
        if path == "/api/models":
            return self._json(h, [r.info() for r in self._search(query)], head=head)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if m:
            return self._tree(h, m.group(1), (m.group(3) or "").strip("/"), head=head)
        m = re.fullmatch(r"/v2/([^/]+/[^/]+)/manifests/([^/]+)", path)
        if m:
            return self._manifest(h, m.group(1), m.group(2), head=head)
        m = re.fullmatch(r"/v2/([^/]+/[^/]+)/blobs/(sha256:[0-9a-f]{64})", path)
        if m:
            return self._blob(h, m.group(1), m.group(2), head=head)
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            repo = self.repos.get(m.group(1).lower())
            file = repo.files.get(m.group(3)) if repo else None
            if file is None:
                return self._error(h, 404, "Entry not found", head=head)
            return self._bytes(h, path, file.data, "application/octet-stream", head=head, etag=file.sha256)
        if path == "/v2/":
            return self._json(h, {}, head=head)
        return self._error(h, 404, "Not Found", head=head)

    def _search(self, query: dict[str, list[str]]) -> list[HubRepo]:
        words = (query.get("search") or [""])[0].lower()
        filters = [f for value in query.get("filter", []) for f in value.split(",")]
        found = [r for r in self.repos.values() if words in r.id.lower() and all(f in r.tags for f in filters)]
        found.sort(key=lambda r: -r.downloads)
        limit = (query.get("limit") or [""])[0]
        return found[: int(limit)] if limit.isdigit() else found

    def _tree(self, h: BaseHTTPRequestHandler, repo_id: str, under: str, *, head: bool) -> None:
        repo = self.repos.get(repo_id.lower())
        if repo is None:
            return self._error(h, 404, "Repository not found", head=head)
        entries = []
        for f in repo.files.values():
            if under and not f.path.startswith(under + "/"):
                continue
            entry: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": len(f.data), "path": f.path}
            if f.is_lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
            entries.append(entry)
        self._json(h, entries, head=head)

    def _manifest(self, h: BaseHTTPRequestHandler, repo_id: str, tag: str, *, head: bool) -> None:
        repo = self.repos.get(repo_id.lower())
        if repo is None:
            return self._registry_error(h, 404, "MANIFEST_UNKNOWN", f"Repository {repo_id} not found", head=head)
        files = repo.for_tag(tag)
        if not files:
            return self._registry_error(h, 404, "MANIFEST_UNKNOWN", f"no GGUF file for tag {tag}", head=head)
        if any(_SPLIT.search(f.path) for f in files):
            return self._registry_error(
                h, 400, "MANIFEST_INVALID", "The specified tag is a sharded GGUF, which is not supported", head=head
            )
        model = files[0]
        config = json.dumps({"model_format": "gguf", "file_type": tag.upper(), "rootfs": {"type": "layers"}}).encode()
        cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
        self._configs[cdigest] = config
        layers = [{"mediaType": MODEL, "digest": "sha256:" + model.sha256, "size": len(model.data)}]
        layers += [
            {"mediaType": PROJECTOR, "digest": "sha256:" + p.sha256, "size": len(p.data)} for p in repo.projectors()
        ]
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "digest": cdigest, "size": len(config)},
            "layers": layers,
        }
        self._bytes(h, f"/v2/{repo_id}/manifests/{tag}", json.dumps(manifest).encode(), MANIFEST_V2, head=head)

    def _blob(self, h: BaseHTTPRequestHandler, repo_id: str, digest: str, *, head: bool) -> None:
        if digest in self._configs:
            return self._bytes(h, f"/v2/{repo_id}/blobs/{digest}", self._configs[digest], "application/json", head=head)
        repo = self.repos.get(repo_id.lower())
        for f in repo.files.values() if repo else ():
            if "sha256:" + f.sha256 == digest:
                h.send_response(302)
                h.send_header("Location", f"/{repo_id}/resolve/main/{quote(f.path)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return None
        return self._registry_error(h, 404, "BLOB_UNKNOWN", "blob unknown to registry", head=head)

    # ---- answers ------------------------------------------------------------------------

    def _json(self, h: BaseHTTPRequestHandler, obj: Any, *, head: bool, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, message: str, *, head: bool) -> None:
        self._json(h, {"error": message}, head=head, status=status)

    def _registry_error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str, *, head: bool) -> None:
        self._json(h, {"errors": [{"code": code, "message": message}]}, head=head, status=status)

    def _bytes(
        self, h: BaseHTTPRequestHandler, path: str, data: bytes, content_type: str, *, head: bool, etag: str = ""
    ) -> None:
        start, end = 0, len(data) - 1
        status = 200
        ranged = h.headers.get("Range", "")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", ranged.strip())
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data) or start > end:
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        body = data[start : end + 1]
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        if etag:
            h.send_header("ETag", f'"{etag}"')
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        h.end_headers()
        if head:
            return
        try:
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return
        with self._lock:
            self.bytes_served += len(body)
            self.served[path] = self.served.get(path, 0) + len(body)
