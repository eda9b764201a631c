"""Manifests: the OCI-style JSON that names a model's blobs.

A manifest is kept as the exact bytes it arrived with (pulled) or was first
written as (created): a model's ID is the SHA-256 of those bytes, so
re-serializing would change every ID a user has ever seen.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from server.store.blobs import parse_digest

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MEDIA_PREFIX = "application/vnd.ollama.image."

MODEL = MEDIA_PREFIX + "model"
PROJECTOR = MEDIA_PREFIX + "projector"
ADAPTER = MEDIA_PREFIX + "adapter"
DRAFT = MEDIA_PREFIX + "draft"  # a draft model for speculative decoding (Ollama's `manifest.MediaTypeImageDraft`)
TEMPLATE = MEDIA_PREFIX + "template"
PROMPT = MEDIA_PREFIX + "prompt"  # legacy name of the template layer
SYSTEM = MEDIA_PREFIX + "system"
PARAMS = MEDIA_PREFIX + "params"
MESSAGES = MEDIA_PREFIX + "messages"
LICENSE = MEDIA_PREFIX + "license"


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int
    from_: str | None = None
    name: str | None = None

    @classmethod
    def from_json(cls, obj: Any) -> Layer:
        if not isinstance(obj, dict):
            raise ManifestError("layer is not an object")
        try:
            media_type = obj["mediaType"]
            digest = parse_digest(obj["digest"])
            size = obj["size"]
        except (KeyError, Exception) as exc:
            raise ManifestError(f"invalid layer: {exc}") from None
        if not isinstance(media_type, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError("invalid layer fields")
        frm = obj.get("from")
        name = obj.get("name")
        return cls(
            media_type,
            digest,
            size,
            frm if isinstance(frm, str) and frm else None,
            name if isinstance(name, str) and name else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.from_:
            out["from"] = self.from_
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    config: Layer
    layers: tuple[Layer, ...]
    schema_version: int = 2
    media_type: str = MANIFEST_MEDIA_TYPE

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the manifest bytes: the model's ID."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def size(self) -> int:
        """What `/api/tags` reports: every layer plus the config blob."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def blob_digests(self) -> set[str]:
        return {self.config.digest, *(layer.digest for layer in self.layers)}

    def layers_of(self, *media_types: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.media_type in media_types]

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ManifestError("manifest is not a JSON object")
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise ManifestError("manifest has no layers list")
        config = obj.get("config")
        return cls(
            raw=bytes(raw),
            config=Layer.from_json(config),
            layers=tuple(Layer.from_json(item) for item in layers),
            schema_version=obj.get("schemaVersion", 2),
            media_type=obj.get("mediaType", MANIFEST_MEDIA_TYPE),
        )

    @classmethod
    def build(cls, config: Layer, layers: list[Layer]) -> Manifest:
        """A new manifest as Ollama writes one: compact JSON, Go's HTML escaping, newline."""
        obj = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return cls(raw=(text + "\n").encode(), config=config, layers=tuple(layers))
