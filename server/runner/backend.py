"""Thin typed wrappers over llama-cpp-python's low-level ctypes bindings.

Only the engine thread may touch anything here (see benchmarking.md: a second
thread calling into llama.cpp slows decoding for the whole process), which is
why this module holds no threads, locks or globals of its own. The high-level
`llama_cpp.Llama` is deliberately not used: it handles one sequence at a time.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as L
import numpy as np

from server.runner import cpu_layouts, ggml_backends
from server.runner.ggml_backends import BackendReport

_GGML_LOG_ERROR = 4
_GGML_LOG_WARN = 3
_GGML_LOG_INFO = 2
_GGML_LOG_CONT = 5

_BUFFER_RE = re.compile(r"(\S+)\s+(model|KV|RS|compute|output)\s+buffer size\s*=\s*([\d.]+)\s*MiB")
_OFFLOADED_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
#: llama.cpp's `llama_context::sched_reserve` resolving `flash_attn_type` auto, per device.
_FLASH_RESOLVED_RE = re.compile(r"Flash Attention (enabled|not supported, set to disabled)")

POOLING_NAMES = {
    L.LLAMA_POOLING_TYPE_UNSPECIFIED: "unspecified",
    L.LLAMA_POOLING_TYPE_NONE: "none",
    L.LLAMA_POOLING_TYPE_MEAN: "mean",
    L.LLAMA_POOLING_TYPE_CLS: "cls",
    L.LLAMA_POOLING_TYPE_LAST: "last",
    L.LLAMA_POOLING_TYPE_RANK: "rank",
}

KV_TYPES = {"f16": L.GGML_TYPE_F16, "q8_0": L.GGML_TYPE_Q8_0, "q4_0": L.GGML_TYPE_Q4_0}


class BackendError(RuntimeError):
    pass


@dataclass
class BufferSizes:
    """Bytes per kind ("weights", "kv", "compute") and whether they sit in RAM or VRAM, as
    llama.cpp reports them in its log while loading (the bindings expose no breakdown API)."""

    ram: dict[str, int] = field(default_factory=lambda: {"weights": 0, "kv": 0, "compute": 0})
    vram: dict[str, int] = field(default_factory=lambda: {"weights": 0, "kv": 0, "compute": 0})
    layers_offloaded: int = 0
    layers_total: int = 0
    #: Bytes per device as llama.cpp names it (`CPU`, `CUDA0`, `RPC0[host:port]`), all kinds.
    by_device: dict[str, int] = field(default_factory=dict)

    def add(self, device: str, kind: str, mib: float) -> None:
        bucket = "weights" if kind == "model" else "kv" if kind in ("KV", "RS") else "compute"
        # CPU_REPACK and AMX are the CPU's own extra layouts: host memory like CPU's.
        on_host = device.upper().startswith(("CPU", "AMX")) or device.endswith("_Host")
        target = self.ram if on_host else self.vram
        size = int(mib * 1024 * 1024)
        target[bucket] += size
        self.by_device[device] = self.by_device.get(device, 0) + size

    def feed(self, line: str) -> None:
        """Take what a line of llama.cpp's loading log says about buffers and offloaded layers."""
        if match := _BUFFER_RE.search(line):
            self.add(match.group(1), match.group(2), float(match.group(3)))
        elif match := _OFFLOADED_RE.search(line):
            self.layers_offloaded, self.layers_total = int(match[1]), int(match[2])

    def total(self, kind: str) -> int:
        return self.ram[kind] + self.vram[kind]

    @property
    def fully_offloaded(self) -> bool:
        """Every layer offloaded, onto a device that holds some of it. llama.cpp counts layers
        as offloaded whenever a backend could take them (`llama_supports_gpu_offload` is true as
        soon as the RPC backend is loaded, workers or not) even when they land in CPU buffers."""
        return self.layers_total > 0 and self.layers_offloaded >= self.layers_total and any(self.vram.values())

    def size_vram(self, size: int) -> int:
        """Bytes of `size` to report as on the GPU. With every layer offloaded that is all of
        it, as in Ollama ("100% GPU"): what stays in RAM then (the token-embedding table, which
        llama.cpp always keeps on the host, and pinned staging buffers) serves the GPU."""
        return size if self.fully_offloaded else min(size, sum(self.vram.values()))


