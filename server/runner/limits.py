"""What llama.cpp accepts, so that no load or sampling value from a caller can crash a runner.

The server clamps options as Ollama does (`server/scheduler.py`); this module is the
runner's own last line, applied to whatever arrives over the protocol, because a bad
value here is not an error message but a dead process: llama.cpp checks its
parameters with assertions (abort) or not at all (a 2^31-token batch is a segfault).
Every number below is read from the sources llama-cpp-python 0.3.36 vendors:

- `src/llama-cparams.h`: `LLAMA_MAX_SEQ` 256 sequences per context (more is refused);
- `ggml/include/ggml.h`: `GGML_MAX_N_THREADS` 512;
- `include/llama.h`: `n_ctx`, `n_batch`, `n_ubatch` and `n_seq_max` are `uint32_t`,
  `n_threads`, `n_gpu_layers`, `main_gpu`, `top_k` and `penalty_last_n` are `int32_t`
  and sampling parameters are `float` (ctypes truncates larger Python ints silently);
- `src/llama-context.cpp` `llama_context::llama_context`: `n_ctx` is padded up to a
  multiple of 256, so a total past 2^32 - 256 wraps to zero;
- `src/llama-context.cpp` `llama_context::output_reserve`/`decode`: a batch may hold
  at most `n_batch` outputs, so with fewer than one row per sequence a full step of
  `num_parallel` generating sequences aborts (`n_outputs_max <= cparams.n_outputs_max`);
- `src/llama-context.cpp` `llama_context::graph_reserve`: the worst-case graph is built
  for `n_ubatch` tokens rounded up to a multiple of `n_seq_max`; a model without a KV
  cache (BERT and other non-causal encoders) then fails `ggml_can_mul_mat` and aborts,
  which is why an embedding context holds a multiple of its sequence count.

Plain functions over ints and floats, tested without llama.cpp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LLAMA_MAX_SEQ = 256
GGML_MAX_N_THREADS = 512
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
#: `cparams.n_ctx = GGML_PAD(n_ctx, 256)` must not wrap a uint32.
MAX_CONTEXT_TOTAL = UINT32_MAX - 255
FLT_MAX = 3.4028234663852886e38
#: The largest share of one decode an embedding context gives to separate inputs.
MAX_EMBED_SEQS = 16
#: llama.cpp's default micro-batch; larger ones only cost memory on CPU.
MAX_UBATCH = 512


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(int(value), high))


@dataclass(frozen=True)
class GenerationShape:
    """The sizes of a generation context: per-slot context, slots, batch, micro-batch."""

    n_ctx_slot: int
    n_parallel: int
    n_batch: int
    n_ubatch: int

    @property
    def n_ctx_total(self) -> int:
        return self.n_ctx_slot * self.n_parallel


def generation_shape(num_ctx: int, num_parallel: int, num_batch: int) -> GenerationShape:
    """Sizes llama.cpp can hold: 1–256 slots, a context total that fits its uint32 after
    padding, and a batch of at least one row per slot (every generating sequence adds a
    token to each step) and at most the whole context (llama.cpp caps a causal batch
    there itself; the engine's own batch buffer must not be larger)."""
    parallel = clamp(num_parallel, 1, LLAMA_MAX_SEQ)
    n_ctx = clamp(num_ctx, 1, MAX_CONTEXT_TOTAL // parallel)
    n_batch = clamp(num_batch, parallel, max(parallel, n_ctx * parallel))
    return GenerationShape(n_ctx, parallel, n_batch, min(n_batch, MAX_UBATCH))


@dataclass(frozen=True)
class EmbeddingShape:
    """An embedding context: each input may have `n_ctx` tokens; one decode holds
    `capacity` tokens of up to `n_seq_max` inputs."""

    n_ctx: int
    capacity: int
    n_seq_max: int


def embedding_shape(num_ctx: int) -> EmbeddingShape:
    """Up to 16 inputs a decode, in a context that is a multiple of that many sequences
    (see `graph_reserve` above): a 100-token BERT context aborted the runner, 96 or 112
    do not. The per-input limit stays what was asked for."""
    n_ctx = clamp(num_ctx, 1, MAX_CONTEXT_TOTAL - MAX_EMBED_SEQS)
    n_seq = min(MAX_EMBED_SEQS, n_ctx)
    capacity = -(-n_ctx // n_seq) * n_seq
    return EmbeddingShape(n_ctx, capacity, n_seq)


def thread_count(num_thread: int, default: int, cpus: int) -> int:
    """`num_thread` > 0 as given, else `default`; never more than the CPUs this process may
    run on nor ggml's maximum. Threads beyond the CPUs cannot run at once: every graph
    node ends in a barrier of all of llama.cpp's OpenMP workers, so extra ones only add
    waiting (and start-up cost) for the whole machine."""
    wanted = num_thread if num_thread > 0 else default
    return clamp(wanted, 1, max(1, min(cpus, GGML_MAX_N_THREADS)))


def gpu_layers(num_gpu: int) -> int:
    """Layers to offload: any negative is llama.cpp's "all" (-1); more than an int32 is all too."""
    return -1 if num_gpu < 0 else min(int(num_gpu), INT32_MAX)


def device_index(main_gpu: int) -> int:
    """`main_gpu` as an int32 device index; Ollama passes it only when positive."""
    return clamp(main_gpu, 0, INT32_MAX)


def sampler_float(value: float, default: float) -> float:
    """A float llama.cpp's samplers take: NaN is the default, magnitudes beyond float32 are
    its largest finite value (ctypes would make them infinite)."""
    value = float(value)
    if math.isnan(value):
        return default
    return max(-FLT_MAX, min(value, FLT_MAX))


def sampler_int(value: int, low: int, high: int) -> int:
    """An int32 sampler parameter within its meaningful range."""
    return clamp(value, low, high)
