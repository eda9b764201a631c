"""Which of the CPU backend's extra weight layouts a model may be loaded into.

llama.cpp copies CPU weights into "extra buffer types" when `use_extra_bufts` is on (its
default, llama-server's unless `--no-repack`): `CPU_REPACK` (quantized blocks interleaved
for AVX2/NEON kernels) and, on Intel CPUs with AMX (Sapphire Rapids and later), `AMX`. It
has one switch for all of them.

The AMX layout's quantized kernels are not safe: `ggml_backend_amx_mul_mat` crashed the
first decode of every Q8_0 model on this project's Xeon VM (llama.cpp #20824, closed as
stale without a fix; Ollama's users and DSPy's CI hit it with Q4_K_M), and Q4_0/Q4_1 give
garbage there (llama.cpp #16315). Its F16 path is another kernel ("f16 only has avx512
kernels for now", `ggml/src/ggml-cpu/amx/mmq.cpp`) that works through the batch 4 rows at
a time, one pass over the weights each: on that VM it decoded one sequence 9 % faster than
the plain kernel and 2–4 sequences about 15 % faster, but 5–16 sequences 9–22 % slower
(benchmarks/README.md). F32 and BF16 weights it leaves to the plain kernels.

So where AMX is on offer, the extra layouts are used only for a model with nothing
quantized in it whose decode steps carry at most 4 rows: `OLLAMA_NUM_PARALLEL` ≤ 4
(Ollama's default is 1) and no draft model, whose drafts widen every step. Everywhere else
they are used as llama.cpp would. (Prompt lookup, asked for per request, widens steps too;
a load cannot know of it.)
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from server.store.gguf_header import InvalidGGUF, read_file_header

#: The extra layout whose quantized kernels crash or garble (see above).
AMX = "AMX"
#: Weight types the AMX layout either runs through its F16 kernel or leaves alone.
UNQUANTIZED = frozenset({"F32", "F16", "BF16"})
#: Batch rows the AMX F16 kernel computes per pass over the weights: for decode steps of up
#: to this many rows it is the faster kernel, beyond it the slower.
AMX_F16_ROWS = 4


def use_extra_buffer_types(offered: Collection[str], rows: int, weight_types: Callable[[], Collection[str]]) -> bool:
    """Whether a model may be loaded with `use_extra_bufts` on, given the CPU's extra buffer
    types (`offered`, `ggml_backends.cpu_extra_buffer_types`), the most rows a decode step
    of it carries, and its weights' ggml type names (read only where AMX is on offer)."""
    if AMX not in offered:
        return True
    return rows <= AMX_F16_ROWS and set(weight_types()) <= UNQUANTIZED


def gguf_weight_types(path: str) -> frozenset[str]:
    """The ggml type names of a GGUF file's tensors; a file that cannot be read as GGUF
    gives a type no layout is chosen for (llama.cpp's load then says what is wrong)."""
    try:
        return frozenset(t.type for t in read_file_header(path).tensors)
    except (OSError, InvalidGGUF):
        return frozenset({"unreadable"})