class LogSink:
    """llama.cpp's log, written to our stderr (the runner's log) and read for buffer sizes and
    the last errors. The ctypes callback must outlive every llama.cpp object, so the sink is
    created once by the engine and kept."""

    def __init__(self, write: Callable[[str], None] | None = None, quiet_below: int = _GGML_LOG_INFO) -> None:
        self._write = write or (lambda text: (sys.stderr.write(text), sys.stderr.flush()))
        self._quiet_below = quiet_below
        self._line = ""
        self._level = _GGML_LOG_INFO
        self.recent: deque[str] = deque(maxlen=40)
        self.errors: deque[str] = deque(maxlen=20)
        self.sizes: BufferSizes | None = None  # set while loading to collect sizes
        #: What llama.cpp last resolved an automatic flash-attention setting to (None: not yet).
        self.flash_attention_resolved: bool | None = None
        self._callback = L.llama_log_callback(self._on_log)
        L.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        if level != _GGML_LOG_CONT:
            self._level = level
        self._line += text.decode("utf-8", errors="replace")
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            self._handle(self._level, line)

    @property
    def callback(self) -> Any:
        """The ctypes log hook, for other llama.cpp libraries (libmtmd) to log through too."""
        return self._callback

    def note(self, line: str) -> None:
        """A line of our own, logged like a llama.cpp warning."""
        self._handle(_GGML_LOG_WARN, line)

    def _handle(self, level: int, line: str) -> None:
        if not line.strip():
            return
        self.recent.append(line)
        if level >= _GGML_LOG_WARN and level != _GGML_LOG_CONT:
            self.errors.append(line)
        if self.sizes is not None:
            self.sizes.feed(line)
        if match := _FLASH_RESOLVED_RE.search(line):
            self.flash_attention_resolved = match.group(1) == "enabled"
        if level >= self._quiet_below:
            self._write(line + "\n")


def meta_str(model: Any, key: str) -> str | None:
    buf = ctypes.create_string_buffer(4096)
    n = L.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    return buf.value.decode("utf-8", errors="replace")


