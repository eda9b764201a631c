"""`WWW-Authenticate` parsing and the token-request URLs built from it: no I/O.

Two flows answer a `Bearer` challenge: Ollama's (the request to the realm is
signed with the ed25519 key, `server/auth.go` `getAuthorizationToken`) and Docker's (anonymous or with Basic
credentials). Both need the same URL, and Ollama's signature covers it as
Go prints it, so the query is encoded the way Go's `url.Values.Encode` does:
keys sorted, `QueryEscape`d.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> list[str]:
        return [s for s in self.params.get("scope", "").split(" ") if s]


def parse(header: str | None) -> Challenge | None:
    """`Bearer realm="…",service="…",scope="…"` → Challenge; None when absent or not parseable."""
    if not header:
        return None
    text = header.strip()
    scheme, _, rest = text.partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1  # closing quote
            params[key] = "".join(value)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return Challenge(scheme.lower(), params)


def go_query_escape(text: str) -> str:
    """Go's `url.QueryEscape`: unreserved characters kept, space as `+`."""
    return quote_plus(text, safe="-_.~")


def token_url(challenge: Challenge, extra: list[tuple[str, str]] | None = None) -> str:
    """The realm with `service`, each `scope`, and extras added; query encoded as Go does."""
    parts = urlsplit(challenge.realm)
    values = parse_qsl(parts.query, keep_blank_values=True)
    if challenge.service:
        values.append(("service", challenge.service))
    for scope in challenge.scopes:
        values.append(("scope", scope))
    values.extend(extra or [])
    # Go sorts by key, keeping the order of values under one key.
    ordered = sorted(enumerate(values), key=lambda item: (item[1][0], item[0]))
    query = "&".join(f"{go_query_escape(k)}={go_query_escape(v)}" for _, (k, v) in ordered)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def signed_token_url(challenge: Challenge, ts: int, nonce: bytes) -> str:
    """Ollama's realm URL: adds `ts` (unix seconds) and `nonce` (base64url, no padding)."""
    nonce_text = base64.urlsafe_b64encode(nonce).rstrip(b"=").decode()
    return token_url(challenge, [("ts", str(ts)), ("nonce", nonce_text)])


def empty_body_digest() -> str:
    """`base64(hex(sha256("")))`: the body part of what Ollama signs for a GET."""
    return base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


def signing_payload(method: str, url: str) -> bytes:
    """What the key signs for a token request: `<METHOD>,<URL>,<base64(hex(sha256("")))>`."""
    return f"{method},{url},{empty_body_digest()}".encode()
