"""Decode speed of the runner against llama-cpp-python in-process; batching gain with 4 clients.

    python benchmarks/bench_engine.py [--rounds 5] [--tokens 128] [--model PATH] [--threads N]

Prints one JSON object. Rules from reference/benchmarking.md:
- contenders alternate inside one run (runner single, in-process single, runner 4×
  concurrent, then again), and medians and ratios are reported, because this machine's
  speed drifts by up to 1.5× within minutes;
- the same thread count everywhere (physical cores unless --threads);
- the in-process `Llama` is only ever called from this script's main thread, and the
  runners are separate processes, so no process has two threads calling llama.cpp.

Decode tok/s counts tokens after the first one over the time since the first one, so
prompt evaluation is excluded for both contenders. The default model is the "bench"
preset of tests/fixtures (246M-parameter random llama, F16), generated on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import timed_completion  # noqa: E402
from server.runner.client import CompletionRequest, LoadOptions, RunnerClient  # noqa: E402
from server.runner.cpu import physical_cores  # noqa: E402

PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
CONCURRENT_PROMPTS = [
    PROMPT,
    "The history of the printing press begins in the fifteenth century, when",
    "To make a good cup of coffee, first you need to",
    "The three most important ideas in computer science are",
]


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


async def runner_stream(client: RunnerClient, prompt: str, tokens: int, grammar: str | None = None) -> dict[str, float]:
    """One request; decode rate measured on arrival of chunks (what a client sees, `timed_completion`)."""
    req = CompletionRequest(prompt=prompt, temperature=0.0, num_predict=tokens, top_k=40, top_p=0.9, grammar=grammar)
    return (await timed_completion(client, req)).figures()


async def runner_concurrent(client: RunnerClient, tokens: int) -> dict[str, float]:
    start = time.perf_counter()
    results = await asyncio.gather(*(runner_stream(client, p, tokens) for p in CONCURRENT_PROMPTS))
    wall = time.perf_counter() - start
    total = sum(r["tokens"] for r in results)
    return {
        "total_tokens": total,
        "wall_s": wall,
        "aggregate_tok_s": total / wall,
        "first_token_median_s": statistics.median(r["ttft_s"] for r in results),
    }


def inprocess_stream(llm: Any, prompt: str, tokens: int, grammar: Any = None) -> dict[str, float]:
    llm.reset()  # no prompt cache advantage either way: the runner reuses its prefix, decode is what we time
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for _ in llm.create_completion(
        prompt,
        max_tokens=tokens,
        temperature=0.0,
        top_k=40,
        top_p=0.9,
        repeat_penalty=1.0,
        grammar=grammar,
        stream=True,
    ):
        now = time.perf_counter()
        if not first:
            first = now
        last = now
        count += 1
    return {
        "tokens": count,
        "ttft_s": first - start,
        "decode_tok_s": (count - 1) / (last - first) if last > first else 0.0,
        "wall_s": last - start,
    }


def default_model() -> Path:
    from tests.fixtures.gguf_models import cached_model

    return cached_model("bench")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from llama_cpp import Llama

    model = Path(args.model) if args.model else default_model()
    threads = args.threads or physical_cores()
    log = logging.getLogger("bench")
    single = await RunnerClient.start(
        LoadOptions(str(model), num_ctx=args.ctx, num_parallel=1, num_thread=threads), load_timeout=300, log=log
    )
    multi = await RunnerClient.start(
        LoadOptions(str(model), num_ctx=args.ctx, num_parallel=4, num_thread=threads), load_timeout=300, log=log
    )
    llm = Llama(
        model_path=str(model), n_ctx=args.ctx, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False
    )
    rounds: list[dict[str, Any]] = []
    try:
        # warm-up: page in the weights for everyone
        await runner_stream(single, PROMPT, 8)
        await runner_concurrent(multi, 8)
        inprocess_stream(llm, PROMPT, 8)
        for i in range(args.rounds):
            row: dict[str, Any] = {"round": i}
            order = ["runner", "inprocess"] if i % 2 == 0 else ["inprocess", "runner"]
            for who in order:
                if who == "runner":
                    row["runner"] = await runner_stream(single, PROMPT, args.tokens)
                else:
                    row["inprocess"] = inprocess_stream(llm, PROMPT, args.tokens)
            row["runner_concurrent4"] = await runner_concurrent(multi, args.tokens)
            rounds.append(row)
            print(
                f"round {i}: runner {row['runner']['decode_tok_s']:.1f} tok/s, in-process "
                f"{row['inprocess']['decode_tok_s']:.1f} tok/s, 4 concurrent "
                f"{row['runner_concurrent4']['aggregate_tok_s']:.1f} tok/s",
                file=sys.stderr,
            )
    finally:
        await single.close()
        await multi.close()
        llm.close()

    runner_rates = [r["runner"]["decode_tok_s"] for r in rounds]
    inproc_rates = [r["inprocess"]["decode_tok_s"] for r in rounds]
    agg = [r["runner_concurrent4"]["aggregate_tok_s"] for r in rounds]
    ratios = [a / b for a, b in zip(runner_rates, inproc_rates, strict=True) if b]
    return {
        "benchmark": "engine",
        "model": str(model),
        "model_bytes": os.path.getsize(model),
        "machine": {"cpu_count": os.cpu_count(), "threads": threads, "platform": platform.platform()},
        "tokens_per_request": args.tokens,
        "rounds": args.rounds,
        "single_stream": {
            "runner_decode_tok_s_median": _median(runner_rates),
            "runner_engine_decode_tok_s_median": _median([r["runner"]["engine_decode_tok_s"] for r in rounds]),
            "inprocess_decode_tok_s_median": _median(inproc_rates),
            "runner_over_inprocess_median_ratio": round(statistics.median(ratios), 3) if ratios else None,
            "runner_ttft_median_s": round(statistics.median(r["runner"]["ttft_s"] for r in rounds), 3),
            "inprocess_ttft_median_s": round(statistics.median(r["inprocess"]["ttft_s"] for r in rounds), 3),
        },
        "concurrent4": {
            "num_parallel": 4,
            "aggregate_tok_s_median": _median(agg),
            "first_token_median_s": round(
                statistics.median(r["runner_concurrent4"]["first_token_median_s"] for r in rounds), 3
            ),
            "aggregate_over_single_runner_median_ratio": round(
                statistics.median(a / s for a, s in zip(agg, runner_rates, strict=True) if s), 3
            ),
        },
        "raw": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: the bench preset, generated on first use)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--ctx", type=int, default=1024, help="context per request")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
