"""Speculative decoding's speed-up on a repetitive task (editing a given text), with a same-run
baseline without speculation.

    python benchmarks/bench_speculative.py [--rounds 3] [--tokens 128] [--model PATH] [--draft PATH]
                                           [--ngram 3] [--draft-tokens 4] [--threads N] [--step-repeats 7]

Prints one JSON object. Three contenders alternate inside each round (reference/benchmarking.md:
this machine's speed drifts, so medians of same-run ratios are reported):
- `plain`: the runner with speculation off (`draft_num_predict` 0);
- `ngram`: prompt lookup (`draft_ngram`), same runner;
- `draft_model`: a second runner with the draft model loaded beside the model.
Each contender's tokens are compared with plain's in the same round (`first_difference`, the
position where they part, None when equal; `identical_output` over all). They are equal where a
multi-row decode gives a row the logits a one-row decode gives it; llama.cpp's CPU kernels for
F16 and quantized weights differ in the last digits between the two (bench: up to 0.008 in a
logit), so greedy output may part at a near-tie, as a stream batched with others may.
Decode tok/s counts tokens after the first over the time since the first (benchmarks/timing.py).

Why a speed-up is what it is: after the rounds, with the runners gone, `step_costs` times
decodes of 1, 2, 5 and 9 rows on the model (verifying 0, 1, 4, 8 drafts) and one-row decodes
on the draft model, in this process; each contender's summary gives tokens and drafts per
decode (from its counts) and the speed-up those costs predict (`expected_speedup`).
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

import numpy as np  # noqa: E402

from benchmarks.timing import timed_completion  # noqa: E402
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
    timing = await timed_completion(client, req)
    final = timing.final
    return {
        **timing.figures(),
        "draft_count": final.draft_count,
        "draft_accepted_count": final.draft_accepted_count,
        "acceptance": round(final.draft_accepted_count / final.draft_count, 3) if final.draft_count else None,
        "context": final.context,
    }


#: Rows per decode whose cost `step_costs` measures: one token, and one with 1, 4 and 8 drafts.
STEP_WIDTHS = (1, 2, 5, 9)


def first_difference(plain: list[int], other: list[int]) -> int | None:
    """Where two token sequences (prompt and output) first differ; None when equal."""
    for i, (a, b) in enumerate(zip(plain, other, strict=False)):
        if a != b:
            return i
    return None if len(plain) == len(other) else min(len(plain), len(other))


def expected_speedup(
    tokens_per_decode: float, drafted_per_decode: float, costs: dict[str, Any], *, draft_model: bool
) -> float:
    """The speed-up the step costs predict for a contender's measured counts: tokens per
    decode over what a decode with that many drafts costs (verify rows interpolated between
    the measured widths, plus a draft-model decode per drafted token), in one-row decodes."""
    widths = sorted(int(w) for w in costs["verify_cost_over_one_row"])
    ratios = [costs["verify_cost_over_one_row"][w] for w in widths]
    rows = 1 + drafted_per_decode
    verify = float(np.interp(rows, widths, ratios))
    cost = verify + (drafted_per_decode * costs["draft_token_cost_over_one_row"] if draft_model else 0.0)
    return round(tokens_per_decode / cost, 3)


def step_costs(model: Path, draft: Path, threads: int, repeats: int, widths: tuple[int, ...]) -> dict[str, Any]:
    """What a speculative step costs, measured in this process after the runners are gone:
    seconds per decode of w rows after the prompt on the model (verifying w - 1 drafts),
    and per one-row decode on the draft model (one drafted token), widths taking turns.

    A step that verifies k drafts and keeps a of them emits a + 1 tokens for
    cost(k + 1) + k × draft_cost (the draft term only with a draft model), against
    a + 1 plain steps of cost(1): that ratio is the speed-up to expect."""
    from server.runner.backend import Batch, Context, ContextSpec, Model, init_backend

    init_backend()
    out: dict[str, Any] = {}
    for name, path, sizes in (("model", model, widths), ("draft", draft, (1,))):
        weights = Model(str(path), n_gpu_layers=0, main_gpu=0, use_mmap=None)
        ctx = Context(weights, ContextSpec(n_ctx=1024, n_seq_max=1, n_batch=512, n_ubatch=512, n_threads=threads))
        batch = Batch(512)
        prompt = weights.tokenize(PROMPT, add_special=True, parse_special=True)
        batch.clear()
        for i, token in enumerate(prompt):
            batch.add(token, i, 0, i == len(prompt) - 1)
        ctx.decode(batch)
        times: dict[int, list[float]] = {w: [] for w in sizes}
        for r in range(repeats):
            for w in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
                batch.clear()
                for j in range(w):
                    batch.add(prompt[-w + j], len(prompt) + j, 0, True)
                start = time.perf_counter()
                ctx.decode(batch)
                times[w].append(time.perf_counter() - start)
                ctx.seq_rm(0, len(prompt), -1)
        batch.close()
        ctx.close()
        weights.close()
        out[name] = {f"rows_{w}_ms": round(1000 * statistics.median(t), 2) for w, t in times.items()}
    one = out["model"]["rows_1_ms"]
    out["verify_cost_over_one_row"] = {w: round(out["model"][f"rows_{w}_ms"] / one, 3) for w in widths}
    out["draft_token_cost_over_one_row"] = round(out["draft"]["rows_1_ms"] / one, 3)
    return out


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
    loadavg_start = Path("/proc/loadavg").read_text().split()[:3]
    try:
        for runner, options in contenders.values():  # warm-up: page the weights in, cache the prompt
            await stream(runner, 8, **options)
        names = list(contenders)
        for i in range(args.rounds):
            row: dict[str, Any] = {"round": i}
            contexts: dict[str, list[int]] = {}
            for name in names[i % 3 :] + names[: i % 3]:
                runner, options = contenders[name]
                result = await stream(runner, args.tokens, **options)
                contexts[name] = list(result.pop("context") or ())
                row[name] = result
            for name in names[1:]:
                row[name]["first_difference"] = first_difference(contexts["plain"], contexts[name])
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

    costs = step_costs(model, draft, threads, args.step_repeats, STEP_WIDTHS) if args.step_repeats else None

    def summary(name: str) -> dict[str, Any]:
        rates = [r[name]["decode_tok_s"] for r in rounds]
        speedups = [r[name]["decode_tok_s"] / r["plain"]["decode_tok_s"] for r in rounds if r["plain"]["decode_tok_s"]]
        tokens = sum(r[name]["tokens"] for r in rounds)
        drafted = sum(r[name]["draft_count"] for r in rounds)
        accepted = sum(r[name]["draft_accepted_count"] for r in rounds)
        steps = tokens - accepted  # each decode emits its accepted drafts and one token of its own
        out = {
            "decode_tok_s_median": _median(rates),
            "speedup_over_plain_median": round(statistics.median(speedups), 3) if speedups else None,
            "drafted": drafted,
            "accepted": accepted,
            "acceptance_rate": round(accepted / drafted, 3) if drafted else None,
            "tokens_per_decode": round(tokens / steps, 3) if steps else None,
            "drafted_per_decode": round(drafted / steps, 3) if steps else None,
            "same_tokens_as_plain": all(r[name].get("first_difference") is None for r in rounds),
        }
        if costs is not None and steps and name != "plain":
            out["speedup_expected_from_step_costs"] = expected_speedup(
                tokens / steps, drafted / steps, costs, draft_model=name == "draft_model"
            )
        return out

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
        "loadavg_start": loadavg_start,
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        "identical_output": all(r[n].get("first_difference") is None for r in rounds for n in names[1:]),
        "plain": summary("plain"),
        "ngram_lookup": summary("ngram"),
        "draft_model": summary("draft_model"),
        "step_costs": costs,
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
    parser.add_argument("--step-repeats", type=int, default=7, help="decodes per width for step_costs (0: skip)")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
