"""Decode speed under `format` (a JSON-schema grammar): the runner against llama-cpp-python in-process.

    python benchmarks/bench_grammar.py [--rounds 5] [--tokens 96] [--model PATH] [--threads N]

Prints one JSON object. Three contenders alternate inside each round (the machine's
speed drifts, so only same-run ratios mean anything): the runner with the grammar,
the runner without it, and llama-cpp-python's `Llama.create_completion(grammar=...)`
in this process, all greedy on the same prompt with the same thread count, each
request timed by bench_engine.py's stream functions (decode rate, prompt excluded).

The runner checks the chain's token against the grammar and applies the grammar to
the whole vocabulary only when that token is rejected (as Ollama's sampler does);
llama-cpp-python applies it to the whole vocabulary at every token. `grammar_overhead` is the
runner's grammar rate over its plain rate (1.0 = free). The default model is the
"bench-q8" preset of tests/fixtures (32k vocabulary), generated on first use; a
real model's vocabulary is 4-5 times larger, and the full-vocabulary cost with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_engine import inprocess_stream, runner_stream  # noqa: E402
from server.runner.client import LoadOptions, RunnerClient  # noqa: E402
from server.runner.cpu import physical_cores  # noqa: E402
from server.runner.grammar import grammar_for_format  # noqa: E402

PROMPT = "Describe a person as JSON:"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "tags"],
}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from llama_cpp import Llama, LlamaGrammar

    from tests.fixtures.gguf_models import cached_model

    model = Path(args.model) if args.model else cached_model("bench-q8")
    threads = args.threads or physical_cores()
    gbnf = grammar_for_format(SCHEMA)
    assert gbnf is not None
    runner = await RunnerClient.start(
        LoadOptions(str(model), num_ctx=1024, num_parallel=1, num_thread=threads), load_timeout=300
    )
    llm = Llama(model_path=str(model), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    grammar = LlamaGrammar.from_string(gbnf, verbose=False)
    rates: dict[str, list[float]] = {"runner_grammar": [], "runner_plain": [], "inprocess_grammar": []}
    try:
        await runner_stream(runner, PROMPT, 8, gbnf)  # warm-up: page in the weights for both
        inprocess_stream(llm, PROMPT, 8, grammar)
        for i in range(args.rounds):
            order = ["runner_grammar", "runner_plain", "inprocess_grammar"]
            for who in order[i % 3 :] + order[: i % 3]:
                if who == "inprocess_grammar":
                    rates[who].append(inprocess_stream(llm, PROMPT, args.tokens, grammar)["decode_tok_s"])
                else:
                    result = await runner_stream(runner, PROMPT, args.tokens, gbnf if who == "runner_grammar" else None)
                    rates[who].append(result["decode_tok_s"])
            print(f"round {i}: " + ", ".join(f"{k} {v[-1]:.1f} tok/s" for k, v in rates.items()), file=sys.stderr)
    finally:
        await runner.close()
        llm.close()
    median = {k: round(statistics.median(v), 2) for k, v in rates.items()}
    return {
        "benchmark": "grammar",
        "model": str(model),
        "machine": {"cpu_count": os.cpu_count(), "threads": threads, "platform": platform.platform()},
        "tokens_per_request": args.tokens,
        "rounds": args.rounds,
        "decode_tok_s_median": median,
        "runner_over_inprocess_with_grammar": round(median["runner_grammar"] / median["inprocess_grammar"], 3),
        "grammar_overhead_runner": round(median["runner_grammar"] / median["runner_plain"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: the bench-q8 preset, generated on first use)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
