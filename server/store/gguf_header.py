"""A GGUF header parser that believes no length or count until the bytes behind it are there.

A GGUF file starts with counts (key-value pairs, tensors) and then length-prefixed strings
and arrays, all chosen by whoever wrote the file. A reader that trusts them (the `gguf`
package's `GGUFReader`) allocates, loops or indexes by them: a file of a few hundred bytes
that claims a string of 2^63 bytes or an array of 10^9 entries makes it fail with messages
like "index 0 is out of bounds", or run for as long as the claim says. This parser reads the
header in one pass, front to back, and checks every length and count against the bytes the
file still has and against the limits in `Limits` (each says why it is where it is), before
it reads or allocates anything. A breach raises `InvalidGGUF` naming the key or tensor, what
it claimed and how much the file has. Large arrays (a tokenizer's vocabulary) are skipped
over by their size unless asked for. Time and memory are bounded by `Limits`, whatever the
file says, and nothing is kept once the result is dropped.

The checks are those llama.cpp's loader makes (`ggml/src/gguf.cpp`, `gguf_init_from_file_impl`:
version, duplicate keys and tensor names, name length, at most 4 dimensions, element count
representable in int64, known tensor type, rows a multiple of the block size, tensors packed
in order at the alignment), so a file refused here is one llama.cpp would refuse at load, and
one accepted here has all its tensor data inside the file.

I/O goes through `ByteSource`, which only reads n bytes at an offset: a file here, and a
ranged HTTP reader can use the same parser to look at a model before downloading it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from server.errors import BadRequest

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
#: GGML_MAX_DIMS in ggml.h.
MAX_DIMS = 4
_INT64_MAX = (1 << 63) - 1


class InvalidGGUF(BadRequest):
    """A file that is not a GGUF model llama.cpp could load; the message says what is wrong.

    Built by `about`, it keeps the file's name apart from what is wrong with it, so a caller
    that knows the file by another name (a blob the request calls `model.gguf`) can say that.
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    @classmethod
    def about(cls, file: str, detail: str) -> InvalidGGUF:
        return cls(f"{file} {detail}", detail=detail)

    def renamed(self, file: str) -> InvalidGGUF:
        return InvalidGGUF.about(file, self.detail) if self.detail else self


Scalar = int | float | bool | str
Value = Scalar | list[Scalar]


class ByteSource(Protocol):
    """Where the header comes from: a size, and reads of `n` bytes at an offset."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes from `offset`; fewer only at the end of the source."""
        ...


