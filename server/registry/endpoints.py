"""Where a model name's registry really is: `HF_ENDPOINT` for `hf.co/...` names, the name's own host otherwise.

Hugging Face serves an Ollama-compatible registry for GGUF repositories at
`https://hf.co/v2/<user>/<repo>/...`; Ollama reaches it with no special code
(`server/images.go`, `pullModelManifest` builds `<scheme>://<host>/v2/...`
from the name; `types/model/name.go` parses `hf.co/<user>/<repo>:<quant>`
like any other name). The `huggingface_hub` library and every Hugging Face
tool honour `HF_ENDPOINT` (a mirror, an enterprise hub, a test server); so
does pollama: with it set, names on `hf.co` or `huggingface.co` go to that
base URL instead. The name itself stays `hf.co/...` in the store, so a model
pulled through a mirror is the same model as one pulled from hf.co.

Plain HTTP is accepted for an endpoint on loopback (a local mirror or a test
server), or when the request sets `insecure`; anywhere else it is refused,
as an `http://` name without `insecure` is (Ollama: `insecure protocol http`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.config import ConfigError

#: Host names that mean Hugging Face's registry, as Ollama users write them.
HF_HOSTS = frozenset({"hf.co", "huggingface.co"})


@dataclass(frozen=True)
class Endpoint:
    """A base URL that replaces a name's `<scheme>://<host>`: scheme, host[:port] and an optional path."""

    scheme: str
    host: str
    root: str = ""

    @classmethod
    def parse(cls, url: str, what: str = "HF_ENDPOINT") -> Endpoint:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{what}: {url!r} is not an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ConfigError(f"{what}: {url!r} must not carry a query or a fragment")
        return cls(parts.scheme, parts.netloc, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.root}"

    @property
    def loopback(self) -> bool:
        host = urlsplit(f"//{self.host}").hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class Endpoints:
    """The registry hosts whose requests go elsewhere (only Hugging Face's, from `HF_ENDPOINT`)."""

    huggingface: Endpoint | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Endpoints:
        raw = environ.get("HF_ENDPOINT", "").strip()
        return cls(Endpoint.parse(raw) if raw else None)

    def for_host(self, host: str) -> Endpoint | None:
        if self.huggingface is not None and host.lower() in HF_HOSTS:
            return self.huggingface
        return None
