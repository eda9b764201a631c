"""CORS and Host-header checks, exactly as Ollama applies them (`server/routes.go`: the CORS config of `GenerateRoutes` and `allowedHostsMiddleware`).

The origin and host rules are plain functions so they can be tested without a
server; `install(app, config)` wires them in as request hooks. The Host check
is the DNS-rebinding defence: a web page on `evil.example` that resolves to
127.0.0.1 still sends `Host: evil.example`, and is refused.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from functools import lru_cache

from quart import Quart, Response, request

from server.api.compat.common import TRUNCATION_HEADERS
from server.config import Config

DEFAULT_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")
DEFAULT_ORIGIN_SCHEMES = ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
ALLOW_HEADERS = ",".join(
    [
        "Authorization",
        "Content-Type",
        "User-Agent",
        "Accept",
        "X-Requested-With",
        "Openai-Beta",
        # what Anthropic's SDK sends from a browser; Ollama serves /v1/messages but its
        # preflight refuses these, so browser apps cannot call it
        "Anthropic-Version",
        "Anthropic-Beta",
        "Anthropic-Dangerous-Direct-Browser-Access",
        "X-Api-Key",
        *(
            "X-Stainless-" + h
            for h in (
                "Arch",
                "Async",
                "Custom-Poll-Interval",
                "Helper-Method",
                "Lang",
                "Os",
                "Package-Version",
                "Poll-Helper",
                "Retry-Count",
                "Runtime",
                "Runtime-Version",
                "Timeout",
            )
        ),
    ]
)
# pollama's own response headers a browser app may read (fetch() hides any other but the
# CORS-safelisted ones): how much of a `/v1` prompt did not fit (`compat/common.py` `truncation_headers`)
EXPOSE_HEADERS = ", ".join(TRUNCATION_HEADERS.values())
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def default_origins() -> list[str]:
    out = []
    for host in DEFAULT_ORIGIN_HOSTS:
        out += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    return out + list(DEFAULT_ORIGIN_SCHEMES)


class OriginPolicy:
    def __init__(self, extra: Iterable[str]) -> None:
        entries = [e.strip() for e in extra if e.strip()]
        self.allow_all = "*" in entries
        self.entries = [e for e in entries if e != "*"] + default_origins()

    def allows(self, origin: str) -> bool:
        if self.allow_all:
            return True
        for entry in self.entries:
            if "*" not in entry:
                if origin == entry:
                    return True
                continue
            prefix, _, suffix = entry.partition("*")
            if len(origin) >= len(prefix) + len(suffix) and origin.startswith(prefix) and origin.endswith(suffix):
                return True
        return False


@lru_cache(maxsize=1)
def _local_addresses() -> frozenset[str]:
    addrs: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addrs.add(str(info[4][0]))
    except OSError:
        pass
    return frozenset(addrs)


def split_host(host_header: str) -> str:
    host = host_header.strip()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def host_allowed(host_header: str) -> tuple[bool, bool]:
    """(allowed, is_hostname): whether a Host header may reach a loopback-bound server."""
    host = split_host(host_header)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower()
        ok = (
            name in ("", "localhost")
            or name == socket.gethostname().lower()
            or name.endswith((".localhost", ".local", ".internal"))
        )
        return ok, True
    ok = ip.is_loopback or ip.is_private or ip.is_unspecified or host in _local_addresses()
    return ok, False


def install(app: Quart, config: Config) -> None:
    policy = OriginPolicy(config.origins)
    check_host = config.host.is_loopback

    @app.before_request
    async def cors_and_host() -> Response | None:
        origin = request.headers.get("Origin")
        host = request.headers.get("Host", "")
        cors = bool(origin) and origin not in (f"http://{host}", f"https://{host}")
        if cors:
            assert origin is not None
            if not policy.allows(origin):
                return Response("", status=403)
            if request.method == "OPTIONS":
                return Response(
                    "",
                    status=204,
                    headers={
                        "Access-Control-Allow-Origin": "*" if policy.allow_all else origin,
                        "Access-Control-Allow-Methods": ALLOW_METHODS,
                        "Access-Control-Allow-Headers": ALLOW_HEADERS,
                        "Access-Control-Max-Age": "43200",
                        "Vary": PREFLIGHT_VARY,
                    },
                )
        if check_host:
            allowed, is_name = host_allowed(host)
            if not allowed:
                return Response("", status=403)
            if is_name and request.method == "OPTIONS":
                return Response("", status=204)
        return None

    @app.after_request
    async def cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        host = request.headers.get("Host", "")
        if origin and origin not in (f"http://{host}", f"https://{host}") and policy.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = "*" if policy.allow_all else origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            if not policy.allow_all:
                response.headers.add("Vary", "Origin")
        return response
