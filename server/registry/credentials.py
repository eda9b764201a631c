"""Credentials for registries that use Docker's auth (Basic, or a token realm with Basic).

Where they come from, in order:
1. `~/.docker/config.json` → `auths` → the entry for the registry host (keys may be
   `host`, `host:port`, or a URL such as `https://host/v1/`), field `auth` =
   base64 of `user:password` (or `username` + `password` fields). Credential
   helpers (`credsStore`) are not run.
2. `POLLAMA_REGISTRY_USERNAME` / `POLLAMA_REGISTRY_PASSWORD`: for any other host,
   except Ollama's and Hugging Face's registries, which authenticate by key and
   must never be sent a password meant for a private registry.
Nothing is read at import; a lookup reads the file each time so a `docker login`
takes effect without a restart.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

KEY_AUTH_HOSTS = frozenset({"registry.ollama.ai", "ollama.com", "hf.co", "huggingface.co"})
ENV_USER = "POLLAMA_REGISTRY_USERNAME"
ENV_PASSWORD = "POLLAMA_REGISTRY_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def _host_of(key: str) -> str:
    key = key.strip()
    if "://" in key:
        return (urlsplit(key).netloc or "").lower()
    return key.split("/", 1)[0].lower()


def from_docker_config(config: object, host: str) -> Credentials | None:
    if not isinstance(config, dict):
        return None
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    host = host.lower()
    for key, entry in auths.items():
        if not isinstance(key, str) or _host_of(key) != host or not isinstance(entry, dict):
            continue
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                user, sep, password = base64.b64decode(auth).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if sep:
                return Credentials(user, password)
        name, secret = entry.get("username"), entry.get("password")
        if isinstance(name, str) and isinstance(secret, str) and name:
            return Credentials(name, secret)
    return None


def lookup(host: str, *, home: Path, environ: Mapping[str, str]) -> Credentials | None:
    """Credentials for `host` (`name:port` as in the model name), or None."""
    try:
        config = json.loads((home / ".docker" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    found = from_docker_config(config, host)
    if found:
        return found
    if host.lower().split(":")[0] in KEY_AUTH_HOSTS:
        return None
    user, password = environ.get(ENV_USER), environ.get(ENV_PASSWORD)
    if user:
        return Credentials(user, password or "")
    return None
