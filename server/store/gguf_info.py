"""What `show`, `tags`, capabilities and the memory estimate need from a GGUF file.

Read with the bounded header parser (`server.store.gguf_header`), which reads
only the header, so a 40 GB file costs what its metadata does, and which trusts
no length or count in it. Results without the long arrays are cached per file
identity since blobs never change; verbose ones (whole vocabularies) are not,
so their memory goes when the caller is done. A file that is not GGUF, is cut
short or claims more than it holds raises `InvalidGGUF` with a message a person
can act on, before anything is stored.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from server.store.gguf_header import MAGIC as GGUF_MAGIC
from server.store.gguf_header import GGUFHeader, InvalidGGUF, read_file_header

__all__ = ["GGUF_MAGIC", "GGUFInfo", "InvalidGGUF", "check_magic", "human_parameter_count", "read_gguf"]


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
    def is_reranker(self) -> bool:
        """A cross-encoder: llama.cpp's rank pooling (`LLAMA_POOLING_TYPE_RANK`, 4) puts a
        classification head on the pooled state, one relevance score per sequence."""
        return self.arch_value("pooling_type") == RANK_POOLING

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


RANK_POOLING = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK, as GGUF's `<arch>.pooling_type` stores it


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
    """Read a GGUF file's metadata; raises InvalidGGUF for anything else.

    `verbose` keeps every array (the whole vocabulary, for `show` with verbose);
    otherwise arrays of more than five entries are [] as in Ollama's `show`.
    """
    if verbose:
        return _read(path, arrays=True)
    st = os.stat(path)
    return _read_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _read_cached(path: str, size: int, mtime_ns: int) -> GGUFInfo:
    return _read(Path(path), arrays=False)


def _read(path: Path, *, arrays: bool) -> GGUFInfo:
    try:
        header = read_file_header(path, arrays=arrays)
    except OSError as exc:
        raise InvalidGGUF.about(path.name, f"could not be read: {exc.strerror or exc}") from None
    return info_from_header(header)


def info_from_header(header: GGUFHeader) -> GGUFInfo:
    kv = dict(header.kv)
    arch = str(kv.get("general.architecture", "unknown"))
    params = kv.get("general.parameter_count")
    file_type = kv.get("general.file_type")
    return GGUFInfo(
        architecture=arch,
        parameter_count=int(params) if isinstance(params, (int, float)) else header.parameter_count,
        file_type=file_type_name(file_type if isinstance(file_type, int) else None),
        general_type=str(kv.get("general.type", "model")),
        kv=kv,
        tensors=[{"name": t.name, "type": t.type, "shape": list(t.shape)} for t in header.tensors],
    )


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
