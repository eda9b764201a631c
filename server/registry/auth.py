"""Answering a registry's 401: Ollama's signed challenge and Docker's token/Basic flows.

For a `Bearer` challenge the ways to get a token are tried in order until one
gives a token:
1. Docker's token flow with Basic credentials, when there are credentials
   for the host (`credentials.py`);
2. Ollama's flow (`server/auth.go` `getAuthorizationToken`): the realm request signed with the ed25519 key, only
   when the realm is on the registry's own host (Ollama refuses others, so a
   signature is never sent elsewhere);
3. Docker's anonymous token flow (public repositories on Docker-style registries).
A `Basic` challenge is answered with the credentials, if any. Whatever cannot
be answered becomes an `unauthorized` error that says where credentials go.
Tokens are kept per host until a new challenge replaces them.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from server.registry import challenge as ch
from server.registry import keys
from server.registry.credentials import Credentials, lookup
from server.registry.errors import RegistryError, Unauthorized

KeySource = Callable[[], keys.KeyPair]


@dataclass(frozen=True)
class TokenAttempt:
    name: str
    url: str
    headers: dict[str, str]


def plan_attempts(
    challenge: ch.Challenge,
    request_url: str,
    creds: Credentials | None,
    signer: Callable[[bytes], str] | None,
    *,
    ts: int,
    nonce: bytes,
) -> list[TokenAttempt]:
    """The token requests to try for a Bearer challenge, in order (no I/O)."""
    attempts: list[TokenAttempt] = []
    realm = urlsplit(challenge.realm)
    request = urlsplit(request_url)
    if creds is not None:
        attempts.append(TokenAttempt("basic", ch.token_url(challenge), {"Authorization": creds.basic_header()}))
    if signer is not None and realm.netloc == request.netloc:
        url = ch.signed_token_url(challenge, ts, nonce)
        attempts.append(TokenAttempt("ollama", url, {"Authorization": signer(ch.signing_payload("GET", url))}))
    attempts.append(TokenAttempt("anonymous", ch.token_url(challenge), {}))
    return attempts


def token_from(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    token = data.get("token") or data.get("access_token")
    return token if isinstance(token, str) and token else None


def _where_credentials_go(host: str) -> str:
    return (
        f"add credentials for {host} to ~/.docker/config.json (docker login {host}) "
        "or set POLLAMA_REGISTRY_USERNAME and POLLAMA_REGISTRY_PASSWORD"
    )


class Authenticator:
    """Holds the Authorization header per registry host and renews it on a challenge."""

    def __init__(self, *, home: Path, environ: Mapping[str, str], key_source: KeySource) -> None:
        self._home = home
        self._environ = environ
        self._key_source = key_source
        self._headers: dict[str, str] = {}
        self._lock = threading.Lock()

    def header_for(self, host: str) -> str | None:
        with self._lock:
            return self._headers.get(host)

    def forget(self, host: str) -> None:
        with self._lock:
            self._headers.pop(host, None)

    def _signer(self) -> Callable[[bytes], str] | None:
        try:
            pair = self._key_source()
        except (OSError, ValueError):
            return None
        return pair.authorization

    def answer(self, client: httpx.Client, response: httpx.Response) -> str:
        """Work out a new Authorization header for the request that got `response` (a 401)."""
        url = str(response.request.url)
        host = urlsplit(url).netloc
        challenge = ch.parse(response.headers.get("www-authenticate"))
        creds = lookup(host, home=self._home, environ=self._environ)
        if challenge is None:
            raise Unauthorized(f"unauthorized: {host} refused the request without saying how to authenticate")
        if challenge.scheme == "basic":
            if creds is None:
                raise Unauthorized(
                    f"unauthorized: {host} requires a user name and password; {_where_credentials_go(host)}"
                )
            header = creds.basic_header()
        elif challenge.scheme == "bearer" and challenge.realm:
            header = "Bearer " + self._token(client, challenge, url, creds)
        else:
            raise Unauthorized(f"unauthorized: unsupported authentication scheme {challenge.scheme!r} from {host}")
        with self._lock:
            self._headers[host] = header
        return header

    def _token(self, client: httpx.Client, challenge: ch.Challenge, url: str, creds: Credentials | None) -> str:
        host = urlsplit(url).netloc
        attempts = plan_attempts(
            challenge, url, creds, self._signer(), ts=int(time.time()), nonce=secrets.token_bytes(16)
        )
        failures: list[str] = []
        for attempt in attempts:
            try:
                response = client.get(attempt.url, headers=attempt.headers, follow_redirects=True)
            except httpx.HTTPError as exc:
                raise RegistryError(f"token request to {urlsplit(attempt.url).netloc} failed: {exc}") from None
            if response.status_code == 200:
                token = token_from(response)
                if token:
                    return token
                failures.append(f"{attempt.name}: no token in the response")
            else:
                failures.append(f"{attempt.name}: {response.status_code} {_snippet(response)}")
        hint = "" if creds else f"; {_where_credentials_go(host)}"
        raise Unauthorized(f"unauthorized: access denied by {host} ({'; '.join(failures)}){hint}")


def _snippet(response: httpx.Response) -> str:
    try:
        text = response.text.strip()
    except Exception:
        return ""
    return text[:200]
