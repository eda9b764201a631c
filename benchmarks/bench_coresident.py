"""Does a second process holding the same model slow a runner down? Decode rounds of one
runner alone, beside a holder process, and alone again, with what the kernel says per round.

    python benchmarks/bench_coresident.py [--rounds 4] [--tokens 96] [--streams 4] [--model PATH]
                                          [--modes auto,no-mmap] [--holder-mmap 1] [--holder-tokens 32]
                                          [--omp-wait-policy default,passive]

Prints one JSON object. The clue (issue 22): pollama's 4-stream aggregate fell 98 → 74 → 53
tok/s over three rounds while `llama_cpp.server` held a copy of the same model, and was not
explained. The suspects, and what each round records to tell them apart:
- page faults on memory-mapped weights (this VM runs DAMON reclaim, `kdamond`, and a
  balloon with free page reporting, server/host_reclaim.py): the runner's minor and major
  faults (`/proc/<pid>/stat` fields 10 and 12), its RSS split into file and anonymous
  pages, and the system's file refaults (`workingset_refault_file` in /proc/vmstat);
- the load mode: each `--modes` entry is a runner of its own (`auto`: llama.cpp's default,
  mmap on a CPU; `mmap`; `no-mmap`: weights read into anonymous memory, as Ollama's
  llm/server.go `NewLlamaServer` chooses for CPU loads);
- CPU contention and thread placement: the runner's threads' time on a CPU and waiting for
  one (`/proc/<pid>/task/*/schedstat`), involuntary context switches, the CPUs its threads
  last ran on, the VM's steal time (/proc/stat) and the load average; `--omp-wait-policy`
  runs everything again per OpenMP wait policy or spin count (`spin=300000` is libgomp's
  own default, which runners no longer get: server/child_env.py);
- memory bandwidth: the holder decodes `--holder-tokens` between rounds (as the peer did in
  bench_inference.py), so its weights stream through the same caches; 0 keeps it idle.
Phases per mode: `alone`, `beside` (holder loaded; its load time is not in any round),
`after` (holder gone). Same-run comparisons only: `beside_over_alone` is the median of the
beside rounds over the median of the alone rounds. On a shared machine the wall-clock rate
follows the other processes; `tok_per_cpu_s_median` (tokens over the runner's on-CPU time)
is what the work itself costs, and `runqueue_wait_s_median` what the others cost it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import timed_completion  # noqa: E402
from server.runner.client import CompletionRequest, LoadOptions, RunnerClient  # noqa: E402
from server.runner.cpu import physical_cores  # noqa: E402

PROMPTS = [
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "The history of the printing press begins in the fifteenth century, when",
    "To make a good cup of coffee, first you need to",
    "The three most important ideas in computer science are",
]

#: The second process: llama-cpp-python holding the model (mmap'd unless told), decoding on
#: request from its own single thread, as `llama_cpp.server` does.
HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from llama_cpp import Llama
    llm = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), use_mmap=sys.argv[3] == "1", verbose=False)
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter()
        out = llm.create_completion("The weather today is", max_tokens=n, temperature=0.0, repeat_penalty=1.0)
        llm.reset()
        print(json.dumps({"tokens": out["usage"]["completion_tokens"], "s": time.perf_counter() - t0}), flush=True)
    """
)

MODES: dict[str, bool | None] = {"auto": None, "mmap": True, "no-mmap": False}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


def proc_stat(pid: int) -> dict[str, int]:
    """Faults and CPU ticks of the whole process (`man 5 proc`: fields 10, 12, 14, 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces; field 3 follows ")"
    return {"minflt": int(fields[7]), "majflt": int(fields[9]), "ticks": int(fields[11]) + int(fields[12])}


def proc_memory(pid: int) -> dict[str, int]:
    """Resident memory in KiB: all of it, anonymous, and file-backed (mapped weights)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def threads(pid: int) -> dict[str, Any]:
    """Over the process's threads: ns on a CPU and ns runnable but waiting (schedstat),
    involuntary switches, and the CPUs they last ran on (stat field 39)."""
    run = wait = switches = 0
    cpus: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            on_cpu, waiting, _ = (int(x) for x in (task / "schedstat").read_text().split())
            stat = (task / "stat").read_text()
            status = (task / "status").read_text()
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        run += on_cpu
        wait += waiting
        cpus.append(int(stat[stat.rindex(")") + 2 :].split()[36]))
        for line in status.splitlines():
            if line.startswith("nonvoluntary_ctxt_switches:"):
                switches += int(line.split()[1])
    return {"run_ns": run, "wait_ns": wait, "nonvoluntary": switches, "cpus": sorted(cpus)}


