"""HTTP to registries: one httpx client per service, auth on 401, errors worded once.

The client is synchronous on purpose: blob bytes move in worker threads
(socket read, disk write and hashing all release the GIL), which measured
two to three times faster than httpx's asyncio path with parallel parts.
The async layer above calls into it through a dedicated thread pool.
Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (`trust_env`).
"""

from __future__ import annotations

import platform
import ssl
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import httpx

from server import __version__
from server.registry.auth import Authenticator
from server.registry.errors import NotOnRegistry, RegistryError, Unauthorized
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
    """Where a model lives on its registry: base URL and `<namespace>/<model>`."""

    scheme: str
    host: str
    path: str

    @classmethod
    def of(cls, name: Name, *, insecure: bool) -> "Repository":
        scheme = name.scheme.lower()
        if insecure:
            scheme = "http"
        elif scheme == "http":
            raise RegistryError("insecure protocol http")
        elif scheme != "https":
            raise RegistryError(f"unsupported protocol {scheme}")
        return cls(scheme, name.host, f"{name.namespace}/{name.model}")

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

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
        self.client = httpx.Client(
            verify=client_context(environ),
            trust_env=True,
            follow_redirects=False,
            headers={"User-Agent": user_agent()},
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.retry.stall_timeout,
                write=settings.retry.stall_timeout,
                pool=None,
            ),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    def close(self) -> None:
        self.client.close()

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
                raise RegistryError(describe(exc, url)) from exc
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
                    raise RegistryError(describe(exc, url)) from exc
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
    if code == 404:
        raise NotOnRegistry()
    if code == 401:
        raise Unauthorized(f"unauthorized: {_snippet(response)}")
    if code == 403:
        raise Unauthorized(f"access denied: {_snippet(response)}")
    raise RegistryError(f"{code}: {_snippet(response)}")


def _snippet(response: httpx.Response) -> str:
    try:
        return response.text.strip()[:500]
    except Exception:
        return ""
