"""Whether this test run's llama.cpp offloads to a GPU, for the few assertions that differ."""

from __future__ import annotations

from functools import cache


@cache
def gpu_offload() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
