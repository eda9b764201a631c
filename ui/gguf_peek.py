"""What a `.gguf` file on disk is, read from its header in a fraction of a second: architecture, size, quantization.

The import screen shows this for every file it finds before anything is
copied, and skips what is not a model to run on its own (a vision projector,
a LoRA adapter, a part of a split model, a file that is not GGUF). The
`gguf` package's `GGUFReader` parses every array into NumPy (a 262k-entry
vocabulary took 25 s here), so this reads the key-value section keeping
scalars and stepping over arrays by their lengths, then only the tensor
shapes (for the parameter count). Every length is checked against what the
file still holds before it is believed: a broken file is a `NotAModel` with
a reason, never a hang. Names of file types come from `gguf.constants`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gguf.constants import GGUFValueType, LlamaFileType

MAGIC = b"GGUF"
#: Longer keys or string values than this are not in any GGUF llama.cpp writes; a file claiming one is broken.
MAX_STRING = 16 * 1024 * 1024
_SCALARS: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class NotAModel(Exception):
    """The file is not a GGUF model that can be imported on its own; the message says why, in words."""


@dataclass(frozen=True)
class GgufSummary:
    architecture: str
    name: str  # general.name, "" when absent
    file_type: str  # "Q4_K_M", "F16" …, "" when the header does not say
    parameters: int  # counted from the tensor shapes
    split_count: int  # 1 for a single file
    split_index: int  # 0-based
    kind: str  # general.type: "model", "adapter", … ("model" when absent)

    @property
    def parameter_label(self) -> str:
        """`1.2B`, `135M` … as Ollama's `parameter_size` reads."""
        n = float(self.parameters)
        for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if n >= scale:
                return f"{n / scale:.1f}".rstrip("0").rstrip(".") + unit
        return str(self.parameters)


def file_type_name(value: int | None) -> str:
    if value is None:
        return ""
    try:
        name = LlamaFileType(value).name
    except ValueError:
        return f"type {value}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


class _Reader:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size

    def left(self) -> int:
        return self.size - self.f.tell()

    def take(self, n: int, what: str) -> bytes:
        if n > self.left():
            raise NotAModel(f"the file ends inside its header ({what})")
        return self.f.read(n)

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise NotAModel(f"the file ends inside its header ({what})")
        self.f.seek(n, 1)

    def u32(self, what: str) -> int:
        return int(_U32.unpack(self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(_U64.unpack(self.take(8, what))[0])

    def string(self, what: str) -> str:
        n = self.u64(what)
        if n > MAX_STRING:
            raise NotAModel(f"its header claims a {n}-byte string ({what})")
        return self.take(n, what).decode("utf-8", "replace")

    def value(self, vtype: int, key: str) -> object:
        if vtype == GGUFValueType.STRING:
            return self.string(key)
        if vtype == GGUFValueType.ARRAY:
            self.skip_array(key)
            return None
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise NotAModel(f"its header has a value of unknown type {vtype} ({key})")
        return fmt.unpack(self.take(fmt.size, key))[0]

    def skip_array(self, key: str) -> None:
        etype, count = self.u32(key), self.u64(key)
        if etype == GGUFValueType.STRING:
            if count * 8 > self.left():
                raise NotAModel(f"its header claims {count} strings in {key}")
            for _ in range(count):
                self.skip(self.u64(key), key)
            return
        if etype == GGUFValueType.ARRAY:
            for _ in range(min(count, self.left())):
                self.skip_array(key)
            return
        fmt = _SCALARS.get(etype)
        if fmt is None:
            raise NotAModel(f"its header has an array of unknown type {etype} ({key})")
        self.skip(count * fmt.size, key)


def peek(path: Path) -> GgufSummary:
    """The header of `path`; raises `NotAModel` (also for a file that cannot be read, saying why)."""
    try:
        with open(path, "rb", buffering=1 << 20) as f:
            return _parse(_Reader(f, path.stat().st_size))
    except OSError as exc:
        raise NotAModel(f"it cannot be read: {exc.strerror or exc}") from None


def _parse(r: _Reader) -> GgufSummary:
    if r.left() < 24 or r.take(4, "magic") != MAGIC:
        raise NotAModel("it is not a GGUF file")
    version = r.u32("version")
    if version not in (2, 3):
        raise NotAModel(f"it is GGUF version {version}, which llama.cpp does not read")
    n_tensors, n_kv = r.u64("tensor count"), r.u64("key count")
    if n_kv * 13 > r.left() or n_tensors * 28 > r.left():  # the smallest a key or tensor entry can be
        raise NotAModel("its header claims more entries than the file holds")
    kv: dict[str, object] = {}
    for _ in range(n_kv):
        key = r.string("a key")
        kv[key] = r.value(r.u32(key), key)
    parameters = 0
    for _ in range(n_tensors):
        name = r.string("a tensor name")
        dims = r.u32(name)
        if dims > 4:
            raise NotAModel(f"tensor {name} has {dims} dimensions")
        count = 1
        for _ in range(dims):
            count *= r.u64(name)
        r.skip(12, name)  # type (u32) and offset (u64)
        parameters += count
    arch = kv.get("general.architecture")
    file_type = kv.get("general.file_type")
    return GgufSummary(
        architecture=arch if isinstance(arch, str) else "",
        name=str(kv.get("general.name") or ""),
        file_type=file_type_name(file_type if isinstance(file_type, int) else None),
        parameters=parameters,
        split_count=max(1, _int(kv.get("split.count"), 1)),
        split_index=_int(kv.get("split.no"), 0),
        kind=str(kv.get("general.type") or "model"),
    )


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def why_not_importable(summary: GgufSummary) -> str:
    """ "" for a model to import on its own, else why not (shown beside the skipped file)."""
    if summary.kind == "adapter":
        return "a LoRA adapter, not a model on its own (use ADAPTER in a Modelfile)"
    if summary.architecture == "clip" or summary.kind == "mmproj":
        return "a vision projector, not a model on its own"
    if summary.split_count > 1:
        return (
            f"part {summary.split_index + 1} of a model split in {summary.split_count} files; "
            "merge it into one file first (llama-gguf-split --merge)"
        )
    if not summary.architecture:
        return "its header names no architecture"
    return ""
