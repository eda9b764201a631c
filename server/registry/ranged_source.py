"""A registry blob as a `ByteSource`: the GGUF header parser reads a model that is not downloaded.

"Will it fit?" needs a model's metadata (layers, heads, context, vocabulary
size), which sits in the first few MB of a file of many GB. This source
serves the header parser (`server/store/gguf_header.py`) from ranged GETs
(`Range: bytes=a-b`) of the blob URL, through the registry's own transport
and credentials. Two things keep what crosses the network small:

- **It fetches only what is read.** The parser steps over a long array of
  numbers (token scores, token types: megabytes in a big vocabulary) by its
  size without reading it, and this source fetches nothing for bytes nobody
  reads: a jump past the cached window starts a new range there.
- **A small read-ahead that grows while reading is sequential.** The parser
  asks for a few bytes at a time (a length, a type, a string); each miss
  fetches the next `min_window` bytes, and a miss right where the window
  ended doubles it (up to `max_window`), so a vocabulary of strings, which
  must be walked, costs a handful of requests and not thousands. A jump
  resets it, so a skipped array costs at most one window of bytes.

`budget` bounds what one header may make pollama fetch: past it the read
fails with a message, whatever the file claims. Redirects are followed as a
pull follows them (`download.py`): within the registry's host with its
credentials, to another host (a CDN) without them, and that URL is kept
for the following ranges.
"""

from __future__ import annotations

import threading
from urllib.parse import urljoin, urlsplit

import httpx

from server.registry.errors import RegistryError, Unreachable
from server.registry.transport import Repository, Transport, status_error

_REDIRECTS = (301, 302, 303, 307, 308)
#: The first read-ahead and its cap (bytes).
MIN_WINDOW = 64 * 1024
MAX_WINDOW = 512 * 1024
#: The most one header may cost. Real headers with their vocabulary take 1 to 10 MB (a 262k-token
#: vocabulary with its merges is the large end); 32 MB is three times that.
DEFAULT_BUDGET = 32 * 1024 * 1024


class HeaderTooLarge(RegistryError):
    status = 400


class RangedBlob:
    """The blob `digest` of `repo` (its size from the manifest), read by ranges; counts what it fetched."""

    def __init__(
        self,
        transport: Transport,
        repo: Repository,
        digest: str,
        size: int,
        *,
        min_window: int = MIN_WINDOW,
        max_window: int = MAX_WINDOW,
        budget: int = DEFAULT_BUDGET,
    ) -> None:
        self.transport = transport
        self.digest = digest
        self._size = size
        self.min_window = min_window
        self.max_window = max(max_window, min_window)
        self.budget = budget
        self.bytes_fetched = 0
        self.requests = 0
        self._url = repo.blob_url(digest)
        self._authenticate = True
        self._window = min_window
        self._buf = b""
        self._buf_at = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, n: int) -> bytes:
        if n <= 0 or offset >= self._size:
            return b""
        n = min(n, self._size - offset)
        with self._lock:
            start = offset - self._buf_at
            if 0 <= start and start + n <= len(self._buf):
                return self._buf[start : start + n]
            sequential = self._buf and offset >= self._buf_at and offset <= self._buf_at + len(self._buf)
            self._window = min(self._window * 2, self.max_window) if sequential else self.min_window
            # keep the part of the window already here that this read needs, fetch only the rest
            have = self._buf[start:] if sequential and start >= 0 else b""
            fetch_at = offset + len(have)
            want = min(max(n - len(have), self._window), self._size - fetch_at)
            data = have + self._fetch(fetch_at, want)
            self._buf, self._buf_at = data, offset
            return data[:n]

    def _fetch(self, offset: int, n: int) -> bytes:
        if self.bytes_fetched + n > self.budget:
            limit = f"{self.budget >> 20} MB" if self.budget >= 1 << 20 else f"{self.budget} bytes"
            raise HeaderTooLarge(
                f"the GGUF header of blob {self.digest[7:19]} is larger than the {limit} "
                "pollama reads before a download"
            )
        byte_range = f"bytes={offset}-{offset + n - 1}"
        for _ in range(10):
            response = self.transport.request(
                "GET", self._url, headers={"Range": byte_range}, stream=True, authenticate=self._authenticate
            )
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise RegistryError(f"{response.status_code} redirect without a Location")
                    target = urljoin(self._url, location)
                    if urlsplit(target).netloc != urlsplit(self._url).netloc:
                        self._authenticate = False  # the CDN gets no registry credentials
                    self._url = target
                    continue
                return self._body(response, offset, n)
            finally:
                response.close()
        raise RegistryError(f"blob {self.digest[7:19]}: too many redirects")

    def _body(self, response: httpx.Response, offset: int, n: int) -> bytes:
        code = response.status_code
        if code == 206:
            self._check_range(response.headers.get("content-range", ""), offset)
        elif code == 200:
            # The whole blob, from its first byte: usable only for a read that starts there.
            if offset != 0:
                raise RegistryError(
                    f"{urlsplit(self._url).netloc} does not answer ranged requests (Range), "
                    "so the model cannot be looked at before it is downloaded"
                )
        else:
            try:
                response.read()
                text = response.text.strip()[:300]
            except httpx.HTTPError:
                text = ""
            raise status_error(code, text)
        out = bytearray()
        self.requests += 1
        try:
            for chunk in response.iter_raw():
                out += chunk
                self.bytes_fetched += len(chunk)
                if len(out) >= n:
                    break
        except httpx.HTTPError as exc:
            raise Unreachable(f"reading blob {self.digest[7:19]}: {exc}") from exc
        if len(out) < n:
            raise RegistryError(
                f"blob {self.digest[7:19]} ended after {offset + len(out)} of the {self._size} bytes its manifest says"
            )
        return bytes(out[:n])

    def _check_range(self, content_range: str, offset: int) -> None:
        """`bytes a-b/total`: it must start where asked and, when the total is known, match the manifest."""
        unit, _, spec = content_range.partition(" ")
        span, _, total = spec.partition("/")
        first = span.partition("-")[0]
        if unit != "bytes" or not first.isdigit() or int(first) != offset:
            raise RegistryError(f"blob {self.digest[7:19]}: the registry answered range {content_range!r}")
        if total.isdigit() and int(total) != self._size:
            raise RegistryError(
                f"blob {self.digest[7:19]} is {total} bytes, but its manifest says {self._size}; "
                "the registry's manifest and blob disagree"
            )