def system() -> dict[str, int]:
    """File refaults (pages read again after reclaim) and the VM's steal ticks."""
    out = {}
    for line in Path("/proc/vmstat").read_text().splitlines():
        key, value = line.split()
        if key in ("workingset_refault_file", "pgmajfault"):
            out[key] = int(value)
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()
    out["steal_ticks"] = int(cpu[8])
    return out


def snapshot(pid: int) -> dict[str, Any]:
    return {"stat": proc_stat(pid), "threads": threads(pid), "system": system()}


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    b, a = before, after
    return {
        "minflt": a["stat"]["minflt"] - b["stat"]["minflt"],
        "majflt": a["stat"]["majflt"] - b["stat"]["majflt"],
        "cpu_s": (a["stat"]["ticks"] - b["stat"]["ticks"]) / os.sysconf("SC_CLK_TCK"),
        "on_cpu_s": round((a["threads"]["run_ns"] - b["threads"]["run_ns"]) / 1e9, 3),
        "runqueue_wait_s": round((a["threads"]["wait_ns"] - b["threads"]["wait_ns"]) / 1e9, 3),
        "nonvoluntary_switches": a["threads"]["nonvoluntary"] - b["threads"]["nonvoluntary"],
        "thread_cpus": a["threads"]["cpus"],
        "system_file_refaults": a["system"]["workingset_refault_file"] - b["system"]["workingset_refault_file"],
        "system_majflt": a["system"]["pgmajfault"] - b["system"]["pgmajfault"],
        "steal_s": (a["system"]["steal_ticks"] - b["system"]["steal_ticks"]) / os.sysconf("SC_CLK_TCK"),
    }


class Holder:
    """The co-resident process: loads the model, then decodes on request."""

    def __init__(self, model: Path, n_threads: int, use_mmap: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(model), str(n_threads), "1" if use_mmap else "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the holder process did not load the model")

    def decode(self, tokens: int) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{tokens}\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


