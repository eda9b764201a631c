"""Speculative decoding's speed-up on a repetitive task (editing a given text), with a same-run
baseline without speculation.

    python benchmarks/bench_speculative.py [--rounds 3] [--tokens 128] [--model PATH] [--draft PATH]
                                           [--ngram 3] [--draft-tokens 4] [--threads N]

Prints one JSON object. Three contenders alternate inside each round (reference/benchmarking.md:
this machine's speed drifts, so medians of same-run ratios are reported):
- `plain`: the runner with speculation off (`draft_num_predict` 0);
- `ngram`: prompt lookup (`draft_ngram`), same runner;
- `draft_model`: a second runner with the draft model loaded beside the model.
Every contender must produce the same tokens (`identical_output`): speculation only buys speed.
Decode tok/s counts tokens after the first over the time since the first, as bench_engine does.
The defaults are the tests/fixtures bench models: the "bench" preset (246M random llama, F16)
as the model and its Q8_0 twin ("bench-q8", the same weights, same vocabulary) as the draft —
random weights have no smaller model that predicts them, so the draft is the same network,
cheaper; a real pair (e.g. a 0.5B draft for a 7B model) costs the draft far less.
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

from server.runner.client import CompletionRequest, LoadOptions, RunnerClient  # noqa: E402
from server.runner.cpu import physical_cores  # noqa: E402

TEXT = (
    "The quarterly report shows that revenue grew by twelve percent, driven mainly by the new "
    "subscription plan. Costs rose by four percent, most of it in support staff hired for the "
    "launch. The board recommends keeping prices as they are until the end of the year and "
    "reviewing the support budget in the spring."
)
#: An editing task: the answer is the text again with one change, so most of it can be looked up.
PROMPT = f"Rewrite this text, replacing 'twelve' with '12'. Keep everything else as it is.\n\nText: {TEXT}\n\nRewritten: {TEXT}\n\nText: {TEXT}\n\nRewritten:"


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


async def stream(client: RunnerClient, tokens: int, **options: int) -> dict[str, Any]:
    req = CompletionRequest(prompt=PROMPT, temperature=0.0, num_predict=tokens, **options)  # type: ignore[arg-type]
    start = time.perf_counter()
    first = last = 0.0
    final = None
    async for chunk in client.completion(req):
        now = time.perf_counter()
        if chunk.content and not first:
            first = now
        last = now
        if chunk.done:
            final = chunk
    assert final is not None
    count = final.eval_count
    return {
        "tokens": count,
        "decode_tok_s": (count - 1) / (last - first) if last > first else 0.0,
        "wall_s": last - start,
        "draft_count": final.draft_count,
        "draft_accepted_count": final.draft_accepted_count,
        "acceptance": round(final.draft_accepted_count / final.draft_count, 3) if final.draft_count else None,
        "context": final.context,
    }


def default_models() -> tuple[Path, Path]:
    from tests.fixtures.gguf_models import cached_model

    return cached_model("bench"), cached_model("bench-q8")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    model, draft = default_models() if not (args.model and args.draft) else (Path(args.model), Path(args.draft))
    threads = args.threads or physical_cores()
    log = logging.getLogger("bench")
    base = dict(num_ctx=args.ctx, num_parallel=1, num_thread=threads)
    plain_runner = await RunnerClient.start(LoadOptions(str(model), **base), load_timeout=300, log=log)  # type: ignore[arg-type]
    draft_runner = await RunnerClient.start(
        LoadOptions(str(model), draft_path=str(draft), **base),  # type: ignore[arg-type]
        load_timeout=300,
        log=log,
    )
    contenders = {
        "plain": (plain_runner, {"draft_num_predict": 0}),
        "ngram": (plain_runner, {"draft_ngram": args.ngram}),
        "draft_model": (draft_runner, {"draft_num_predict": args.draft_tokens}),
    }
    rounds: list[dict[str, Any]] = []
    contexts: set[tuple[int, ...]] = set()
    try:
        for runner, options in contenders.values():  # warm-up: page the weights in, cache the prompt
            await stream(runner, 8, **options)
        names = list(contenders)
        for i in range(args.rounds):
            row: dict[str, Any] = {"round": i}
            for name in names[i % 3 :] + names[: i % 3]:
                runner, options = contenders[name]
                result = await stream(runner, args.tokens, **options)
                contexts.add(tuple(result.pop("context") or ()))
                row[name] = result
            rounds.append(row)
            print(
                f"round {i}: "
                + ", ".join(
                    f"{n} {row[n]['decode_tok_s']:.1f} tok/s"
                    + (f" (accepted {row[n]['acceptance']})" if row[n]["acceptance"] is not None else "")
                    for n in names
                ),
                file=sys.stderr,
            )
    finally:
        await plain_runner.close()
        await draft_runner.close()

    def summary(name: str) -> dict[str, Any]:
        rates = [r[name]["decode_tok_s"] for r in rounds]
        speedups = [r[name]["decode_tok_s"] / r["plain"]["decode_tok_s"] for r in rounds if r["plain"]["decode_tok_s"]]
        drafted = sum(r[name]["draft_count"] for r in rounds)
        accepted = sum(r[name]["draft_accepted_count"] for r in rounds)
        return {
            "decode_tok_s_median": _median(rates),
            "speedup_over_plain_median": round(statistics.median(speedups), 3) if speedups else None,
            "drafted": drafted,
            "accepted": accepted,
            "acceptance_rate": round(accepted / drafted, 3) if drafted else None,
        }

    return {
        "benchmark": "speculative",
        "task": "edit a given text (the answer repeats the prompt's text)",
        "model": str(model),
        "draft": str(draft),
        "machine": {"cpu_count": os.cpu_count(), "threads": threads, "platform": platform.platform()},
        "tokens_per_request": args.tokens,
        "rounds": args.rounds,
        "ngram": args.ngram,
        "draft_tokens": args.draft_tokens,
        "identical_output": len(contexts) == 1,
        "plain": summary("plain"),
        "ngram_lookup": summary("ngram"),
        "draft_model": summary("draft_model"),
        "raw": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: the bench preset); give --draft with it")
    parser.add_argument("--draft", help="draft GGUF with the model's vocabulary (default: bench-q8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=3, help="draft_ngram for prompt lookup")
    parser.add_argument("--draft-tokens", type=int, default=4, help="draft_num_predict for the draft model")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--ctx", type=int, default=1024, help="context per request")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    return 0 if result["identical_output"] else 1


if __name__ == "__main__":
    sys.exit(main())
