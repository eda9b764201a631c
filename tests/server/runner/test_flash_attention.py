"""Flash attention: OLLAMA_FLASH_ATTENTION forces it, unset leaves it to llama.cpp (Ollama
v0.33's `--flash-attn auto`), and the runner reports which is in effect, in its info and
its log, because greedy text differs between the two."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.runner.client import LoadOptions, RunnerClient
from server.runner.engine import describe_flash_attention, flash_attention_in_effect
from tests.server.runner.helpers import generate

pytestmark = pytest.mark.asyncio


def test_a_forced_setting_wins_and_auto_is_what_llama_cpp_resolved() -> None:
    assert flash_attention_in_effect(False, True, None) is False
    assert flash_attention_in_effect(True, None, "f16") is True
    assert flash_attention_in_effect(None, False, None) is False
    assert flash_attention_in_effect(None, None, None) is None
    assert flash_attention_in_effect(None, None, "q8_0") is True  # a quantized V cache needs it
    assert describe_flash_attention(None, True) == "on (automatic: OLLAMA_FLASH_ATTENTION unset)"
    assert describe_flash_attention(False, False) == "off (OLLAMA_FLASH_ATTENTION=0)"


@pytest.mark.parametrize(("setting", "expected"), [(None, True), (False, False), (True, True)])
async def test_the_runner_says_which_is_in_effect(tiny_model_path: Path, setting: bool | None, expected: bool) -> None:
    """On the CPU llama.cpp's automatic choice is on (its CPU backend has the fused op)."""
    options = LoadOptions(str(tiny_model_path), num_ctx=128, num_gpu=0, flash_attention=setting)
    client = await RunnerClient.start(options, load_timeout=60)
    try:
        assert client.info is not None and client.info.flash_attention is expected
        r = await generate(client, "hello world", num_predict=4)
        assert r.last.eval_count == 4
        lines = [line for line in client.stderr_tail(200) if line.startswith("pollama runner: flash attention")]
        assert lines == [f"pollama runner: flash attention {describe_flash_attention(setting, expected)}"]
    finally:
        await client.close()
