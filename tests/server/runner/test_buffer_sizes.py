"""RAM/VRAM accounting from llama.cpp's loading log.

The lines are llama.cpp's own (0.3.36 built with CUDA, on an H100, the bench model with
n_gpu_layers -1, 8 and 0), so the parser is checked against the format it must read.
"""

from __future__ import annotations

from app.formatting import processor
from server.runner.backend import BufferSizes

MIB = 1 << 20

FULL = """\
load_tensors: offloading output layer to GPU
load_tensors: offloading 15 repeating layers to GPU
load_tensors: offloaded 17/17 layers to GPU
load_tensors:   CPU_Mapped model buffer size =    62.50 MiB
load_tensors:        CUDA0 model buffer size =   406.63 MiB
llama_context:  CUDA_Host  output buffer size =     0.12 MiB
llama_kv_cache:      CUDA0 KV buffer size =    32.00 MiB
sched_reserve:      CUDA0 compute buffer size =    77.01 MiB
sched_reserve:  CUDA_Host compute buffer size =     9.01 MiB
~llama_context:      CUDA0 compute buffer size is  77.0078 MiB, matches expectation of  77.0078 MiB
"""

PARTIAL = """\
load_tensors: offloaded 8/17 layers to GPU
load_tensors:   CPU_Mapped model buffer size =   256.07 MiB
load_tensors:        CUDA0 model buffer size =   213.06 MiB
llama_context:  CUDA_Host  output buffer size =     0.12 MiB
llama_kv_cache:        CPU KV buffer size =    18.00 MiB
llama_kv_cache:      CUDA0 KV buffer size =    14.00 MiB
sched_reserve:      CUDA0 compute buffer size =    84.50 MiB
sched_reserve:  CUDA_Host compute buffer size =     9.01 MiB
"""

CPU_BUILD = """\
load_tensors:   CPU_Mapped model buffer size =   469.13 MiB
llama_context:        CPU  output buffer size =     0.12 MiB
llama_kv_cache:        CPU KV buffer size =    32.00 MiB
sched_reserve:        CPU compute buffer size =   140.00 MiB
"""


def read(log: str) -> BufferSizes:
    sizes = BufferSizes()
    for line in log.splitlines():
        sizes.feed(line)
    return sizes


def size_of(sizes: BufferSizes) -> int:
    return sum(sizes.total(kind) for kind in ("weights", "kv", "compute"))


def test_full_offload_is_all_gpu() -> None:
    sizes = read(FULL)
    assert sizes.fully_offloaded and (sizes.layers_offloaded, sizes.layers_total) == (17, 17)
    assert sizes.vram["weights"] == int(406.63 * MIB) and sizes.ram["weights"] == int(62.50 * MIB)
    assert sizes.vram["kv"] == 32 * MIB
    assert sizes.total("compute") == int(77.01 * MIB) + int(9.01 * MIB) + int(0.12 * MIB)
    size = size_of(sizes)
    assert sizes.size_vram(size) == size
    assert processor(size, sizes.size_vram(size)) == "100% GPU"


def test_partial_offload_splits_by_device() -> None:
    sizes = read(PARTIAL)
    assert not sizes.fully_offloaded
    size = size_of(sizes)
    vram = sizes.size_vram(size)
    assert vram == int(213.06 * MIB) + 14 * MIB + int(84.50 * MIB)
    assert processor(size, vram) == "48%/52% CPU/GPU"


def test_cpu_only_reports_no_vram() -> None:
    sizes = read(CPU_BUILD)
    size = size_of(sizes)
    assert size == int(469.13 * MIB) + int(0.12 * MIB) + 32 * MIB + 140 * MIB
    assert sizes.size_vram(size) == 0 and processor(size, 0) == "100% CPU"


# With the RPC backend loaded but no worker, llama.cpp "offloads" every layer into CPU buffers.
RPC_NO_WORKERS = """\
load_tensors: offloading output layer to GPU
load_tensors: offloading 1 repeating layers to GPU
load_tensors: offloaded 3/3 layers to GPU
load_tensors:   CPU_Mapped model buffer size =     0.78 MiB
llama_context:        CPU  output buffer size =     0.00 MiB
llama_kv_cache:        CPU KV buffer size =     0.50 MiB
sched_reserve:        CPU compute buffer size =     3.01 MiB
"""


def test_layers_counted_as_offloaded_into_cpu_buffers_are_not_vram() -> None:
    sizes = read(RPC_NO_WORKERS)
    assert (sizes.layers_offloaded, sizes.layers_total) == (3, 3) and not sizes.fully_offloaded
    size = size_of(sizes)
    assert sizes.size_vram(size) == 0 and processor(size, 0) == "100% CPU"
