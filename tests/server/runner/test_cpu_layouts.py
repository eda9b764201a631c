"""Quantized weights run on every CPU: the runner leaves out ggml's AMX weight layout, which
crashes the first decode of a Q8_0 model on CPUs that have AMX (llama.cpp issue #20824).

On such a CPU (Sapphire Rapids and later) the runner below died of SIGSEGV before the fix;
elsewhere it checks that a quantized model decodes in a runner process at all."""

from __future__ import annotations

import asyncio

from server.runner.backend import use_extra_buffer_types
from server.runner.client import LoadOptions, RunnerClient
from tests.fixtures.gguf_models import Preset, cached_model
from tests.server.runner.helpers import generate

#: Big enough for ggml to choose the AMX layout for its matrices (the 64-wide tiny one is not).
SMALL_Q8 = Preset("small-q8", 4, 256, 8, 4, 768, 4096, 4096, "Q8_0")


def test_amx_turns_the_extra_layouts_off_and_others_leave_them_on() -> None:
    assert use_extra_buffer_types(("CPU_REPACK",))
    assert use_extra_buffer_types(())
    assert not use_extra_buffer_types(("AMX", "CPU_REPACK"))


def test_a_q8_model_decodes_in_a_runner() -> None:
    async def run() -> tuple[str | None, int]:
        options = LoadOptions(str(cached_model(SMALL_Q8)), num_ctx=256, num_gpu=0)
        client = await RunnerClient.start(options, load_timeout=60)
        try:
            result = await generate(client, "hello there", num_predict=8)
        finally:
            await client.close()
        return result.last.done_reason, result.last.eval_count

    assert asyncio.run(run()) == ("length", 8)
