"""Model names: `[scheme://]host/namespace/model:tag`, parsed as Ollama does.

A name is validated part by part before it ever becomes a path, and the
allowed characters exclude `/`, `\\` and leading dots, so no name can point
outside the manifests folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.errors import InvalidModelName

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"

_MISSING = "!MISSING!"
_MAX_LEN = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
_FIRST = re.compile(r"[A-Za-z0-9_]")
_REST = {
    "host": re.compile(r"[A-Za-z0-9_.:-]*"),
    "namespace": re.compile(r"[A-Za-z0-9_-]*"),
    "model": re.compile(r"[A-Za-z0-9_.-]*"),
    "tag": re.compile(r"[A-Za-z0-9_.-]*"),
}


def _valid_part(kind: str, part: str) -> bool:
    if not 1 <= len(part) <= _MAX_LEN[kind]:
        return False
    return bool(_FIRST.fullmatch(part[0]) and _REST[kind].fullmatch(part[1:]))


def _cut_last(s: str, sep: str) -> tuple[str, str, bool]:
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return (s[:i] or _MISSING), (s[i + 1 :] or _MISSING), True


@dataclass(frozen=True)
class Name:
    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = DEFAULT_SCHEME

    @classmethod
    def parse(cls, text: str) -> Name:
        """Parse and fill defaults; raises InvalidModelName for anything not a valid name."""
        name = cls.parse_lenient(text)
        if not name.is_valid:
            raise InvalidModelName()
        return name

    @classmethod
    def parse_lenient(cls, text: str) -> Name:
        """Parse without validating (invalid parts are kept, `is_valid` is False)."""
        if not isinstance(text, str):
            return cls(_MISSING, _MISSING, _MISSING, _MISSING)
        s = text
        host = namespace = tag = ""
        scheme = DEFAULT_SCHEME
        if s.rfind(":") > s.rfind("/"):
            s, tag, _ = _cut_last(s, ":")
        s, model, cut = _cut_last(s, "/")
        if not cut:
            model = s
        else:
            s, namespace, cut = _cut_last(s, "/")
            if not cut:
                namespace = s
            else:
                if "://" in s:
                    scheme, host = s.split("://", 1)
                else:
                    host = s
        return cls(
            host=host or DEFAULT_HOST,
            namespace=namespace or DEFAULT_NAMESPACE,
            model=model,
            tag=tag or DEFAULT_TAG,
            scheme=scheme or DEFAULT_SCHEME,
        )

    @property
    def is_valid(self) -> bool:
        return (
            _valid_part("host", self.host)
            and _valid_part("namespace", self.namespace)
            and _valid_part("model", self.model)
            and _valid_part("tag", self.tag)
        )

    @property
    def display(self) -> str:
        """The shortest form Ollama shows: `llama3.2:latest`, `me/m:tag`, `hf.co/u/r:Q4`."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def full(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """The manifest path components, host first."""
        return (self.host, self.namespace, self.model, self.tag)

    def same_as(self, other: Name) -> bool:
        """Names are equal ignoring case, which is how the store matches them."""
        return tuple(p.lower() for p in self.parts) == tuple(p.lower() for p in other.parts)

    def __str__(self) -> str:
        return self.display
