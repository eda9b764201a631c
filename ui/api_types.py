"""Typed views of the JSON the HTTP API returns, parsed once at the edge.

The UI reads `/api/tags`, `/api/ps`, `/api/show` and pollama's extension
endpoints; widgets should never poke into raw dicts, so that a field the
server omits (Ollama omits zeros) shows as a sensible default everywhere.
These are the UI's own types: `ui/` talks HTTP and never imports `server/`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

#: Expiry dates further away than this mean "kept loaded forever" (Ollama shows ~292 years ahead).
FOREVER_AFTER = dt.timedelta(days=365 * 50)

_FRACTION = re.compile(r"(\.\d+)")


def parse_time(value: Any) -> dt.datetime | None:
    """RFC 3339 with up to nanosecond fractions (Go's format) → aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = _FRACTION.sub(lambda m: m.group(1)[:7], text, count=1)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class ModelDetails:
    family: str = ""
    families: tuple[str, ...] = ()
    parameter_size: str = ""
    quantization_level: str = ""
    format: str = ""
    parent_model: str = ""

    @classmethod
    def from_json(cls, obj: Any) -> ModelDetails:
        if not isinstance(obj, dict):
            return cls()
        families = obj.get("families") or ()
        return cls(
            family=_str(obj.get("family")),
            families=tuple(str(f) for f in families) if isinstance(families, list) else (),
            parameter_size=_str(obj.get("parameter_size")),
            quantization_level=_str(obj.get("quantization_level")),
            format=_str(obj.get("format")),
            parent_model=_str(obj.get("parent_model")),
        )


@dataclass(frozen=True)
class LocalModel:
    """One entry of `GET /api/tags`."""

    name: str
    digest: str = ""
    size: int = 0
    modified_at: dt.datetime | None = None
    details: ModelDetails = field(default_factory=ModelDetails)
    capabilities: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """What `ollama list` calls the ID: the manifest digest's first 12 hex digits."""
        return self.digest.removeprefix("sha256:")[:12]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LocalModel:
        caps = obj.get("capabilities") or ()
        return cls(
            name=_str(obj.get("name") or obj.get("model")),
            digest=_str(obj.get("digest")),
            size=_int(obj.get("size")),
            modified_at=parse_time(obj.get("modified_at")),
            details=ModelDetails.from_json(obj.get("details")),
            capabilities=tuple(str(c) for c in caps) if isinstance(caps, list) else (),
        )


def parse_tags(body: Any) -> list[LocalModel]:
    models = body.get("models") if isinstance(body, dict) else None
    return [LocalModel.from_json(m) for m in models or [] if isinstance(m, dict)]


@dataclass(frozen=True)
class RunningModel:
    """One entry of `GET /api/ps`."""

    name: str
    size: int = 0
    size_vram: int = 0
    digest: str = ""
    expires_at: dt.datetime | None = None
    context_length: int = 0
    details: ModelDetails = field(default_factory=ModelDetails)

    @property
    def on_gpu_fraction(self) -> float:
        return min(1.0, self.size_vram / self.size) if self.size else 0.0

    def seconds_left(self, now: dt.datetime | None = None) -> float | None:
        """Seconds until the idle timer unloads it; None = kept loaded forever (or unknown)."""
        if self.expires_at is None:
            return None
        now = now or dt.datetime.now(dt.UTC)
        left = self.expires_at - now
        if left > FOREVER_AFTER:
            return None
        return max(0.0, left.total_seconds())

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunningModel:
        return cls(
            name=_str(obj.get("name") or obj.get("model")),
            size=_int(obj.get("size")),
            size_vram=_int(obj.get("size_vram")),
            digest=_str(obj.get("digest")),
            expires_at=parse_time(obj.get("expires_at")),
            context_length=_int(obj.get("context_length")),
            details=ModelDetails.from_json(obj.get("details")),
        )


def parse_ps(body: Any) -> list[RunningModel]:
    models = body.get("models") if isinstance(body, dict) else None
    return [RunningModel.from_json(m) for m in models or [] if isinstance(m, dict)]


@dataclass(frozen=True)
class Device:
    """A GPU from `GET /api/pollama/devices`."""

    id: str
    name: str
    kind: str
    total_memory: int
    free_memory: int

    @property
    def used_memory(self) -> int:
        return max(0, self.total_memory - self.free_memory)


@dataclass(frozen=True)
class Devices:
    gpus: tuple[Device, ...] = ()
    system_total: int = 0
    system_free: int = 0

    @property
    def vram_total(self) -> int:
        return sum(d.total_memory for d in self.gpus)

    @classmethod
    def from_json(cls, body: Any) -> Devices:
        if not isinstance(body, dict):
            return cls()
        gpus = tuple(
            Device(
                id=str(d.get("id", "")),
                name=_str(d.get("name")) or "GPU",
                kind=_str(d.get("kind")),
                total_memory=_int(d.get("total_memory")),
                free_memory=_int(d.get("free_memory")),
            )
            for d in body.get("devices") or []
            if isinstance(d, dict)
        )
        mem = body.get("system_memory")
        if not isinstance(mem, dict):
            mem = {}
        return cls(gpus=gpus, system_total=_int(mem.get("total")), system_free=_int(mem.get("free")))


@dataclass(frozen=True)
class Estimate:
    """`POST /api/pollama/estimate`: will this model fit before it is loaded?"""

    model: str
    context_length: int
    weights: int
    kv_cache: int
    compute: int
    total: int
    device: str
    free_memory: int
    fits: bool
    #: False for a model read from its registry, not pulled; then `download_size` is what a pull fetches.
    local: bool = True
    download_size: int = 0

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Estimate:
        return cls(
            model=_str(body.get("model")),
            context_length=_int(body.get("context_length")),
            weights=_int(body.get("weights")),
            kv_cache=_int(body.get("kv_cache")),
            compute=_int(body.get("compute")),
            total=_int(body.get("total")),
            device=_str(body.get("device")) or "cpu",
            free_memory=_int(body.get("free_memory")),
            fits=bool(body.get("fits")),
            local=body.get("local") is not False,
            download_size=_int(body.get("download_size")),
        )


@dataclass(frozen=True)
class ShowInfo:
    """`POST /api/show`, the parts the details pane shows."""

    parameters: str = ""
    template: str = ""
    system: str = ""
    license: str = ""
    modelfile: str = ""
    capabilities: tuple[str, ...] = ()
    model_info: tuple[tuple[str, str], ...] = ()
    details: ModelDetails = field(default_factory=ModelDetails)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ShowInfo:
        info = body.get("model_info")
        if not isinstance(info, dict):
            info = {}
        caps = body.get("capabilities") or ()
        lic = body.get("license")
        return cls(
            parameters=_str(body.get("parameters")),
            template=_str(body.get("template")),
            system=_str(body.get("system")),
            license="\n".join(lic) if isinstance(lic, list) else _str(lic),
            modelfile=_str(body.get("modelfile")),
            capabilities=tuple(str(c) for c in caps) if isinstance(caps, list) else (),
            model_info=tuple(sorted((str(k), _show_value(v)) for k, v in info.items())),
            details=ModelDetails.from_json(body.get("details")),
        )


def _show_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value[:8])) + (", …]" if len(value) > 8 else "]")
    return str(value)
