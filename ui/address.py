"""Where the UI finds the server: `OLLAMA_HOST` rules, read without `server/`.

A server bound to every interface (`0.0.0.0`) is reached on loopback; the
"expose to the network" switch flips only the host part and keeps the port.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ui.settings_store import DEFAULT_PORT, clean

_ANY = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Address:
    scheme: str
    host: str
    port: int

    @property
    def exposed(self) -> bool:
        """Listening beyond this machine (anything that is not loopback)."""
        return self.host not in ("127.0.0.1", "localhost", "::1")

    @property
    def client_url(self) -> str:
        host = "127.0.0.1" if self.host in _ANY else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}"

    def setting(self, *, exposed: bool) -> str | None:
        """The OLLAMA_HOST value for this port with the chosen exposure (None = the default)."""
        if exposed:
            return f"0.0.0.0:{self.port}"
        return None if self.port == DEFAULT_PORT else f"127.0.0.1:{self.port}"


def parse_address(value: str | None) -> Address:
    s = clean(value or "")
    if not s:
        return Address("http", "127.0.0.1", DEFAULT_PORT)
    scheme, default_port = "http", DEFAULT_PORT
    if "://" in s:
        scheme, s = s.split("://", 1)
        scheme = scheme.lower()
        default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    s = s.split("/", 1)[0]
    try:
        parts = urlsplit(f"//{s}")
        port = parts.port
    except ValueError:
        return Address("http", "127.0.0.1", DEFAULT_PORT)
    host = parts.hostname if parts.hostname is not None else ("127.0.0.1" if s.startswith(":") else s)
    return Address(scheme, host.strip("[]"), port if port is not None else default_port)
