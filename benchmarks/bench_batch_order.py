"""What one decode step costs by where its sequences sit: consecutive slots, the same slots in
another order, or slots with gaps between them. One process, llama.cpp's own call, JSON out.

    python benchmarks/bench_batch_order.py [--rounds 7] [--slots 16] [--threads N] [--model PATH]
                                           [--unified]

Why (issue 22): with one KV stream per sequence (llama.cpp's split cache, `kv_unified`
false, which llama-server also runs with `-np`), `llama_batch_allocr::split_equal` cuts a
batch into micro-batches of consecutive sequence ids, taken in the batch's order, and each
micro-batch is a pass over all the weights. So a step of 8 sequences costs one pass in
slots 0-7 written in order, several when the same slots come in arrival order, and up to 8
in slots 0, 2 … 14. pollama's runner now writes rows in sequence-id order and places new
requests next to the running ones (server/runner/slots.py `place`); this measures what that
is worth, and `--unified` what a unified cache (any order, one pass, attention over every
sequence's cells) costs instead.

Every layout takes turns inside each round (the machine's speed drifts); the figures are
medians of the rounds. Each slot holds a 64-token prompt first, and each step adds one
token per sequence, so all layouts attend over the same lengths.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.child_env import OPENMP_SPIN_COUNT  # noqa: E402
from server.runner.cpu import physical_cores  # noqa: E402

PROMPT_TOKENS = 64


def layouts(slots: int) -> dict[str, list[int]]:
    """Name → sequence ids in batch order."""
    half = slots // 2
    return {
        "1 stream": [0],
        f"{half} in consecutive slots, in order": list(range(half)),
        f"{half} in consecutive slots, arrival order": random.Random(1).sample(range(half), half),
        f"{half} in every other slot, in order": list(range(0, slots, 2))[:half],
        f"{slots} in order": list(range(slots)),
        f"{slots} in arrival order": random.Random(2).sample(range(slots), slots),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="default: physical cores")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--unified", action="store_true", help="one unified KV cache instead of a stream per slot")
    args = parser.parse_args()
    if "OMP_WAIT_POLICY" not in os.environ:  # what a runner gets (server/child_env.py), before libgomp loads
        os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
    from server.runner.backend import Batch, Context, ContextSpec, Model, init_backend  # noqa: PLC0415

    if args.model is None:
        from tests.fixtures.gguf_models import cached_model  # noqa: PLC0415

        args.model = cached_model("bench")
    threads = args.threads or physical_cores()
    init_backend()
    model = Model(str(args.model), n_gpu_layers=0, main_gpu=0, use_mmap=None)
    spec = ContextSpec(
        n_ctx=args.slots * 4096,
        n_seq_max=args.slots,
        n_batch=512,
        n_ubatch=512,
        n_threads=threads,
        kv_unified=args.unified,
    )
    ctx = Context(model, spec)
    batch = Batch(512)
    positions = [0] * args.slots
    for seq in range(args.slots):
        batch.clear()
        for i in range(PROMPT_TOKENS):
            batch.add(1 + (i * 7 + seq) % 1000, i, seq, i == PROMPT_TOKENS - 1)
        if ctx.decode(batch) != 0:
            raise SystemExit("prompt decode failed")
        positions[seq] = PROMPT_TOKENS

    def step(order: list[int]) -> float:
        batch.clear()
        for seq in order:
            batch.add(5, positions[seq], seq, True)
            positions[seq] += 1
        started = time.perf_counter()
        if ctx.decode(batch) != 0:
            raise SystemExit("decode failed")
        return time.perf_counter() - started

    shapes = layouts(args.slots)
    times: dict[str, list[float]] = {name: [] for name in shapes}
    loadavg_start = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, order in shapes.items():
            times[name].append(step(order))
    first = f"{args.slots // 2} in consecutive slots, in order"
    base = statistics.median(times[first])
    result = {
        "benchmark": "batch_order",
        "model": args.model.name,
        "threads": threads,
        "slots": args.slots,
        "kv_unified": args.unified,
        "rounds": args.rounds,
        "layouts": {
            name: {
                "sequence_ids": shapes[name],
                "ms_per_step": round(statistics.median(times[name]) * 1000, 1),
                "ms_per_token": round(statistics.median(times[name]) * 1000 / len(shapes[name]), 2),
                "step_over_consecutive_in_order": round(statistics.median(times[name]) / base, 2)
                if len(shapes[name]) == len(shapes[first])
                else None,
            }
            for name in shapes
        },
        "loadavg": {"start": round(loadavg_start, 2), "end": round(os.getloadavg()[0], 2)},
    }
    ctx.close()
    model.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
