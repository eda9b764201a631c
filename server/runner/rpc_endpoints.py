"""RPC workers by address: `POLLAMA_RPC_WORKERS`, reaching a worker, the security warning.

Pure Python, safe in the server process (the config reads it); what touches
libggml is in server/runner/rpc.py and server/runner/ggml_backends.py.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from server.netaddr import is_loopback_host

#: How the environment names the workers a server's runners use.
WORKERS_ENV = "POLLAMA_RPC_WORKERS"
#: llama.cpp's rpc-server default port.
DEFAULT_PORT = 50052
#: How long a runner waits for a worker's TCP handshake before skipping it.
CONNECT_TIMEOUT = 3.0

SECURITY_WARNING = (
    "WARNING: the RPC protocol has no authentication and no encryption. Anyone who can reach "
    "{endpoint} can run code on this machine's devices and read what they hold. Never expose it "
    "to an untrusted network."
)


class RpcError(RuntimeError):
    """The RPC backend is missing or refused what was asked of it; the message says which."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @classmethod
    def parse(cls, text: str, *, default_port: int | None = None) -> Endpoint:
        """`host:port` (`[v6]:port` for IPv6); a clear ValueError for anything else."""
        raw = text.strip()
        host, sep, port_text = raw.rpartition(":")
        if raw.startswith("[") and "]" in raw:
            inside, _, rest = raw[1:].partition("]")
            host, port_text, sep = inside, rest.lstrip(":"), ":" if rest.startswith(":") else ""
        elif not sep or ":" in host:
            host, port_text = raw, ""
        if not host:
            raise ValueError(f"invalid RPC worker {text!r}: expected host:port")
        if not port_text:
            if default_port is None:
                raise ValueError(f"invalid RPC worker {text!r}: expected host:port")
            return cls(host, default_port)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid RPC worker {text!r}: the port must be a number from 1 to 65535")
        return cls(host, int(port_text))


def parse_workers(text: str | None) -> tuple[Endpoint, ...]:
    """`POLLAMA_RPC_WORKERS`: comma-separated `host:port` (port defaults to 50052), no repeats."""
    if not text or not text.strip():
        return ()
    seen: list[Endpoint] = []
    for part in text.split(","):
        if not part.strip():
            continue
        endpoint = Endpoint.parse(part, default_port=DEFAULT_PORT)
        if endpoint not in seen:
            seen.append(endpoint)
    return tuple(seen)


def reachable(endpoint: Endpoint, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when a TCP connection to the worker opens, else why not (for the log line)."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)