async def one_round(client: RunnerClient, streams: int, tokens: int) -> dict[str, Any]:
    before = snapshot(client.pid)
    start = time.perf_counter()
    reqs = [
        CompletionRequest(prompt=PROMPTS[i % len(PROMPTS)], temperature=0.0, num_predict=tokens) for i in range(streams)
    ]
    results = await asyncio.gather(*(timed_completion(client, r) for r in reqs))
    wall = time.perf_counter() - start
    total = sum(r.tokens for r in results)
    return {
        "aggregate_tok_s": round(total / wall, 2),
        "tokens": total,
        "wall_s": round(wall, 3),
        **delta(before, snapshot(client.pid)),
        "rss_kib": proc_memory(client.pid),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


async def measure_mode(mode: str, args: argparse.Namespace, model: Path, threads: int) -> dict[str, Any]:
    log = logging.getLogger("bench")
    options = LoadOptions(
        str(model), num_ctx=args.ctx, num_parallel=args.streams, num_thread=threads, use_mmap=MODES[mode]
    )
    client = await RunnerClient.start(options, load_timeout=300, log=log)
    phases: dict[str, list[dict[str, Any]]] = {"alone": [], "beside": [], "after": []}
    holder_rounds: list[dict[str, Any]] = []
    holder_rss: dict[str, int] = {}
    try:
        await one_round(client, args.streams, 8)  # warm-up: page the weights in
        for _ in range(args.rounds):
            phases["alone"].append(await one_round(client, args.streams, args.tokens))
            print(f"{mode} alone: {phases['alone'][-1]['aggregate_tok_s']} tok/s", file=sys.stderr)
        holder = Holder(model, threads, args.holder_mmap)
        try:
            holder_rss = proc_memory(holder.proc.pid)
            for _ in range(args.rounds):
                if args.holder_tokens:
                    holder_rounds.append(holder.decode(args.holder_tokens))
                phases["beside"].append(await one_round(client, args.streams, args.tokens))
                print(f"{mode} beside: {phases['beside'][-1]['aggregate_tok_s']} tok/s", file=sys.stderr)
            holder_rss = proc_memory(holder.proc.pid)
        finally:
            holder.close()
        for _ in range(args.rounds):
            phases["after"].append(await one_round(client, args.streams, args.tokens))
            print(f"{mode} after: {phases['after'][-1]['aggregate_tok_s']} tok/s", file=sys.stderr)
    finally:
        await client.close()
    medians = {name: _median([r["aggregate_tok_s"] for r in rounds]) for name, rounds in phases.items()}
    return {
        "use_mmap": MODES[mode],
        "aggregate_tok_s_median": medians,
        "beside_over_alone": round(medians["beside"] / medians["alone"], 3) if medians["alone"] else None,
        "after_over_alone": round(medians["after"] / medians["alone"], 3) if medians["alone"] else None,
        # On-CPU time is what the work costs; run-queue wait is what other processes cost it.
        # Tokens per on-CPU second is the rate the runner would have with the CPUs to itself.
        "tok_per_cpu_s_median": {
            name: _median([r["tokens"] / r["on_cpu_s"] for r in rounds if r["on_cpu_s"]])
            for name, rounds in phases.items()
        },
        "runqueue_wait_s_median": {
            name: _median([r["runqueue_wait_s"] for r in rounds]) for name, rounds in phases.items()
        },
        "faults_per_round_median": {
            name: {
                "minflt": statistics.median(r["minflt"] for r in rounds),
                "majflt": statistics.median(r["majflt"] for r in rounds),
            }
            for name, rounds in phases.items()
        },
        "holder_rss_kib": holder_rss,
        "holder_decodes": holder_rounds,
        "rounds": phases,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if args.model:
        model = Path(args.model)
    else:
        from tests.fixtures.gguf_models import cached_model

        model = cached_model("bench")
    threads = args.threads or physical_cores()
    result: dict[str, Any] = {
        "benchmark": "coresident",
        "model": str(model),
        "model_bytes": model.stat().st_size,
        "machine": {"cpu_count": os.cpu_count(), "threads": threads, "platform": platform.platform()},
        "streams": args.streams,
        "tokens_per_stream": args.tokens,
        "rounds_per_phase": args.rounds,
        "holder": {"use_mmap": bool(args.holder_mmap), "tokens_between_rounds": args.holder_tokens},
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "modes": {},
    }
    policies = args.omp_wait_policy.split(",")
    for policy in policies:
        # runners and the holder inherit this process's environment (server/child_env.py)
        os.environ.pop("OMP_WAIT_POLICY", None)
        os.environ.pop("GOMP_SPINCOUNT", None)
        if policy.startswith("spin="):  # libgomp's spin count; "default" leaves child_env's
            os.environ["GOMP_SPINCOUNT"] = policy.removeprefix("spin=")
        elif policy != "default":
            os.environ["OMP_WAIT_POLICY"] = policy
        for mode in args.modes.split(","):
            key = mode if len(policies) == 1 else f"{mode} omp={policy}"
            result["modes"][key] = await measure_mode(mode, args, model, threads)
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF file (default: the bench preset)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per phase")
    parser.add_argument("--tokens", type=int, default=96, help="tokens per stream")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--ctx", type=int, default=512, help="context per stream")
    parser.add_argument("--modes", default="auto,no-mmap", help=f"runner load modes, of {', '.join(MODES)}")
    parser.add_argument("--holder-mmap", type=int, default=1, help="1: the holder maps the model, 0: reads it")
    parser.add_argument("--holder-tokens", type=int, default=32, help="tokens the holder decodes between rounds")
    parser.add_argument(
        "--omp-wait-policy",
        default=os.environ.get("OMP_WAIT_POLICY", "default"),
        help="how OpenMP threads of the runner and the holder wait, comma-separated to compare: default "
        "(the runner: server/child_env.py's spin count), passive, active, spin=N (GOMP_SPINCOUNT)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    print(json.dumps(asyncio.run(main_async(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
