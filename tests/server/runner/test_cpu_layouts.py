"""The CPU's extra weight layouts (`server/runner/cpu_layouts.py`): where llama.cpp offers
the AMX layout, whose quantized kernels crash the first decode of a Q8_0 model (llama.cpp
issue #20824), a quantized model is loaded without it; an unquantized one decoding few
rows at a time gets it, for its faster F16 kernel. Elsewhere llama.cpp chooses as it would.

On a CPU with AMX (Sapphire Rapids and later) the runner tests below check which layout
each load took, through the buffers llama.cpp reports; elsewhere they check that the same
loads decode in a runner process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.runner import ggml_backends
from server.runner.client import LoadOptions, RunnerClient, RunnerInfo
from server.runner.cpu_layouts import gguf_weight_types, use_extra_buffer_types
from tests.fixtures.gguf_models import PRESETS, Preset, cached_model
from tests.server.runner.helpers import generate

#: Big enough for ggml to choose the AMX layout for its matrices (the 64-wide tiny one is not).
SMALL_Q8 = Preset("small-q8", 4, 256, 8, 4, 768, 4096, 4096, "Q8_0")
SMALL_F16 = PRESETS["small"]  # the same shape in F16


def _never() -> frozenset[str]:
    raise AssertionError("weight types read where no AMX layout is on offer")


def test_without_amx_the_extra_layouts_stay_on_and_the_file_is_not_read() -> None:
    assert use_extra_buffer_types(("CPU_REPACK",), 16, _never)
    assert use_extra_buffer_types((), 1, _never)


def test_with_amx_only_unquantized_weights_in_narrow_steps_get_them() -> None:
    offered = ("AMX", "CPU_REPACK")
    assert use_extra_buffer_types(offered, 1, lambda: {"F32", "F16"})
    assert use_extra_buffer_types(offered, 4, lambda: {"F32", "BF16"})
    assert not use_extra_buffer_types(offered, 5, lambda: {"F32", "F16"})  # the F16 kernel's 4-row tiles
    assert not use_extra_buffer_types(offered, 1, lambda: {"F32", "F16", "Q8_0"})
    assert not use_extra_buffer_types(offered, 1, lambda: {"F32", "Q4_K", "Q6_K"})


def test_weight_types_are_read_from_the_file_and_an_unreadable_one_gets_no_layout(tmp_path: Path) -> None:
    assert gguf_weight_types(str(cached_model(SMALL_Q8))) == {"F32", "Q8_0"}
    assert gguf_weight_types(str(cached_model(SMALL_F16))) == {"F32", "F16"}
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    assert not use_extra_buffer_types(("AMX",), 1, lambda: gguf_weight_types(str(junk)))
    assert not use_extra_buffer_types(("AMX",), 1, lambda: gguf_weight_types(str(tmp_path / "missing.gguf")))


def _load_and_decode(preset: Preset, parallel: int) -> tuple[RunnerInfo, str | None, int]:
    async def run() -> tuple[RunnerInfo, str | None, int]:
        options = LoadOptions(str(cached_model(preset)), num_ctx=256, num_gpu=0, num_parallel=parallel)
        client = await RunnerClient.start(options, load_timeout=60)
        try:
            result = await generate(client, "hello there", num_predict=8)
        finally:
            await client.close()
        return client.info, result.last.done_reason, result.last.eval_count

    return asyncio.run(run())


AMX_CPU = "AMX" in ggml_backends.cpu_extra_buffer_types()


@pytest.mark.parametrize(
    ("preset", "parallel", "amx"),
    [(SMALL_Q8, 1, False), (SMALL_F16, 1, True), (SMALL_F16, 8, False)],
    ids=["q8", "f16-one-stream", "f16-eight-streams"],
)
def test_a_runner_decodes_with_the_layout_its_model_and_width_allow(preset: Preset, parallel: int, amx: bool) -> None:
    info, reason, count = _load_and_decode(preset, parallel)
    assert (reason, count) == ("length", 8)
    assert ("AMX" in info.device_bytes) == (amx and AMX_CPU), info.device_bytes
    assert info.size_vram == 0  # the AMX layout is host memory, as the CPU's own is