class Model:
    """A loaded model and its vocabulary; tokenizing and token pieces live here."""

    def __init__(
        self,
        path: str,
        *,
        n_gpu_layers: int,
        main_gpu: int,
        use_mmap: bool | None,
        lora_paths: tuple[str, ...] = (),
        repack: bool = True,
        decode_rows: int = 1,
    ) -> None:
        params = L.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.main_gpu = main_gpu
        # num_gpu 0 means CPU only, as in Ollama: an empty device list keeps llama.cpp off the
        # GPU entirely, where zero layers alone would still put compute buffers (and a CUDA
        # context of several hundred MB) there.
        self.cpu_only = n_gpu_layers == 0
        if self.cpu_only:
            no_devices = (ctypes.c_void_p * 1)()  # NULL-terminated and empty; lives through the load
            params.devices = ctypes.cast(no_devices, ctypes.c_void_p)
        else:
            report = ggml_backends.load()
            gpus = [d for d in report.devices if d.type in ("gpu", "igpu")]
            chosen = ggml_backends.offload_devices(gpus)
            if len(chosen) < len(gpus):  # one GPU seen by two backends: offload to it once
                handles = ggml_backends.device_handles(d.name for d in chosen)
                some_devices = (ctypes.c_void_p * (len(handles) + 1))(*handles)
                params.devices = ctypes.cast(some_devices, ctypes.c_void_p)
                dropped = ", ".join(d.name for d in gpus if d not in chosen)
                vendors = ", ".join(sorted({d.backend for d in chosen if d.backend != "Vulkan"}))
                sys.stderr.write(f"pollama runner: not offloading to {dropped}: the same GPU is a {vendors} device\n")
        if use_mmap is not None:
            params.load_mode = L.LLAMA_LOAD_MODE_MMAP if use_mmap else L.LLAMA_LOAD_MODE_NONE
        # llama-server's --no-repack (`repack` false, POLLAMA_NO_REPACK) keeps CPU weights as
        # stored instead of in the CPU backend's extra buffer types (AVX2/AMX-interleaved
        # copies); where the AMX layout is on offer they are used only where its quantized
        # kernels, which fault, cannot be reached (`cpu_layouts.use_extra_buffer_types`).
        params.use_extra_bufts = repack and cpu_layouts.use_extra_buffer_types(
            ggml_backends.cpu_extra_buffer_types(), decode_rows, lambda: cpu_layouts.gguf_weight_types(path)
        )
        ptr = L.llama_model_load_from_file(path.encode(), params)
        if not ptr:
            raise BackendError(f"llama.cpp could not load {path}")
        self.ptr = ptr
        self.path = path
        self.vocab = L.llama_model_get_vocab(ptr)
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        self.n_embd = int(L.llama_model_n_embd(ptr))
        #: Outputs of a classification head: what a rank-pooled context gives per sequence.
        self.n_cls_out = int(L.llama_model_n_cls_out(ptr))
        self.n_layer = int(L.llama_model_n_layer(ptr))
        self.n_ctx_train = int(L.llama_model_n_ctx_train(ptr))
        self.architecture = meta_str(ptr, "general.architecture") or ""
        self.model_pooling = meta_str(ptr, f"{self.architecture}.pooling_type")
        desc = ctypes.create_string_buffer(256)
        L.llama_model_desc(ptr, desc, len(desc))
        self.description = desc.value.decode("utf-8", errors="replace")
        self.bos = _token_or_none(L.llama_vocab_bos(self.vocab))
        self.eos = _token_or_none(L.llama_vocab_eos(self.vocab))
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.add_eos = bool(L.llama_vocab_get_add_eos(self.vocab))
        self.add_sep = bool(L.llama_vocab_get_add_sep(self.vocab))
        self.is_recurrent = bool(L.llama_model_is_recurrent(ptr)) or bool(L.llama_model_is_hybrid(ptr))
        #: Sliding-window size of the model's SWA layers (gemma2/3, ...); 0 when it has none.
        self.n_swa = int(L.llama_model_n_swa(ptr))
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self.loras: list[Any] = []
        for lora in lora_paths:
            adapter = L.llama_adapter_lora_init(ptr, lora.encode())
            if not adapter:
                self.close()
                raise BackendError(f"llama.cpp could not load the adapter {lora}")
            self.loras.append(adapter)

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 8
        while True:
            buf = (L.llama_token * size)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, parse_special)
            if n >= 0:
                return list(buf[:n])
            size = -n

    def piece(self, token: int) -> bytes:
        """Bytes of a token as it appears in output (control tokens render, as in Ollama)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        buf = self._piece_buf
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        out = buf.raw[:n]
        self._pieces[token] = out
        return out

    def detokenize(self, tokens: list[int] | tuple[int, ...]) -> str:
        valid = [t for t in tokens if 0 <= t < self.n_vocab]
        return b"".join(self.piece(t) for t in valid).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        for adapter in self.loras:
            L.llama_adapter_lora_free(adapter)
        self.loras = []
        if self.ptr:
            L.llama_model_free(self.ptr)
            self.ptr = None


def _token_or_none(token: int) -> int | None:
    return None if token < 0 else int(token)


@dataclass(frozen=True)
class ContextSpec:
    n_ctx: int
    n_seq_max: int
    n_batch: int
    n_ubatch: int
    n_threads: int
    flash_attention: bool | None = None
    kv_cache_type: str | None = None
    embeddings: bool = False
    pooling: int = L.LLAMA_POOLING_TYPE_UNSPECIFIED
    kv_unified: bool = False
    #: A full-size cache for sliding-window layers, llama.cpp's default (and llama-cpp-python's):
    #: entries that left the window stay until their cell is needed, so the cache can be
    #: shifted like any other. False saves memory on long contexts but makes it unshiftable.
    swa_full: bool = True


class Context:
    """A llama context: the KV cache (one stream per sequence unless unified) and decoding."""

    def __init__(self, model: Model, spec: ContextSpec) -> None:
        params = L.llama_context_default_params()
        params.n_ctx = spec.n_ctx
        params.n_seq_max = spec.n_seq_max
        params.n_batch = spec.n_batch
        params.n_ubatch = spec.n_ubatch
        params.n_threads = spec.n_threads
        params.n_threads_batch = spec.n_threads
        params.embeddings = spec.embeddings
        params.pooling_type = spec.pooling
        params.kv_unified = spec.kv_unified
        params.swa_full = spec.swa_full
        params.no_perf = True
        if model.cpu_only:
            params.offload_kqv = False
            params.op_offload = False
        if spec.flash_attention is not None:
            params.flash_attn_type = 1 if spec.flash_attention else 0
        kv_type = KV_TYPES.get((spec.kv_cache_type or "f16").lower())
        if kv_type is None:
            raise BackendError(f"unknown kv cache type {spec.kv_cache_type!r}")
        if kv_type != L.GGML_TYPE_F16 and spec.flash_attention is False:
            kv_type = L.GGML_TYPE_F16  # a quantized V cache needs flash attention; Ollama falls back too
        params.type_k = kv_type
        params.type_v = kv_type
        ptr = L.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise BackendError("llama.cpp could not create a context (out of memory?)")
        self.ptr = ptr
        self.model = model
        self.spec = spec
        self.mem = L.llama_get_memory(ptr)
        self.n_ctx = int(L.llama_n_ctx(ptr))
        self.n_ctx_seq = int(L.llama_n_ctx_seq(ptr))
        self.n_seq_max = int(L.llama_n_seq_max(ptr))
        self.pooling = int(L.llama_pooling_type(ptr))
        self.can_shift = bool(L.llama_memory_can_shift(self.mem)) if self.mem else False
        if model.loras:
            n = len(model.loras)
            adapters = (L.llama_adapter_lora_p_ctypes * n)(*model.loras)
            scales = (ctypes.c_float * n)(*([1.0] * n))
            L.llama_set_adapters_lora(ptr, adapters, n, scales)

    def decode(self, batch: Batch) -> int:
        return int(L.llama_decode(self.ptr, batch.raw))

    def seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        return bool(L.llama_memory_seq_rm(self.mem, seq, p0, p1))

    def seq_cp(self, source: int, target: int) -> None:
        """Copy a sequence's whole cache to another (empty) sequence; between the streams of a
        split cache llama.cpp copies the buffers at the start of the next decode."""
        L.llama_memory_seq_cp(self.mem, source, target, -1, -1)

    def seq_add(self, seq: int, p0: int, p1: int, delta: int) -> None:
        L.llama_memory_seq_add(self.mem, seq, p0, p1, delta)

    def seq_pos_min(self, seq: int) -> int:
        """The oldest position the cache still holds for `seq` (-1 when empty). For an iSWA
        cache it is the sliding-window part's, which forgets positions that left the window."""
        return int(L.llama_memory_seq_pos_min(self.mem, seq))

    def clear(self) -> None:
        L.llama_memory_clear(self.mem, True)

    def logits(self, i: int) -> np.ndarray:
        """Logits of output row i of the last decode (a view: copy before the next decode)."""
        ptr = L.llama_get_logits_ith(self.ptr, i)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))

    def embedding_seq(self, seq: int) -> np.ndarray | None:
        """The pooled vector of a sequence; with rank pooling, the classification head's
        scores (llama.cpp's `llama_get_embeddings_seq` gives `n_cls_out` floats then)."""
        ptr = L.llama_get_embeddings_seq(self.ptr, seq)
        if not ptr:
            return None
        width = self.model.n_cls_out if self.pooling == L.LLAMA_POOLING_TYPE_RANK else self.model.n_embd
        return np.ctypeslib.as_array(ptr, shape=(width,)).copy()

    def close(self) -> None:
        if self.ptr:
            L.llama_free(self.ptr)
            self.ptr = None


class Batch:
    """A reusable llama_batch; tokens are appended one by one and the batch is cleared per step."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = L.llama_batch_init(capacity, 0, 1)
        self.n = 0

    def clear(self) -> None:
        self.n = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append a token; returns its row (the output index when `logits`)."""
        i = self.n
        raw = self.raw
        raw.token[i] = token
        raw.pos[i] = pos
        raw.n_seq_id[i] = 1
        raw.seq_id[i][0] = seq
        raw.logits[i] = logits
        self.n = i + 1
        raw.n_tokens = self.n
        return i

    @property
    def free(self) -> int:
        return self.capacity - self.n

    def close(self) -> None:
        if self.raw is not None:
            L.llama_batch_free(self.raw)
            self.raw = None


def init_backend() -> BackendReport:
    """Load ggml's backends from llama-cpp-python's own folder (a `GGML_BACKEND_DL` build would
    otherwise look beside the interpreter: ggml_backends.py), then start llama.cpp."""
    report = ggml_backends.load()
    L.llama_backend_init()
    return report
