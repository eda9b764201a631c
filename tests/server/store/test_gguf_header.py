"""The bounded GGUF header parser: real models read as `GGUFReader` reads them, hostile ones are
refused with a message naming the problem, in bounded memory, at create through a live server too."""

from __future__ import annotations

import gc
import hashlib
import struct
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import httpx
import pytest

from server.store import gguf_info
from server.store.gguf_header import FileSource, InvalidGGUF, Limits, read_header
from tests.fixtures.gguf_models import cached_model
from tests.support.live_server import LiveServer

# ---- a writer for headers no honest tool would write ----------------------------------

U8, U32, F32, STRING, ARRAY, U64 = 0, 4, 6, 8, 9, 10


def gstr(text: str | bytes, claimed: int | None = None) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data) if claimed is None else claimed) + data


@dataclass
class RawGGUF:
    """Writes exactly what it is told: counts, lengths and offsets may all lie."""

    version: int = 3
    kvs: list[bytes] = field(default_factory=list)
    infos: list[bytes] = field(default_factory=list)
    data: bytes = b""
    n_kv: int | None = None
    n_tensors: int | None = None
    magic: bytes = b"GGUF"
    version_bytes: bytes | None = None

    def kv(self, key: str, vtype: int, payload: bytes) -> RawGGUF:
        self.kvs.append(gstr(key) + struct.pack("<I", vtype) + payload)
        return self

    def kv_str(self, key: str, value: str) -> RawGGUF:
        return self.kv(key, STRING, gstr(value))

    def kv_u32(self, key: str, value: int) -> RawGGUF:
        return self.kv(key, U32, struct.pack("<I", value))

    def kv_array(self, key: str, itype: int, count: int, payload: bytes) -> RawGGUF:
        return self.kv(key, ARRAY, struct.pack("<IQ", itype, count) + payload)

    def tensor(self, name: str, shape: list[int], ggml_type: int = 0, offset: int = 0) -> RawGGUF:
        info = gstr(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        self.infos.append(info + struct.pack("<IQ", ggml_type, offset))
        return self

    def build(self) -> bytes:
        head = self.magic + (self.version_bytes or struct.pack("<I", self.version))
        head += struct.pack("<Q", len(self.infos) if self.n_tensors is None else self.n_tensors)
        head += struct.pack("<Q", len(self.kvs) if self.n_kv is None else self.n_kv)
        body = head + b"".join(self.kvs) + b"".join(self.infos)
        pad = (-len(body)) % 32
        return body + b"\0" * pad + self.data


def base() -> RawGGUF:
    return RawGGUF().kv_str("general.architecture", "llama")


def one_tensor(g: RawGGUF) -> RawGGUF:
    g.tensor("w", [8])
    g.data = b"\0" * 32
    return g


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], bytes]
    #: Fragments the message must contain: the key or tensor, the claim, what the file has.
    says: tuple[str, ...]


def _truncated_string_value() -> bytes:
    return base().kv("general.name", STRING, gstr(b"abc", claimed=1 << 63)).build()


