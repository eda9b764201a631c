"""`/api/create` `quantize`: re-encode a model blob with llama.cpp's `llama_model_quantize`.

The work runs in a child process (`python -m server.store.quantize`), never in
the server: it takes minutes on a real model, and a llama.cpp abort must cost
one create, not the server. The child writes into a temp file in the blobs
folder (`.tmp-*`, which start-up removes and pruning skips); the parent checks
the output is a whole GGUF of the wanted type, hashes it and only then
publishes it under its digest, so a failure leaves no blob behind.
Before the child starts, the output's size is estimated from the source's
tensors (`expected_size`) and checked against the disk's free space, so a
quantize that cannot fit is refused at once instead of filling the disk.

The server process never imports `llama_cpp` for this: type names map to
llama.cpp's `LLAMA_FTYPE_*` constants by name, resolved in the child.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from server.child_env import child_env
from server.errors import BadRequest, PollamaError, StorageError
from server.store.blobs import BlobStore, storage_error
from server.store.diskspace import disk_space, require
from server.store.gguf_header import read_file_header
from server.store.gguf_info import GGUFInfo, InvalidGGUF, read_gguf

#: Accepted `quantize` values (upper-cased) → the llama_cpp constant that names the type.
QUANT_TYPES: dict[str, str] = {
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K",
    "Q3_K_S": "LLAMA_FTYPE_MOSTLY_Q3_K_S",
    "Q3_K_M": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "Q3_K_L": "LLAMA_FTYPE_MOSTLY_Q3_K_L",
    "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q5_K_S": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
    "F32": "LLAMA_FTYPE_ALL_F32",
}
#: Short names llama-quantize and Ollama also take.
ALIASES: dict[str, str] = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
#: Source file types llama.cpp can quantize without re-quantizing (which loses quality).
SOURCE_TYPES = ("F16", "BF16", "F32")
SOURCE_ERROR = "quantization is only supported for F16, BF16 and F32 models"
#: Ollama's progress digest for the quantize bar (clients key bars by digest).
PROGRESS_DIGEST = "0000000000000000000"

log = logging.getLogger(__name__)

Progress = dict[str, Any]
_READ_CHUNK = 4 * 1024 * 1024
_STDERR_LINES = 20
#: Free space under which a failed write is put down to a full disk.
_FULL_BELOW = 1024 * 1024


#: Per target: the type most of its weights get, and the larger one its mix gives some of them (`_MIXED`),
#: after llama.cpp's `llama_tensor_get_type` (src/llama-quant.cpp). `expected_size` counts every tensor a mix may
#: raise at the larger type, an upper bound rather than the exact mix.
_TARGET_TYPES: dict[str, tuple[str, str]] = {
    "Q4_0": ("Q4_0", "Q4_0"),
    "Q4_1": ("Q4_1", "Q4_1"),
    "Q5_0": ("Q5_0", "Q5_0"),
    "Q5_1": ("Q5_1", "Q5_1"),
    "Q8_0": ("Q8_0", "Q8_0"),
    "Q2_K": ("Q2_K", "Q4_K"),
    "Q3_K_S": ("Q3_K", "Q3_K"),
    "Q3_K_M": ("Q3_K", "Q5_K"),
    "Q3_K_L": ("Q3_K", "Q5_K"),
    "Q4_K_S": ("Q4_K", "Q5_K"),
    "Q4_K_M": ("Q4_K", "Q6_K"),
    "Q5_K_S": ("Q5_K", "Q6_K"),
    "Q5_K_M": ("Q5_K", "Q6_K"),
    "Q6_K": ("Q6_K", "Q6_K"),
    "F16": ("F16", "F16"),
    "BF16": ("BF16", "BF16"),
    "F32": ("F32", "F32"),
}
#: Tensors the k-quant mixes store at a larger type (and `token_embd`, which some mixes raise too).
_MIXED = ("attn_v.weight", "attn_qkv.weight", "attn_output.weight", "ffn_down", "token_embd.weight")
#: GGUF's default data alignment: each tensor's data may be padded up to it.
_GGUF_ALIGNMENT = 32


def _tensor_bytes(type_name: str, elements: int, row: int) -> int | None:
    """Bytes of a tensor of `elements` in `type_name`; None for a type gguf does not know."""
    import gguf

    try:
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    except KeyError:
        return None
    if row % block:
        return None
    return elements // block * size


def expected_size(info: GGUFInfo, source_size: int, target: str) -> int:
    """An upper bound of the size of `info`'s model (a file of `source_size` bytes) quantized to `target`.

    As llama.cpp does, only weights of two or more dimensions are converted
    and the rest copied; `output.weight` of a quantized target is Q6_K (Q8_0
    for Q8_0), and a row a type's blocks do not divide falls back to Q8_0, or
    F16 (llama.cpp's fallbacks are no larger). The header and metadata are
    taken over as they are in the source.
    """
    base, larger = _TARGET_TYPES[target]
    quantized = target not in SOURCE_TYPES
    total = 0
    tensors = 0
    for tensor in info.tensors:
        shape = [int(d) for d in tensor.get("shape", [])]
        elements, row = 1, (shape[0] if shape else 1)
        for d in shape:
            elements *= d
        source = _tensor_bytes(str(tensor.get("type")), elements, row)
        source = source if source is not None else elements * 4
        tensors += source
        name = str(tensor.get("name", ""))
        if len(shape) < 2 or not name.endswith("weight"):
            total += source + _GGUF_ALIGNMENT
            continue
        kind = larger if any(part in name for part in _MIXED) else base
        if quantized and name == "output.weight":
            kind = "Q8_0" if target == "Q8_0" else "Q6_K"
        size = _tensor_bytes(kind, elements, row)
        if size is None:
            size = _tensor_bytes("Q8_0", elements, row) if quantized else None
        total += (size if size is not None else elements * 2) + _GGUF_ALIGNMENT
    return total + max(0, source_size - tensors)


def parse_quant_type(name: str) -> str:
    """A `quantize` value → its canonical upper-case name; unknown names are a 400."""
    upper = name.strip().upper()
    upper = ALIASES.get(upper, upper)
    if upper not in QUANT_TYPES:
        raise BadRequest(f"unsupported quantization type {name} - supported types are {', '.join(QUANT_TYPES)}")
    return upper


def check_source(file_type: str) -> None:
    """Only unquantized models are quantized (Ollama's rule and text)."""
    if file_type not in SOURCE_TYPES:
        raise BadRequest(SOURCE_ERROR)


@dataclass(frozen=True)
class Quantized:
    """The published result: its digest, size, whether this call created the blob, and its GGUF."""

    digest: str
    size: int
    created: bool
    info: GGUFInfo


def quantize_command() -> list[str]:
    """How to start the child: `-m` from a checkout; frozen builds need a hidden `quantize` subcommand."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "quantize"]
    return [sys.executable, "-m", "server.store.quantize"]


async def quantize_blob(
    blobs: BlobStore, source: Path, source_type: str, target: str, *, pin: Callable[[str], None], threads: int = 0
) -> AsyncGenerator[Progress | Quantized, None]:
    """Quantize `source` to `target`, yielding Ollama's progress and, last, a `Quantized`.

    `pin` is called with the new digest before it is published, so a concurrent
    delete or prune cannot collect it before the caller's manifest refers to it.
    Closing the generator early kills the child and removes its temp file.
    """
    status = f"quantizing {source_type} model to {target}"
    total = source.stat().st_size
    space = disk_space(blobs.root)
    if space is not None:
        info = await asyncio.to_thread(read_gguf, source)
        require(blobs.root, space.on_disk(expected_size(info, total, target)), f"quantizing to {target}", space=space)
    yield {"status": status, "digest": PROGRESS_DIGEST, "total": total, "completed": 0}
    tmp = blobs.temp_path()
    proc: asyncio.subprocess.Process | None = None
    stderr_task: asyncio.Task[None] | None = None
    stderr_tail: deque[str] = deque(maxlen=_STDERR_LINES)
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *quantize_command(),
                str(source),
                str(tmp),
                target,
                "--threads",
                str(threads),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(),
            )
        except OSError as exc:
            raise PollamaError(f"quantizing to {target}: could not start the quantizer: {exc}") from None
        assert proc.stdout is not None and proc.stderr is not None
        log.info("quantizing %s (%s) to %s in process %d", source.name, source_type, target, proc.pid)
        stderr_task = asyncio.create_task(_drain(proc.stderr, stderr_tail))
        error: str | None = None
        completed = 0
        async for raw in proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if isinstance(msg.get("error"), str):
                error = msg["error"]
            elif isinstance(msg.get("progress"), (int, float)):
                now = min(total, int(total * float(msg["progress"])))
                if now > completed:
                    completed = now
                    yield {"status": status, "digest": PROGRESS_DIGEST, "total": total, "completed": completed}
        rc = await proc.wait()
        await stderr_task
        if rc != 0:
            log.warning(
                "quantizing %s to %s failed (exit %d): %s",
                source.name,
                target,
                rc,
                " | ".join([*([error] if error else []), *stderr_tail]),
            )
            raise _failure(target, rc, error, list(stderr_tail), disk_full=_disk_full(tmp.parent))
        if completed < total:
            yield {"status": status, "digest": PROGRESS_DIGEST, "total": total, "completed": total}
        yield {"status": "verifying conversion"}
        try:
            info, digest, size = await asyncio.to_thread(_verify_and_hash, tmp, target)
        except OSError as exc:
            raise storage_error(exc, f"quantizing to {target}") from exc
        pin(digest)
        try:
            created = await asyncio.to_thread(blobs.adopt, tmp, digest)
        except OSError as exc:
            raise storage_error(exc, f"quantizing to {target}") from exc
        yield Quantized(digest, size, created, info)
    finally:
        if proc is not None and proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            await proc.wait()
        if stderr_task is not None and not stderr_task.done():
            stderr_task.cancel()
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        tmp.unlink(missing_ok=True)


async def _drain(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    """Keep the child's stderr flowing (a full pipe would stall it) and keep its last lines."""
    async for raw in stream:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if line:
            tail.append(line)


def _disk_full(folder: Path) -> bool:
    """llama.cpp reports a failed write as `basic_ios::clear: iostream error`; the disk tells why."""
    try:
        return shutil.disk_usage(folder).free < _FULL_BELOW
    except OSError:
        return False


def _failure(target: str, rc: int, error: str | None, stderr: list[str], *, disk_full: bool = False) -> PollamaError:
    """A failed child → the error a person can act on (400: llama.cpp refused the model)."""
    text = " ".join([error or "", *stderr])
    if disk_full or "No space left" in text or "ENOSPC" in text:
        return StorageError(f"quantizing to {target}: no space left on device; free some disk space and try again")
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        last = next((line for line in reversed(stderr) if line.strip()), "")
        return PollamaError(
            f"quantizing to {target} failed: the quantizer crashed ({name})" + (f": {last}" if last else "")
        )
    if error:
        return BadRequest(f"quantizing to {target} failed: {error}")
    last = stderr[-1] if stderr else f"exit status {rc}"
    return PollamaError(f"quantizing to {target} failed: {last}")


def _verify_and_hash(tmp: Path, target: str) -> tuple[GGUFInfo, str, int]:
    """Check the output is a whole GGUF of the wanted type, fsync it, and hash it."""
    try:
        info = read_gguf(tmp)
    except InvalidGGUF as exc:
        raise PollamaError(
            f"quantizing to {target} produced a damaged file ({exc.message}); is the disk full?"
        ) from None
    if info.file_type != target:
        raise PollamaError(f"quantizing to {target} produced a {info.file_type} model")
    hasher = hashlib.sha256()
    size = 0
    with open(tmp, "r+b") as f:
        os.fsync(f.fileno())
        while chunk := f.read(_READ_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return info, "sha256:" + hasher.hexdigest(), size


# ---- the child process ------------------------------------------------------------------

_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_GGML_LOG_ERROR = 4
_GGML_LOG_CONT = 5


class _QuantizeLog:
    """llama.cpp's log during quantize: tensor lines become progress, errors are kept."""

    def __init__(self, send: Callable[[dict[str, Any]], None], sizes: dict[str, int]) -> None:
        self._send = send
        self._sizes = sizes
        self._total = sum(sizes.values())
        self._done = 0
        self._line = ""
        self._level = 0
        self.errors: list[str] = []

    def on_log(self, level: int, text: bytes | None, _user: Any) -> None:
        if level != _GGML_LOG_CONT:
            self._level = level
        self._line += (text or b"").decode("utf-8", errors="replace")
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            self._handle(line)

    def _handle(self, line: str) -> None:
        if self._level >= _GGML_LOG_ERROR and line.strip():
            self.errors.append(line.strip())
            sys.stderr.write(line + "\n")
        m = _TENSOR_LINE.match(line)
        if m is None:
            return
        index, count, name = int(m.group(1)), int(m.group(2)), m.group(3)
        if self._total and name in self._sizes:
            self._done += self._sizes[name]
            fraction = self._done / self._total
        else:
            fraction = index / max(count, 1)
        self._send({"progress": min(fraction, 1.0)})


def _tensor_sizes(path: str) -> dict[str, int]:
    """Source tensor sizes, so progress is by bytes processed (as Ollama's bar is)."""
    try:
        return {t.name: t.n_bytes for t in read_file_header(path).tensors}
    except (InvalidGGUF, OSError):  # progress falls back on tensor counts; llama.cpp judges the file
        return {}


def _watch_parent() -> None:
    """Exit when the server goes away (our stdin closes), so no orphan keeps writing."""

    def run() -> None:
        try:
            while os.read(0, 4096):  # the raw fd: a buffered reader's lock would trip shutdown
                pass
        finally:
            os._exit(3)

    threading.Thread(target=run, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    """The child: quantize SOURCE into OUTPUT; JSON lines on stdout, llama.cpp's noise on stderr."""
    ap = argparse.ArgumentParser(prog="pollama-quantize")
    ap.add_argument("source")
    ap.add_argument("output")
    ap.add_argument("type", choices=sorted(QUANT_TYPES))
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)

    proto: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything native code prints must not corrupt the protocol
    sys.stdout = sys.stderr
    lock = threading.Lock()

    def send(msg: dict[str, Any]) -> None:
        with lock:
            proto.write(json.dumps(msg) + "\n")

    _watch_parent()
    log = _QuantizeLog(send, _tensor_sizes(args.source))

    import llama_cpp

    callback = llama_cpp.llama_log_callback(log.on_log)  # kept alive until exit
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(getattr(llama_cpp, QUANT_TYPES[args.type]))
    params.nthread = args.threads
    rc = llama_cpp.llama_model_quantize(args.source.encode(), args.output.encode(), ctypes.byref(params))
    if rc != 0:
        reason = log.errors[-1] if log.errors else f"llama_model_quantize returned {rc}"
        send({"error": reason.split("failed to quantize: ", 1)[-1]})
        proto.flush()
        return 1
    proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
