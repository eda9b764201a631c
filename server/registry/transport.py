"""HTTP to registries: one httpx client per service, auth on 401, errors worded once.

The client is synchronous on purpose: blob bytes move in worker threads
(socket read, disk write and hashing all release the GIL), which measured
two to three times faster than httpx's asyncio path with parallel parts.
The async layer above calls into it through a dedicated thread pool.
Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (`trust_env`).
Blob parts on a direct route skip httpx's body handling (`ranges.py`).
"""

from __future__ import annotations

import contextlib
import platform
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from server import __version__
from server.registry.auth import Authenticator
from server.registry.endpoints import Endpoints
from server.registry.errors import NotOnRegistry, RegistryError, Unauthorized, Unreachable
from server.registry.ranges import BodyStalled, ConnectionPool, FillingBody, RangeBody
from server.registry.settings import TransferSettings
from server.registry.tls import client_context
from server.store.names import Name

#: The Ollama version pollama speaks the protocol of; registries gate model
#: features on the `ollama/<version>` in the User-Agent.
OLLAMA_PROTOCOL_VERSION = "0.33.0"

Body = bytes | Callable[[], Iterable[bytes]] | None


def user_agent() -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "amd64": "amd64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    os_name = platform.system().lower()
    return f"ollama/{OLLAMA_PROTOCOL_VERSION} ({arch} {os_name}) Go/go1.24.0 pollama/{__version__}"


@dataclass(frozen=True)
class Repository:
    """Where a model lives on its registry: base URL and `<namespace>/<model>`.

    `root` is a path before `/v2/` (an `HF_ENDPOINT` with a path); empty for a name's own host.
    """

    scheme: str
    host: str
    path: str
    root: str = ""

    @classmethod
    def of(cls, name: Name, *, insecure: bool, endpoints: Endpoints | None = None) -> Repository:
        path = f"{name.namespace}/{name.model}"
        endpoint = endpoints.for_host(name.host) if endpoints is not None else None
        if endpoint is not None:
            # The endpoint says its own scheme; plain HTTP only on loopback or when asked for.
            if endpoint.scheme == "http" and not (insecure or endpoint.loopback):
                raise RegistryError(
                    f"insecure protocol http: HF_ENDPOINT {endpoint.url} is plain HTTP on another machine; "
                    "use https, or set insecure to allow it"
                )
            return cls(endpoint.scheme, endpoint.host, path, endpoint.root)
        scheme = name.scheme.lower()
        if insecure:
            scheme = "http"
        elif scheme == "http":
            raise RegistryError("insecure protocol http")
        elif scheme != "https":
            raise RegistryError(f"unsupported protocol {scheme}")
        return cls(scheme, name.host, path)

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}{self.root}"

    def url(self, suffix: str) -> str:
        return f"{self.base}/v2/{self.path}/{suffix}"

    def manifest_url(self, reference: str) -> str:
        return self.url(f"manifests/{reference}")

    def blob_url(self, digest: str) -> str:
        return self.url(f"blobs/{digest}")


def describe(exc: BaseException, url: str) -> str:
    """A network failure in words a person can act on."""
    host = urlsplit(url).netloc
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"TLS certificate of {host} could not be verified ({text}); if the registry uses a private CA, "
            "set SSL_CERT_FILE to a bundle that includes it"
        )
    if isinstance(cause, ssl.SSLError) or "SSL" in text and isinstance(exc, httpx.ConnectError):
        return f"TLS handshake with {host} failed: {text}"
    if isinstance(exc, httpx.ProxyError):
        return f"proxy refused the connection to {host}: {text}"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"cannot reach {host}: connection timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {host}: {text}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{host} stopped responding ({type(exc).__name__})"
    return f"connection to {host} failed: {text}"


class Transport:
    def __init__(
        self,
        settings: TransferSettings,
        authenticator: Authenticator,
        *,
        environ: Mapping[str, str],
    ) -> None:
        self.settings = settings
        self.auth = authenticator
        tls = client_context(environ)
        self._user_agent = user_agent()
        self.client = httpx.Client(
            verify=tls,
            trust_env=True,
            follow_redirects=False,
            headers={"User-Agent": self._user_agent},
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.retry.stall_timeout,
                write=settings.retry.stall_timeout,
                pool=None,
            ),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self.parts = ConnectionPool(
            tls, connect_timeout=settings.connect_timeout, read_timeout=settings.retry.stall_timeout
        )

    def close(self) -> None:
        self.client.close()
        self.parts.close()

    def open_range(self, url: str, byte_range: str, *, authenticate: bool) -> RangeBody:
        """A ranged GET of blob bytes, ready to `readinto`; the caller closes it.

        Direct routes take the http.client fast path. A route through a proxy
        stays on httpx (which owns the proxy rules), and so does a part the
        registry answers with 401: httpx's path answers the challenge, and
        the fresh token serves the fast path from then on.
        """
        headers = {"Range": byte_range}
        if self._direct(url):
            sent = {"User-Agent": self._user_agent, **headers}
            current = self.auth.header_for(urlsplit(url).netloc) if authenticate else None
            if current:
                sent["Authorization"] = current
            body = self.parts.get(url, sent)
            if body.status != 401 or not authenticate:
                return body
            body.text()
            body.close()
        return StreamedBody(self.request("GET", url, headers=headers, stream=True, authenticate=authenticate))

    def _direct(self, url: str) -> bool:
        """Whether httpx would connect to `url` itself rather than through a proxy."""
        try:
            return self.client._transport_for_url(httpx.URL(url)) is self.client._transport
        except AttributeError:  # httpx internals moved: let httpx route every part
            return False

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        authenticate: bool = True,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send with the host's credentials; on a 401, authenticate and retry once.

        Raises RegistryError for network failures and for a second 401.
        A streamed response must be closed by the caller.
        """
        host = urlsplit(url).netloc
        for attempt in (0, 1):
            sent = dict(headers or {})
            current = self.auth.header_for(host) if authenticate else None
            if current and "Authorization" not in sent:
                sent["Authorization"] = current
            content = body() if callable(body) else body
            try:
                request = self.client.build_request(method, url, headers=sent, content=content)
                response = self.client.send(request, stream=True, follow_redirects=follow_redirects)
            except httpx.HTTPError as exc:
                raise Unreachable(describe(exc, url)) from exc
            if response.status_code == 401 and authenticate:
                response.read()
                response.close()
                if attempt == 1:
                    if current:
                        self.auth.forget(host)
                    raise Unauthorized(f"unauthorized: access denied by {host} ({_snippet(response)})")
                self.auth.answer(self.client, response)
                continue
            if not stream:
                try:
                    response.read()
                except httpx.HTTPError as exc:
                    response.close()
                    raise Unreachable(describe(exc, url)) from exc
                finally:
                    response.close()
            return response
        raise AssertionError("unreachable")


def check_status(response: httpx.Response, *, allow: Iterable[int] = (200,)) -> None:
    """Ollama's mapping: 404 → `file does not exist`, other errors → `<code>: <body>`."""
    code = response.status_code
    if code in allow:
        return
    try:
        response.read()
    except httpx.HTTPError:
        pass
    finally:
        response.close()
    raise status_error(code, _snippet(response))


def status_error(code: int, text: str) -> RegistryError:
    """The error for a registry's answer `code` with body `text` (see `check_status`)."""
    if code == 404:
        return NotOnRegistry()
    if code == 401:
        return Unauthorized(f"unauthorized: {text}")
    if code == 403:
        return Unauthorized(f"access denied: {text}")
    return RegistryError(f"{code}: {text}")


def _snippet(response: httpx.Response) -> str:
    try:
        return response.text.strip()[:500]
    except Exception:
        return ""


class StreamedBody(FillingBody):
    """An httpx streamed response behind the `RangeBody` interface (proxied parts, re-authenticated ones)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.iter_raw()
        self._left = memoryview(b"")
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    def _read_some(self, view: memoryview) -> int:
        if not self._left:
            self._left = memoryview(self._next_chunk())
        n = min(len(view), len(self._left))
        view[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def _next_chunk(self) -> bytes:
        try:
            return next(self._chunks, b"")
        except httpx.ReadTimeout as exc:
            raise BodyStalled("no data within the read timeout") from exc
        except httpx.HTTPError as exc:
            raise RegistryError(describe(exc, str(self._response.request.url))) from exc

    def text(self) -> str:
        with contextlib.suppress(Exception):  # only words for a message: never worth a second error
            self._response.read()
            return self._response.text.strip()[:500]
        return ""

    def close(self) -> None:
        self._response.close()

    def abort(self) -> None:
        """Nothing safe to do from another thread; the read timeout bounds the wait."""