CASES = [
    Case("string-2^63", _truncated_string_value, ("key 'general.name'", "claims 9223372036854775808 bytes", "left")),
    Case(
        "array-10^9",
        lambda: base().kv_array("tokenizer.ggml.scores", F32, 10**9, b"\0" * 16).build(),
        ("key 'tokenizer.ggml.scores'", "array of 1000000000 float32 values", "4000000000 bytes", "left"),
    ),
    Case(
        "string-array-10^9",
        lambda: base().kv_array("tokenizer.ggml.tokens", STRING, 10**9, gstr("a") * 3).build(),
        ("key 'tokenizer.ggml.tokens'", "array of 1000000000 string values", "left"),
    ),
    Case(
        "array-entry-2^63",
        lambda: base().kv_array("tokenizer.ggml.tokens", STRING, 6, gstr("a") * 5 + gstr(b"b", 1 << 63)).build(),
        ("entry 5 of key 'tokenizer.ggml.tokens'", "claims 9223372036854775808 bytes"),
    ),
    Case(
        "kv-count-10^8",
        lambda: RawGGUF(n_kv=10**8).kv_str("general.architecture", "llama").build(),
        ("claims 100000000 key-value pairs", "1300000000 bytes", "left"),
    ),
    Case(
        "tensor-count-10^9",
        lambda: RawGGUF(n_tensors=10**9).kv_str("general.architecture", "llama").build(),
        ("claims 1000000000 tensors", "24000000000 bytes", "left"),
    ),
    Case(
        "key-length-2^63",
        lambda: RawGGUF(kvs=[gstr(b"general.architecture", 1 << 63)]).build(),
        ("key #0", "9223372036854775808 bytes long", "65535"),
    ),
    Case(
        "five-dims",
        lambda: base().tensor("blk.0.attn_q.weight", [1, 1, 1, 1, 1]).build(),
        ("tensor 'blk.0.attn_q.weight' has 5 dimensions", "at most 4"),
    ),
    Case(
        "dims-overflow-int64",
        lambda: base().tensor("token_embd.weight", [1 << 32, 1 << 32]).build(),
        ("tensor 'token_embd.weight'", "18446744073709551616 elements"),
    ),
    Case(
        "dim-2^63",
        lambda: base().tensor("output.weight", [1 << 63]).build(),
        ("tensor 'output.weight' dimension 0 is 9223372036854775808",),
    ),
    Case(
        "unknown-value-type",
        lambda: base().kv("general.weird", 13, b"\0" * 8).build(),
        ("key 'general.weird' has unknown value type 13",),
    ),
    Case(
        "unknown-array-type",
        lambda: base().kv_array("general.weird", 77, 1, b"\0" * 8).build(),
        ("key 'general.weird'", "unknown value type 77"),
    ),
    Case(
        "array-of-arrays",
        lambda: base().kv_array("general.nested", ARRAY, 1, struct.pack("<IQ", U8, 1) + b"\0").build(),
        ("key 'general.nested' is an array of arrays",),
    ),
    Case(
        "unknown-tensor-type",
        lambda: base().tensor("w", [32], ggml_type=99).build(),
        ("tensor 'w' has unknown type 99",),
    ),
    Case(
        "row-not-whole-blocks",
        lambda: base().tensor("w", [33], ggml_type=2).build(),  # Q4_0 blocks hold 32
        ("tensor 'w' of type Q4_0 has 33 elements per row", "block size 32"),
    ),
    Case(
        "tensor-name-too-long",
        lambda: base().tensor("x" * 64, [8]).build(),
        ("tensor #0", "64 bytes long", "63"),
    ),
    Case(
        "duplicate-key",
        lambda: base().kv_str("general.architecture", "bert").build(),
        ("key 'general.architecture' appears twice",),
    ),
    Case(
        "duplicate-tensor",
        lambda: base().tensor("w", [8]).tensor("w", [8], offset=32).build(),
        ("tensor 'w' appears twice",),
    ),
    Case(
        "data-past-the-end",
        lambda: base().tensor("w", [1 << 20]).build(),
        ("tensor 'w' data ends at byte", "cut short"),
    ),
    Case(
        "data-out-of-place",
        lambda: RawGGUF(data=b"\0" * 96).kv_str("general.architecture", "llama").tensor("w", [8], offset=64).build(),
        ("tensor 'w' data is at offset 64", "expected 0"),
    ),
    Case(
        "alignment-not-power-of-two",
        lambda: base().kv_u32("general.alignment", 48).build(),
        ("general.alignment is 48, not a power of two",),
    ),
    Case(
        "alignment-wrong-type",
        lambda: base().kv_str("general.alignment", "32").build(),
        ("general.alignment is a string",),
    ),
    Case("version-1", lambda: RawGGUF(version=1).build(), ("GGUF version 1 is not supported",)),
    Case(
        "big-endian",
        lambda: RawGGUF(version_bytes=struct.pack(">I", 3)).build(),
        ("big-endian",),
    ),
    Case("bad-magic", lambda: RawGGUF(magic=b"GGML").build(), ("not a GGUF model file",)),
]


def parse_bytes(data: bytes, tmp_path: Path, **kwargs: Any) -> Any:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    with FileSource(path) as source:
        return read_header(source, name=path.name, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_header_is_refused_naming_the_problem(case: Case, tmp_path: Path) -> None:
    data = case.make()
    tracemalloc.start()
    try:
        with pytest.raises(InvalidGGUF) as raised:
            parse_bytes(data, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = raised.value.message
    assert message.startswith("model.gguf is not"), message
    for fragment in case.says:
        assert fragment in message, message
    # Whatever the claim, the parser held no more than the file (a few hundred bytes) and its bookkeeping.
    assert peak < 256 * 1024, peak


def test_the_sane_limits_hold_even_where_the_bytes_are_there(tmp_path: Path) -> None:
    """A claim the file backs is still refused past a limit, before any of it is stepped over."""
    small = Limits(max_kv=3, max_tensors=2, max_array_entries=100, max_kept_bytes=4096)
    kvs = base().kv_u32("a", 1).kv_u32("b", 2).kv_u32("c", 3)
    with pytest.raises(InvalidGGUF, match="claims 4 key-value pairs, more than the 3"):
        parse_bytes(kvs.build(), tmp_path, limits=small)
    tensors = base()
    for i in range(3):
        tensors.tensor(f"t{i}", [8], offset=32 * i)
    tensors.data = b"\0" * 96
    with pytest.raises(InvalidGGUF, match="claims 3 tensors, more than the 2"):
        parse_bytes(tensors.build(), tmp_path, limits=small)
    arrays = base().kv_array("x", U8, 60, b"\0" * 60).kv_array("y", U8, 60, b"\0" * 60)
    with pytest.raises(InvalidGGUF, match="key 'y' claims an array of 60 entries, which takes the arrays past the 100"):
        parse_bytes(arrays.build(), tmp_path, limits=small)
    big = base().kv_str("tokenizer.chat_template", "x" * 5000)
    with pytest.raises(InvalidGGUF, match="key 'tokenizer.chat_template' takes the header past 4096 bytes"):
        parse_bytes(big.build(), tmp_path, limits=small)
    # The default limits are what a file of this size passes with room to spare.
    assert parse_bytes(big.build(), tmp_path).kv["tokenizer.chat_template"] == "x" * 5000


def _sections(path: Path) -> dict[str, int]:
    """Where each part of a real header starts, by the `gguf` package's reader."""
    reader = gguf.GGUFReader(path)
    first_tensor = reader.tensors[0].field.offset
    out = {"magic": 0, "version": 4, "tensor count": 8, "kv count": 16}
    for key in ("general.architecture", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.chat_template"):
        fld = reader.fields[key]
        out[f"key {key}"] = fld.offset + 4
        out[f"value of {key}"] = fld.offset + sum(int(p.nbytes) for p in fld.parts[:3]) + 3
    tokens = reader.fields["tokenizer.ggml.tokens"]
    out["entries of tokenizer.ggml.tokens"] = tokens.offset + sum(int(p.nbytes) for p in tokens.parts[:5]) + 500
    out["first tensor info"] = first_tensor + 5
    out["last tensor info"] = reader.tensors[-1].field.offset + 10
    out["tensor data"] = reader.data_offset + 100
    out["last tensor's data"] = path.stat().st_size - 1
    return out


def test_a_real_model_cut_short_anywhere_is_refused(tmp_path: Path, tiny_model_path: Path) -> None:
    data = tiny_model_path.read_bytes()
    for section, cut in _sections(tiny_model_path).items():
        with pytest.raises(InvalidGGUF) as raised:
            parse_bytes(data[:cut], tmp_path)
        message = raised.value.message
        assert "model.gguf is not" in message, (section, message)
        assert "left" in message or "cut short" in message or "wrong magic" in message, (section, message)


# ---- real models read as before ----------------------------------------------------------


def _reader_info(path: Path, verbose: bool) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """What `read_gguf` returned when it was built on `gguf.GGUFReader` (the reference)."""
    reader = gguf.GGUFReader(path, "r")
    kv: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if fld.types and fld.types[0] == gguf.GGUFValueType.ARRAY and len(fld.data) > 5 and not verbose:
            kv[key] = []
            continue
        value = fld.contents()
        kv[key] = [v.item() if hasattr(v, "item") else v for v in value] if isinstance(value, list) else value
    tensors = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape]} for t in reader.tensors]
    return kv, tensors, sum(int(t.n_elements) for t in reader.tensors)


MODELS: dict[str, Callable[[], Path]] = {
    "llama-tiny": lambda: cached_model("tiny"),
    "llama-small-f16": lambda: cached_model("small"),
    "bert": lambda: cached_model("tiny", kind="bert"),
    "clip-projector": lambda: cached_model("tiny", kind="clip"),
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("verbose", [False, True])
def test_real_models_read_as_gguf_reader_read_them(model: str, verbose: bool) -> None:
    path = MODELS[model]()
    kv, tensors, counted = _reader_info(path, verbose)
    info = gguf_info.read_gguf(path, verbose=verbose)
    assert list(info.kv) == list(kv)
    assert info.kv == kv
    assert info.tensors == tensors
    params = kv.get("general.parameter_count")
    assert info.parameter_count == (params if isinstance(params, int) else counted)
    assert info.file_type == gguf_info.file_type_name(kv.get("general.file_type"))
    assert info.architecture == kv["general.architecture"]


def test_the_header_says_where_every_tensor_is(tiny_model_path: Path) -> None:
    reader = gguf.GGUFReader(tiny_model_path)
    with FileSource(tiny_model_path) as source:
        header = read_header(source)
    assert header.data_offset == reader.data_offset
    assert [(t.name, t.offset, t.n_bytes, t.n_elements) for t in header.tensors] == [
        (t.name, t.data_offset, t.n_bytes, t.n_elements) for t in reader.tensors
    ]
    assert header.array_lengths["tokenizer.ggml.tokens"] == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert header.kv["tokenizer.ggml.tokens"] == []


def test_reading_keeps_no_memory_afterwards(small_model_path: Path) -> None:
    """Verbose reads (whole vocabularies) are not cached: their memory goes with the result."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(5):
            info = gguf_info.read_gguf(small_model_path, verbose=True)
            assert len(info.kv["tokenizer.ggml.tokens"]) == 4096
            del info
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before > 100_000  # the vocabulary was really read...
    assert after - before < 64 * 1024, after - before  # ...and let go


def test_a_ranged_source_reads_only_what_it_is_asked(tiny_model_path: Path) -> None:
    """The parser asks for the header only, in bounded reads: what a ranged HTTP reader needs."""
    data = tiny_model_path.read_bytes()
    reads: list[tuple[int, int]] = []

    class Ranged:
        size = len(data)

        def read_at(self, offset: int, n: int) -> bytes:
            reads.append((offset, n))
            return data[offset : offset + n]

    header = read_header(Ranged(), chunk=4096)
    assert max(n for _, n in reads) <= 4096
    assert max(offset + n for offset, n in reads) <= header.data_offset + 4096
    assert header.kv["general.architecture"] == "llama"


# ---- at create, through a live server --------------------------------------------------


def upload(server: LiveServer, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = httpx.post(f"{server.url}/api/blobs/{digest}", content=data)
    assert r.status_code in (200, 201), r.text
    return digest


LIVE = ["string-2^63", "array-10^9", "kv-count-10^8", "tensor-count-10^9", "five-dims", "unknown-value-type"]


def test_create_refuses_hostile_ggufs_with_a_clear_400(live_server: LiveServer, tiny_model_path: Path) -> None:
    by_id = {c.id: c for c in CASES}
    for case_id in LIVE:
        case = by_id[case_id]
        digest = upload(live_server, case.make())
        r = httpx.post(
            f"{live_server.url}/api/create",
            json={"model": "hostile", "files": {"model.gguf": digest}, "stream": False},
            timeout=30,
        )
        assert r.status_code == 400, (case_id, r.text)
        error = r.json()["error"]
        assert error.startswith("model.gguf is not a valid GGUF file: "), error
        for fragment in case.says:
            assert fragment in error, (case_id, error)
    cut = tiny_model_path.read_bytes()
    reader_offsets = _sections(tiny_model_path)
    digest = upload(live_server, cut[: reader_offsets["value of tokenizer.ggml.tokens"] + 2000])
    r = httpx.post(
        f"{live_server.url}/api/create", json={"model": "hostile", "files": {"model.gguf": digest}, "stream": False}
    )
    assert r.status_code == 400 and "tokenizer.ggml.tokens" in r.json()["error"], r.text
    # The server is up, nothing was created, and a good model still goes in.
    assert httpx.get(f"{live_server.url}/api/tags").json() == {"models": []}
    good = upload(live_server, tiny_model_path.read_bytes())
    r = httpx.post(
        f"{live_server.url}/api/create", json={"model": "good", "files": {"model.gguf": good}, "stream": False}
    )
    assert r.status_code == 200, r.text
    assert live_server.proc is not None and live_server.proc.poll() is None
