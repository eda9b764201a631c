"""The runner's OpenMP spin count against others, in the same run, idle or beside CPU hogs.

    python benchmarks/bench_spin.py [--spins 1000,3000,300000] [--rounds 4] [--streams 1,4]
                                    [--tokens 96] [--hogs 0]

Every graph node of a decode ends in an OpenMP barrier, and `GOMP_SPINCOUNT` says how
long a waiting thread spins there before it sleeps (`server/child_env.py` gives runners
their default). Too long and a thread whose partner lost its CPU to another program burns
its own slice (libgomp's 300,000); too short and an idle machine pays a wake-up at every
skew. Sequential runs cannot tell counts apart on a VM whose speed drifts between runs,
so this starts one pollama server per spin count, side by side (the bench model, slots
for the widest burst), and lets their bursts take turns, round by round, in alternating
order. `--hogs N` runs N busy-looping processes meanwhile, as a desktop's other programs
would. Per spin count and stream count: median aggregate tok/s, the runner's cores busy
and its voluntary context switches per token (a thread going to sleep at a barrier).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_peer import Pollama, burst, context_switches, cpu_seconds, start_pollama  # noqa: E402

from tests.support.live_server import LiveServer  # noqa: E402


@dataclass(frozen=True)
class Sample:
    tok_s: float
    cores: float
    sleeps_per_token: float


@dataclass(frozen=True)
class Contender:
    spin: str
    server: LiveServer
    client: Pollama
    runner: int

    def sample(self, streams: int, tokens: int, salt: int) -> Sample:
        cpu, sleeps, started = cpu_seconds(self.runner), context_switches(self.runner, "voluntary"), time.perf_counter()
        result = asyncio.run(burst(self.client, streams, tokens, salt))
        wall = time.perf_counter() - started
        return Sample(
            result.tok_s,
            (cpu_seconds(self.runner) - cpu) / wall,
            (context_switches(self.runner, "voluntary") - sleeps) / max(result.tokens, 1),
        )


def start(spin: str, folder: Path, model: Path, slots: int) -> Contender:
    server = start_pollama(folder, model, slots, {"GOMP_SPINCOUNT": spin})
    client = Pollama(server.url, os.cpu_count() or 2)
    asyncio.run(burst(client, 1, 8, -1))  # load and warm up
    return Contender(spin, server, client, server.runner_pids()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spins", default="1000,3000,300000", help="comma-separated GOMP_SPINCOUNT values")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--streams", default="1,4", help="comma-separated concurrency levels")
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--hogs", type=int, default=0, help="busy-looping processes running meanwhile")
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    spins = args.spins.split(",")
    levels = [int(s) for s in args.streams.split(",")]
    if args.model is None:
        from tests.fixtures.gguf_models import cached_model

        args.model = cached_model("bench")

    samples: dict[str, dict[int, list[Sample]]] = {s: {n: [] for n in levels} for s in spins}
    with tempfile.TemporaryDirectory() as tmp:
        contenders: list[Contender] = []
        hogs: list[subprocess.Popen[bytes]] = []
        try:
            for spin in spins:
                contenders.append(start(spin, Path(tmp) / f"models-{spin}", args.model, max(levels)))
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
            loadavg_start = os.getloadavg()[0]
            for round_no in range(args.rounds):
                order = contenders if round_no % 2 == 0 else contenders[::-1]
                for n in levels:
                    for who in order:
                        samples[who.spin][n].append(who.sample(n, args.tokens, round_no * 100 + n))
                print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
            loadavg_end = os.getloadavg()[0]
        finally:
            for hog in hogs:
                hog.kill()
            for who in contenders:
                who.server.stop()

    results = {
        spin: {
            str(n): {
                "tok_s": round(statistics.median(s.tok_s for s in rows), 1),
                "runner_cores": round(statistics.median(s.cores for s in rows), 3),
                "sleeps_per_token": round(statistics.median(s.sleeps_per_token for s in rows), 1),
                "tok_s_by_round": [round(s.tok_s, 1) for s in rows],
            }
            for n, rows in by_level.items()
        }
        for spin, by_level in samples.items()
    }
    out = {
        "benchmark": "spin",
        "model": args.model.name,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "hogs": args.hogs,
        "loadavg": {"start": round(loadavg_start, 2), "end": round(loadavg_end, 2)},
        "spins": results,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
