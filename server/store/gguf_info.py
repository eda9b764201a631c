"""What `show`, `tags`, capabilities and the memory estimate need from a GGUF file.

Read with the `gguf` package's reader (memory-mapped, so a 40 GB file costs
nothing to open); results are cached per file identity since blobs never
change. A file that is not GGUF, or is cut short, raises `InvalidGGUF` with a
message a person can act on, before anything is stored.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from server.errors import BadRequest

GGUF_MAGIC = b"GGUF"


class InvalidGGUF(BadRequest):
    pass


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    parameter_count: int
    file_type: str
    general_type: str
    kv: dict[str, Any]
    tensors: list[dict[str, Any]] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.kv.get(key, default)

    def arch_value(self, suffix: str, default: Any = None) -> Any:
        return self.kv.get(f"{self.architecture}.{suffix}", default)

    @property
    def context_length(self) -> int | None:
        return self.arch_value("context_length")

    @property
    def embedding_length(self) -> int | None:
        return self.arch_value("embedding_length")

    @property
    def chat_template(self) -> str | None:
        value = self.kv.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def is_embedding(self) -> bool:
        return f"{self.architecture}.pooling_type" in self.kv

    @property
    def is_projector(self) -> bool:
        return self.general_type == "projector" or self.architecture == "clip" or "clip.has_vision_encoder" in self.kv

    @property
    def is_adapter(self) -> bool:
        return self.general_type == "adapter"

    def kv_cache_bytes(self, num_ctx: int, bytes_per_value: float = 2.0) -> int:
        """f16 KV cache for `num_ctx` tokens: 2 × layers × kv_heads × head_dim × ctx × bytes."""
        layers = int(self.arch_value("block_count", 0) or 0)
        heads = self.arch_value("attention.head_count", 1) or 1
        heads = max(heads) if isinstance(heads, list) else int(heads)
        kv_heads = self.arch_value("attention.head_count_kv", heads) or heads
        kv_heads = max(kv_heads) if isinstance(kv_heads, list) else int(kv_heads)
        embd = int(self.embedding_length or 0)
        key_len = int(self.arch_value("attention.key_length", embd // max(heads, 1)) or 0)
        value_len = int(self.arch_value("attention.value_length", key_len) or 0)
        return int(layers * kv_heads * (key_len + value_len) * num_ctx * bytes_per_value)


def file_type_name(value: int | None) -> str:
    if value is None:
        return "unknown"
    try:
        name = gguf.LlamaFileType(value).name
    except ValueError:
        return "unknown"
    return name.replace("MOSTLY_", "").replace("ALL_", "")


def check_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf(path: Path, *, verbose: bool = False) -> GGUFInfo:
    """Read a GGUF file's metadata; raises InvalidGGUF for anything else."""
    st = os.stat(path)
    return _read_cached(str(path), st.st_size, st.st_mtime_ns, verbose)


@functools.lru_cache(maxsize=256)
def _read_cached(path: str, size: int, mtime_ns: int, verbose: bool) -> GGUFInfo:
    if size < 4 or not check_magic(Path(path)):
        raise InvalidGGUF(f"{Path(path).name} is not a GGUF model file (wrong magic bytes)")
    try:
        reader = gguf.GGUFReader(path, "r")
        kv: dict[str, Any] = {}
        for key, fld in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            is_array = bool(fld.types) and fld.types[0] == gguf.GGUFValueType.ARRAY
            if is_array and len(fld.data) > 5 and not verbose:
                kv[key] = []
                continue
            kv[key] = _plain(fld.contents())
        tensors = [
            {"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape]} for t in reader.tensors
        ]
        counted = sum(int(t.n_elements) for t in reader.tensors)
        # Touch the end of the data region: a truncated file fails here, not at load.
        if reader.tensors:
            last = max(reader.tensors, key=lambda t: int(t.data_offset) + int(t.n_bytes))
            if int(last.data_offset) + int(last.n_bytes) > size:
                raise ValueError("tensor data extends past the end of the file")
    except InvalidGGUF:
        raise
    except Exception as exc:  # the reader raises many kinds on a damaged file
        raise InvalidGGUF(f"{Path(path).name} is not a valid GGUF file: {exc}") from None
    arch = str(kv.get("general.architecture", "unknown"))
    params = kv.get("general.parameter_count")
    return GGUFInfo(
        architecture=arch,
        parameter_count=int(params) if isinstance(params, (int, float)) else counted,
        file_type=file_type_name(kv.get("general.file_type")),
        general_type=str(kv.get("general.type", "model")),
        kv=kv,
        tensors=tensors,
    )


def _plain(value: Any) -> Any:
    """numpy scalars and arrays → JSON-friendly Python values."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def human_parameter_count(n: int) -> str:
    """`model_type` as Ollama formats it: 8B, 3.2B, 137M, 22.57M, 500K."""
    if n >= 1_000_000_000:
        return _human(n / 1e9, 1) + "B"
    if n >= 1_000_000:
        return _human(n / 1e6, 2) + "M"
    if n >= 1_000:
        return f"{n // 1000}K"
    return str(n)


def _human(value: float, decimals: int) -> str:
    if value == int(value):
        return str(int(value))
    return f"{value:.{decimals}f}"