class FileSource:
    """A local file as a `ByteSource`; use it as a context manager so the file is closed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = open(path, "rb")  # closed by close() or __exit__
        self._size = os.fstat(self._file.fileno()).st_size

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, n: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(n)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Limits:
    """Bounds on what a header may make the parser do. Real models sit far below each one;
    a file past one is damaged or hostile, and is refused before the work or memory is spent."""

    #: Key-value pairs. Models carry 20 to 60; 65,536 is a thousand times that.
    max_kv: int = 1 << 16
    #: Tensors. A 671B MoE model has about 1,100 (llama.cpp merges experts); stored one tensor
    #: per expert, as some old conversions were, about 45,000. 262,144 leaves room above both.
    max_tensors: int = 1 << 18
    #: Key length: the GGUF specification's own limit.
    max_key_bytes: int = (1 << 16) - 1
    #: Tensor name length: llama.cpp refuses names of GGML_MAX_NAME (64) bytes or more.
    max_tensor_name_bytes: int = 63
    #: Entries over all arrays together, each of which may have to be stepped over one by one
    #: (strings). A model's arrays (tokens, scores, token types, merges) add up to about 1.3
    #: million for the largest vocabularies (~262,000 tokens); 8 million is six times that and
    #: takes a few seconds at most to step over.
    max_array_entries: int = 1 << 23
    #: Memory for everything kept (keys, values, tensor infos), counted as approximate Python
    #: object sizes. The header of a model with its whole vocabulary (verbose) takes ~50 MB
    #: as Python objects; without it, a few MB.
    max_kept_bytes: int = 256 << 20
    #: Arrays of at most this many entries are always kept (per-layer head counts and the
    #: like); longer ones (vocabularies) only when asked, and otherwise appear as [].
    keep_array: int = 5


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class TensorInfo:
    name: str
    #: ggml type name (`F32`, `Q4_K`...), as `gguf.GGMLQuantizationType` names it.
    type: str
    #: ggml's `ne`: the innermost dimension first, as the file stores it.
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int
    #: Absolute offset of the tensor's data in the file.
    offset: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    alignment: int
    #: Offset of the data section (the first tensor's data).
    data_offset: int
    #: Metadata in file order; arrays that were skipped are [] (their lengths are in `array_lengths`).
    kv: dict[str, Value] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensors: tuple[TensorInfo, ...] = ()

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)


# GGUF value types (`gguf_type` in gguf.h).
_STRING = 8
_ARRAY = 9
_FIXED: dict[int, struct.Struct] = {
    0: struct.Struct("<B"),  # uint8
    1: struct.Struct("<b"),  # int8
    2: struct.Struct("<H"),  # uint16
    3: struct.Struct("<h"),  # int16
    4: struct.Struct("<I"),  # uint32
    5: struct.Struct("<i"),  # int32
    6: struct.Struct("<f"),  # float32
    7: struct.Struct("<?"),  # bool
    10: struct.Struct("<Q"),  # uint64
    11: struct.Struct("<q"),  # int64
    12: struct.Struct("<d"),  # float64
}
_TYPE_NAMES = {
    0: "uint8",
    1: "int8",
    2: "uint16",
    3: "int16",
    4: "uint32",
    5: "int32",
    6: "float32",
    7: "bool",
    8: "string",
    9: "array",
    10: "uint64",
    11: "int64",
    12: "float64",
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_UINT32_TYPE = 4
#: The fewest bytes a key-value pair takes (key length, type, a one-byte value) and a tensor
#: info takes (name length, dimension count, type, offset): what a count is checked against.
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8
#: Rough sizes of kept Python objects, for `Limits.max_kept_bytes`.
_STR_OVERHEAD = 64
_NUMBER_SIZE = 32
_TENSOR_OVERHEAD = 256
_DEFAULT_CHUNK = 1 << 20


def read_header(
    source: ByteSource,
    *,
    name: str = "file",
    arrays: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    chunk: int = _DEFAULT_CHUNK,
) -> GGUFHeader:
    """Parse the header of `source`; raises InvalidGGUF (naming `name`) for anything llama.cpp
    would not load or any claim the source cannot back.

    `arrays`: keep every array (`show` with verbose); otherwise arrays longer than
    `limits.keep_array` are stepped over. `chunk`: how much is read at a time.
    """
    return _Parser(source, name, arrays, limits, chunk).parse()


def read_file_header(
    path: str | os.PathLike[str], *, arrays: bool = False, limits: Limits = DEFAULT_LIMITS
) -> GGUFHeader:
    with FileSource(path) as source:
        return read_header(source, name=Path(path).name, arrays=arrays, limits=limits)


class _Parser:
    def __init__(self, source: ByteSource, name: str, arrays: bool, limits: Limits, chunk: int) -> None:
        self.source = source
        self.name = name
        self.arrays = arrays
        self.limits = limits
        self.chunk = max(chunk, 64)
        self.size = source.size
        self.pos = 0
        self.buf = b""
        self.buf_at = 0
        self.kept = 0
        self.array_entries = 0
        self.tensor_names: set[str] = set()

    # ---- reading ---------------------------------------------------------------------

    def fail(self, problem: str) -> InvalidGGUF:
        return InvalidGGUF.about(self.name, f"is not a valid GGUF file: {problem}")

    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(
                f"{what} needs {n} bytes at offset {self.pos}, but the file has only "
                f"{max(self.size - self.pos, 0)} left (is it cut short?)"
            )

    def ensure(self, n: int, what: str) -> int:
        """Make the next `n` bytes available in `self.buf`; returns where they start in it."""
        start = self.pos - self.buf_at
        if start >= 0 and start + n <= len(self.buf):
            return start
        self.need(n, what)
        want = min(max(n, self.chunk), self.size - self.pos)
        self.buf = b""  # let the old chunk go before the new one is read
        self.buf = self.source.read_at(self.pos, want)
        self.buf_at = self.pos
        if len(self.buf) < n:
            raise self.fail(f"the file ended at byte {self.pos + len(self.buf)} while reading {what}; did it change?")
        return 0

    def fixed(self, st: struct.Struct, what: str) -> int | float | bool:
        start = self.ensure(st.size, what)
        self.pos += st.size
        value: int | float | bool = st.unpack_from(self.buf, start)[0]
        return value

    def u32(self, what: str) -> int:
        return int(self.fixed(_U32, what))

    def u64(self, what: str) -> int:
        return int(self.fixed(_U64, what))

    def take(self, n: int, what: str) -> bytes:
        start = self.ensure(n, what)
        self.pos += n
        return self.buf[start : start + n]

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def keep(self, n: int, what: str) -> None:
        self.kept += n
        if self.kept > self.limits.max_kept_bytes:
            raise self.fail(f"{what} takes the header past {self.limits.max_kept_bytes} bytes of metadata")

    def string(self, what: str, max_bytes: int | None = None) -> str:
        n = self.u64(f"the length of {what}")
        if max_bytes is not None and n > max_bytes:
            raise self.fail(f"{what} is {n} bytes long, more than the {max_bytes} allowed")
        if n > self.remaining():
            raise self.fail(f"{what} claims {n} bytes, but the file has only {self.remaining()} left")
        self.keep(n + _STR_OVERHEAD, what)
        return self.take(n, what).decode("utf-8", errors="replace")

    # ---- the header ------------------------------------------------------------------

    def parse(self) -> GGUFHeader:
        if self.size < 4 or self.take(4, "the magic") != MAGIC:
            raise InvalidGGUF.about(self.name, "is not a GGUF model file (wrong magic bytes)")
        version = self.u32("the version")
        if version & 0xFFFF == 0 and version != 0:
            raise self.fail(f"version field {version:#x}: a big-endian GGUF, which llama.cpp cannot load here")
        if version not in (2, 3):
            raise self.fail(f"GGUF version {version} is not supported (llama.cpp reads versions 2 and 3)")
        n_tensors = self.u64("the tensor count")
        n_kv = self.u64("the key-value count")
        self.check_count(n_kv, self.limits.max_kv, _MIN_KV_BYTES, "key-value pairs", self.remaining())
        self.check_count(
            n_tensors, self.limits.max_tensors, _MIN_TENSOR_BYTES, "tensors", self.remaining() - n_kv * _MIN_KV_BYTES
        )
        kv: dict[str, Value] = {}
        lengths: dict[str, int] = {}
        alignment = DEFAULT_ALIGNMENT
        for i in range(n_kv):
            key = self.string(f"key #{i}", self.limits.max_key_bytes)
            if key in kv:
                raise self.fail(f"key '{key}' appears twice")
            vtype = self.u32(f"the type of key '{key}'")
            if vtype == _ARRAY:
                kv[key], lengths[key] = self.array(key)
            else:
                kv[key] = self.scalar(vtype, key)
            if key == "general.alignment":
                alignment = self.alignment(vtype, kv[key])
        tensors = [self.tensor_info(i) for i in range(n_tensors)]
        data_offset = _pad(self.pos, alignment)
        placed = self.place(tensors, data_offset, alignment)
        return GGUFHeader(
            version=version,
            alignment=alignment,
            data_offset=data_offset,
            kv=kv,
            array_lengths=lengths,
            tensors=tuple(placed),
        )

    def check_count(self, count: int, limit: int, min_bytes: int, what: str, room: int) -> None:
        if count * min_bytes > room:
            raise self.fail(
                f"the header claims {count} {what}, which take at least {count * min_bytes} bytes, "
                f"but the file has only {max(room, 0)} left"
            )
        if count > limit:
            raise self.fail(f"the header claims {count} {what}, more than the {limit} any model file has")

    def scalar(self, vtype: int, key: str) -> Scalar:
        if vtype == _STRING:
            return self.string(f"the value of key '{key}'")
        st = _FIXED.get(vtype)
        if st is None:
            raise self.fail(f"key '{key}' has unknown value type {vtype}")
        self.keep(_NUMBER_SIZE, f"key '{key}'")
        return self.fixed(st, f"the value of key '{key}'")

    def array(self, key: str) -> tuple[list[Scalar], int]:
        itype = self.u32(f"the element type of key '{key}'")
        count = self.u64(f"the length of key '{key}'")
        if itype == _ARRAY:
            raise self.fail(f"key '{key}' is an array of arrays, which llama.cpp does not load")
        st = _FIXED.get(itype)
        if st is None and itype != _STRING:
            raise self.fail(f"key '{key}' is an array of unknown value type {itype}")
        per_entry = st.size if st is not None else 8
        if count * per_entry > self.remaining():
            raise self.fail(
                f"key '{key}' claims an array of {count} {_TYPE_NAMES[itype]} values, which take at least "
                f"{count * per_entry} bytes, but the file has only {self.remaining()} left"
            )
        self.array_entries += count
        if self.array_entries > self.limits.max_array_entries:
            raise self.fail(
                f"key '{key}' claims an array of {count} entries, which takes the arrays past the "
                f"{self.limits.max_array_entries} entries any model has"
            )
        if not self.arrays and count > self.limits.keep_array:
            if st is not None:
                self.skip(count * st.size, f"the values of key '{key}'")
            else:
                self.skip_strings(count, key)
            return [], count
        if st is not None:
            self.keep(count * (_NUMBER_SIZE + 8), f"key '{key}'")
            packed = struct.Struct(f"<{count}{st.format[1:]}")
            values: list[Scalar] = list(packed.unpack(self.take(packed.size, f"the values of key '{key}'")))
            return values, count
        return [self.string(f"entry {j} of key '{key}'") for j in range(count)], count

    def skip_strings(self, count: int, key: str) -> None:
        """Step over `count` length-prefixed strings without keeping them."""
        what = f"an entry of key '{key}'"
        for j in range(count):
            start = self.ensure(8, what)
            n = _U64.unpack_from(self.buf, start)[0]
            self.pos += 8
            if n > self.size - self.pos:
                raise self.fail(
                    f"entry {j} of key '{key}' claims {n} bytes, but the file has only {self.size - self.pos} left"
                )
            self.pos += n

    def alignment(self, vtype: int, value: Value) -> int:
        if vtype != _UINT32_TYPE or not isinstance(value, int):
            raise self.fail(f"general.alignment is a {_TYPE_NAMES.get(vtype, vtype)}, not a uint32")
        if value == 0 or value & (value - 1):
            raise self.fail(f"general.alignment is {value}, not a power of two")
        return value

    def tensor_info(self, i: int) -> TensorInfo:
        name = self.string(f"the name of tensor #{i}", self.limits.max_tensor_name_bytes)
        if name in self.tensor_names:
            raise self.fail(f"tensor '{name}' appears twice")
        self.tensor_names.add(name)
        n_dims = self.u32(f"the dimension count of tensor '{name}'")
        if n_dims > MAX_DIMS:
            raise self.fail(f"tensor '{name}' has {n_dims} dimensions; ggml tensors have at most {MAX_DIMS}")
        shape = tuple(self.u64(f"dimension {j} of tensor '{name}'") for j in range(n_dims))
        n_elements = 1
        for j, dim in enumerate(shape):
            if dim > _INT64_MAX:
                raise self.fail(f"tensor '{name}' dimension {j} is {dim}, more than 2^63 - 1")
            n_elements *= dim
        if n_elements >= _INT64_MAX:
            raise self.fail(f"tensor '{name}' has shape {list(shape)}: {n_elements} elements is more than int64 holds")
        raw_type = self.u32(f"the type of tensor '{name}'")
        try:
            ggml_type = GGMLQuantizationType(raw_type)
            block, type_size = GGML_QUANT_SIZES[ggml_type]
        except (ValueError, KeyError):
            raise self.fail(f"tensor '{name}' has unknown type {raw_type}") from None
        row = shape[0] if shape else 1
        if row % block:
            raise self.fail(
                f"tensor '{name}' of type {ggml_type.name} has {row} elements per row, "
                f"not a multiple of its block size {block}"
            )
        offset = self.u64(f"the data offset of tensor '{name}'")
        self.keep(_TENSOR_OVERHEAD + len(name), f"tensor '{name}'")
        return TensorInfo(
            name=name,
            type=ggml_type.name,
            shape=shape,
            n_elements=n_elements,
            n_bytes=n_elements * type_size // block,
            offset=offset,  # relative to the data section until `place`
        )

    def place(self, tensors: list[TensorInfo], data_offset: int, alignment: int) -> list[TensorInfo]:
        """Check each tensor's data sits where llama.cpp expects it and inside the file;
        returns them with absolute offsets."""
        expected = 0
        out: list[TensorInfo] = []
        for t in tensors:
            if t.offset != expected:
                raise self.fail(
                    f"tensor '{t.name}' data is at offset {t.offset} of the data section, expected {expected} "
                    f"(tensors are packed in order, each aligned to {alignment} bytes)"
                )
            start = data_offset + t.offset
            end = start + t.n_bytes
            if end > self.size:
                raise self.fail(
                    f"tensor '{t.name}' data ends at byte {end}, but the file has only {self.size} bytes "
                    "(cut short, as by an interrupted download?)"
                )
            expected += _pad(t.n_bytes, alignment)
            out.append(TensorInfo(t.name, t.type, t.shape, t.n_elements, t.n_bytes, start))
        return out


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment
