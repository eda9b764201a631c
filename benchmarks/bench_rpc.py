"""Decode speed through two loopback RPC workers against the same model run locally, JSON out.

    python benchmarks/bench_rpc.py [--rounds 5] [--tokens 64] [--model PATH]

Uses the RPC-enabled llama.cpp the worker tests build once (tests/support/
rpc_build.py). One server, two `pollama worker` processes on loopback; each
round generates greedily with the model split across the workers
(`num_gpu` -1) and then with every layer local (`num_gpu` 0, a reload),
alternating which goes first. Bytes moved per token are the bytes sent and
received on the workers' TCP connections (`ss -ti`) over the tokens of the
split run.
On one machine the workers share its cores with the server, so this measures
the protocol's overhead, not the gain of adding machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.live_server import REPO, LiveServer, free_port  # noqa: E402

PROMPT = "Once upon a time, in a land far away, there lived"


def worker_traffic(ports: set[int]) -> int:
    """Bytes sent plus received on the workers' established TCP connections (`ss -ti`)."""
    out = subprocess.run(["ss", "-tinH", "state", "established"], capture_output=True, text=True).stdout
    total, counting = 0, False
    for line in out.splitlines():
        if not line.startswith(("\t", " ")):
            local = line.split()[2] if len(line.split()) > 2 else ""
            counting = local.rpartition(":")[2].isdigit() and int(local.rpartition(":")[2]) in ports
            continue
        if counting:
            for field in line.split():
                if field.startswith(("bytes_sent:", "bytes_received:")):
                    total += int(field.split(":")[1])
    return total


def start_worker(python: str) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    port = free_port()
    command = [python, "-m", "app", "worker", "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("worker did not start")


def generate(url: str, tokens: int, num_gpu: int) -> tuple[float, int]:
    """(decode tok/s from the server's eval_duration, tokens)."""
    options = {"temperature": 0, "seed": 1, "num_predict": tokens, "num_gpu": num_gpu}
    body = {"model": "bench", "prompt": PROMPT, "raw": True, "stream": False, "options": options}
    final = httpx.post(url + "/api/generate", json=body, timeout=900).json()
    return final["eval_count"] / (final["eval_duration"] / 1e9), int(final["eval_count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    from tests.support.rpc_build import rpc_python

    python = str(rpc_python())
    if args.model is None:
        from tests.fixtures.gguf_models import cached_model

        args.model = cached_model("bench")
    workers = [start_worker(python) for _ in range(2)]
    ports = {int(w[1].rpartition(":")[2]) for w in workers}
    split_speeds, local_speeds, per_token = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"POLLAMA_RPC_WORKERS": ",".join(w[1] for w in workers), "OLLAMA_KEEP_ALIVE": "-1"}
        server = LiveServer(Path(tmp) / "models", env=env, command=[python, "-m", "app", "serve"]).start(timeout=60)
        try:
            import ollama

            client = ollama.Client(host=server.url)
            client.create(model="bench", files={"m.gguf": client.create_blob(args.model)}, template="{{ .Prompt }}")
            for round_no in range(args.rounds):
                order = (-1, 0) if round_no % 2 == 0 else (0, -1)
                for num_gpu in order:
                    generate(server.url, 4, num_gpu)  # (re)load on this placement, warm
                    before = worker_traffic(ports)
                    speed, count = generate(server.url, args.tokens, num_gpu)
                    moved = worker_traffic(ports) - before
                    if num_gpu == -1:
                        split_speeds.append(speed)
                        per_token.append(moved / max(count, 1))
                    else:
                        local_speeds.append(speed)
                print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            server.stop()
            for proc, _ in workers:
                proc.kill()
    results = {
        "benchmark": "rpc",
        "model": args.model.name,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "two_loopback_workers_decode_tok_s": round(statistics.median(split_speeds), 1),
        "local_decode_tok_s": round(statistics.median(local_speeds), 1),
        "ratio_median_of_rounds": round(
            statistics.median(s / loc for s, loc in zip(split_speeds, local_speeds, strict=True)), 3
        ),
        "bytes_moved_per_token": round(statistics.median(per_token)),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
