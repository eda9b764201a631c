"""`RangedBlob`: a blob read by ranges for the GGUF header parser; fetches only what is read, and says what went wrong.

Served by a small loopback HTTP server that can answer ranges properly, ignore
them (200 with the whole body), or claim a different size, and that records
every range asked for.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from server.registry.auth import Authenticator
from server.registry.errors import RegistryError
from server.registry.ranged_source import HeaderTooLarge, RangedBlob
from server.registry.settings import TransferSettings
from server.registry.transport import Repository, Transport
from server.store.gguf_header import read_file_header, read_header
from tests.support.live_server import free_port

DIGEST = "sha256:" + "ab" * 32


@dataclass
class Blob:
    data: bytes
    honour_ranges: bool = True
    claimed_total: int | None = None
    ranges: list[tuple[int, int]] = field(default_factory=list)


@pytest.fixture
def blob_server() -> Iterator[tuple[str, Blob]]:
    blob = Blob(b"")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
            data, status = blob.data, 200
            headers = {}
            if m and blob.honour_ranges:
                start, end = int(m.group(1)), min(int(m.group(2)), len(blob.data) - 1)
                blob.ranges.append((start, end))
                data, status = blob.data[start : end + 1], 206
                headers["Content-Range"] = f"bytes {start}-{end}/{blob.claimed_total or len(blob.data)}"
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that stops reading a body it does not need resets the connection

    port = free_port()
    httpd = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{port}", blob
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def transport(tmp_path: Path) -> Iterator[Transport]:
    auth = Authenticator(home=tmp_path, environ={}, key_source=lambda: (_ for _ in ()).throw(OSError("no key")))
    t = Transport(TransferSettings(), auth, environ={})
    try:
        yield t
    finally:
        t.close()


def source(transport: Transport, host: str, size: int, **kw: Any) -> RangedBlob:
    return RangedBlob(transport, Repository("http", host, "library/m"), DIGEST, size, **kw)


def test_the_header_parses_as_from_the_file_and_skipped_bytes_are_not_fetched(
    blob_server: tuple[str, Blob], transport: Transport, small_model_path: Path
) -> None:
    host, blob = blob_server
    blob.data = small_model_path.read_bytes()
    ranged = source(transport, host, len(blob.data))
    header = read_header(ranged, chunk=16 * 1024)
    assert header == read_file_header(small_model_path)
    # the parser stopped at the tensor infos: nothing past the data offset (plus one read-ahead) was fetched
    assert ranged.bytes_fetched == sum(end - start + 1 for start, end in blob.ranges)
    assert max(end for _, end in blob.ranges) < header.data_offset + ranged.max_window
    assert ranged.bytes_fetched < len(blob.data) // 10


def test_reads_are_served_from_the_window_and_a_jump_starts_a_new_range(
    blob_server: tuple[str, Blob], transport: Transport
) -> None:
    host, blob = blob_server
    blob.data = bytes(range(256)) * 4096  # 1 MiB
    ranged = source(transport, host, len(blob.data), min_window=1000, max_window=4000)
    assert ranged.read_at(0, 10) == blob.data[:10]
    assert ranged.read_at(500, 10) == blob.data[500:510]  # inside the first window: no request
    assert blob.ranges == [(0, 999)]
    assert ranged.read_at(990, 20) == blob.data[990:1010]  # runs past it: fetch only the rest, a bigger window
    assert blob.ranges[-1] == (1000, 2999)
    assert ranged.read_at(600_000, 4) == blob.data[600_000:600_004]  # a jump: back to the small window
    assert blob.ranges[-1] == (600_000, 600_999)
    assert ranged.read_at(len(blob.data) - 2, 10) == blob.data[-2:]  # the end: fewer bytes, as a file gives


def test_bad_answers_are_errors_in_words(blob_server: tuple[str, Blob], transport: Transport) -> None:
    host, blob = blob_server
    blob.data = b"GGUF" + bytes(100_000)
    blob.honour_ranges = False
    ignoring = source(transport, host, len(blob.data), min_window=1000)
    assert ignoring.read_at(0, 4) == b"GGUF"  # a 200 from the start is usable for a read at 0
    with pytest.raises(RegistryError, match="does not answer ranged requests"):
        ignoring.read_at(50_000, 4)
    assert ignoring.bytes_fetched < 100_000  # the whole body was not read for it

    blob.honour_ranges, blob.claimed_total = True, 5
    with pytest.raises(RegistryError, match="is 5 bytes, but its manifest says 100004"):
        source(transport, host, len(blob.data)).read_at(0, 4)

    blob.claimed_total = None
    small_budget = source(transport, host, len(blob.data), min_window=1000, budget=3500)
    small_budget.read_at(0, 10)
    small_budget.read_at(1000, 10)  # 1000 + 2000 bytes so far
    with pytest.raises(HeaderTooLarge, match="larger than the 3500 bytes pollama reads before a download"):
        small_budget.read_at(50_000, 10)
