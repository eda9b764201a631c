"""API keys (`POLLAMA_API_KEYS`): a server exposed beyond loopback answers only key holders.

Ollama has no such check (its users asked for one in ollama/ollama#849), so with
no keys set nothing changes. With keys, every request must carry one as
`Authorization: Bearer <key>` (what the OpenAI SDK and Ollama's clients send,
the latter from `OLLAMA_API_KEY`) or `x-api-key: <key>` (Anthropic's SDK);
the liveness routes `GET /` and `/api/version` stay open so that apps can still
find the server, and so do CORS preflights, which browsers send without
credentials. A refusal is a 401 in the shape of the API the path belongs to,
so each SDK raises its own authentication error.

A presented key is compared with every configured key in constant time
(`hmac.compare_digest`, no early exit), so the answer's timing does not tell how
much of a key was right. Keys are never logged: the access log writes the path
only, and no message here quotes what a client sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from quart import Quart, Response, request

from server.api.compat import anthropic as an
from server.api.http import json_response
from server.config import Config

#: Routes that answer without a key: how a client finds out a server is there, and which.
OPEN_ROUTES = frozenset({("GET", "/"), ("HEAD", "/"), ("GET", "/api/version"), ("HEAD", "/api/version")})

MISSING = "missing API key: send it as 'Authorization: Bearer <key>'"
INVALID = "invalid API key"


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys, as bytes; `repr` shows how many, never which."""

    keys: tuple[bytes, ...]

    @classmethod
    def of(cls, keys: Iterable[str]) -> ApiKeys:
        return cls(tuple(k.encode("ascii") for k in keys))

    def __repr__(self) -> str:
        return f"ApiKeys({len(self.keys)} keys)"

    def accepts(self, presented: Iterable[str]) -> bool:
        """Whether any presented credential equals any key, comparing every pair in full."""
        ok = False
        for candidate in presented:
            raw = candidate.encode("utf-8", "replace")
            for key in self.keys:
                ok |= hmac.compare_digest(raw, key)
        return ok


class HeaderLookup(Protocol):
    def get(self, key: str, default: str) -> str: ...


def presented_keys(headers: HeaderLookup) -> list[str]:
    """The credentials a request carries: a Bearer token and/or an `x-api-key`."""
    found = []
    auth = headers.get("Authorization", "").strip()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found.append(token.strip())
    api_key = headers.get("X-Api-Key", "").strip()
    if api_key:
        found.append(api_key)
    return found


def refusal(path: str, message: str) -> Response:
    """A 401 shaped like the errors of the API `path` belongs to."""
    headers = {"WWW-Authenticate": 'Bearer realm="pollama"'}
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        body = an.error_body(401, message)
        return json_response(body, 401, headers={**headers, "request-id": body["request_id"]})
    if path.startswith("/v1/"):
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
        return json_response({"error": error}, 401, headers=headers)
    return json_response({"error": f"unauthorized: {message}"}, 401, headers=headers)


def install(app: Quart, config: Config) -> None:
    """Add the key check after the CORS/Host hook (so preflights and foreign hosts are answered first)."""
    if not config.api_keys:
        return
    keys = ApiKeys.of(config.api_keys)

    @app.before_request
    async def require_api_key() -> Response | None:
        if request.method == "OPTIONS" or (request.method, request.path) in OPEN_ROUTES:
            return None
        presented = presented_keys(request.headers)
        if not presented:
            return refusal(request.path, MISSING)
        if not keys.accepts(presented):
            return refusal(request.path, INVALID)
        return None
