"""pollama against llama.cpp's own `llama-server`, in the same run, one command, JSON out.

    python benchmarks/bench_peer.py [--rounds 5] [--tokens 128] [--streams 1,2,4,8,16] [--model PATH]
                                    [--threads N]

`llama-server` is the peer users compare against (Ollama itself now runs it as
its runner). It is built once from the pinned llama-cpp-python sdist's vendored
llama.cpp — the same C++ pollama calls — with the same `-march=native` the
installed llama-cpp-python wheel has, and cached in the user's cache folder
(`peers/llama-server-<version>-<flags digest>/`).

Both servers get the same decode threads (`--threads`, default every CPU:
`num_thread` for pollama, `-t`/`-tb` for llama-server), the same slots:
`--streams` max slots of 4096 tokens each (`OLLAMA_NUM_PARALLEL` and
per-request `num_ctx` 4096 for pollama, `-np` and `-c` slots×4096 for
llama-server), greedy sampling with no repeat penalty, raw prompts (no
template), distinct prompts per stream so neither can share a prefix. Rounds alternate which server goes first (the
machine's speed drifts; see shared/reference/benchmarking.md). Per stream
count: aggregate tok/s (all tokens ÷ wall time of the burst) and the median
time to first token; then a prompt-heavy mix: 4 streams decoding while two
1,500-token prompts arrive, reporting the decoders' aggregate and the heavy
prompts' time to first token. Ratios are pollama ÷ llama-server per round,
then the median.

Where the time goes: around every burst the CPU time (utime + stime from
`/proc/<pid>/stat`) of each process of the pipeline is read before and after,
the benchmark client included (it is the same asyncio/httpx client for both
servers), with the runner's involuntary context switches (a ggml worker that
another runnable process pushed off its core stalls the whole step at the next
barrier). `cpu` in the output gives, per stream count and process, the median
CPU milliseconds per generated token and the cores it kept busy on average
over the burst (CPU seconds ÷ wall seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import platformdirs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "packaging"))

from tests.support.live_server import LiveServer, free_port  # noqa: E402

THREADS = os.cpu_count() or 2
SLOT_CTX = 4096
PROMPT = "Once upon a time, in a land far away, there lived"
FILLER = "The quick brown fox jumps over the lazy dog near the river bank. "
SERVER_FLAGS = (
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_CURL=OFF",
    "-DGGML_NATIVE=ON",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary in the cache (it links libllama-server-impl otherwise)
)


# ----------------------------------------------------------------------------- the peer


def llama_server_binary() -> Path:
    """`llama-server` built from the pinned sdist's vendored llama.cpp, cached after the first build."""
    from llama_wheel import cache_root, pinned_version, sdist

    version = pinned_version()
    digest = hashlib.sha256(" ".join(SERVER_FLAGS).encode()).hexdigest()[:12]
    folder = Path(platformdirs.user_cache_dir("pollama")) / "peers" / f"llama-server-{version}-{digest}"
    binary = folder / "llama-server"
    if binary.is_file():
        return binary
    with build_output_to_stderr():
        source = sdist(version, cache_root())
        build_llama_server(source, version, folder)
    return binary


@contextlib.contextmanager
def build_output_to_stderr() -> Iterator[None]:
    """pip and cmake print to the inherited stdout, which carries this script's JSON: send
    the first run's build output to stderr instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def build_llama_server(source: Path, version: str, folder: Path) -> None:
    print(f"building llama-server {version} once (cached in {folder})", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(source) as tar:
            tar.extractall(tmp, filter="data")
        (top,) = Path(tmp).iterdir()
        llama = top / "vendor" / "llama.cpp"
        build = Path(tmp) / "build"
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        subprocess.run(
            [*nice, "cmake", "-S", str(llama), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *SERVER_FLAGS],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        jobs = str(os.cpu_count() or 2)
        subprocess.run([*nice, "cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], check=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent))
        shutil.copy2(build / "bin" / "llama-server", staging / "llama-server")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)


def start_pollama(models: Path, model: Path, slots: int, env: dict[str, str] | None = None) -> LiveServer:
    """A pollama server on its own store in `models`, with `slots` parallel slots of
    `SLOT_CTX` tokens and *model* created as "bench" (raw prompts); `env` adds settings."""
    import ollama

    settings = {"OLLAMA_NUM_PARALLEL": str(slots), "OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_CONTEXT_LENGTH": str(SLOT_CTX)}
    server = LiveServer(models, env={**settings, **(env or {})}).start()
    try:
        client = ollama.Client(host=server.url)
        blob = client.create_blob(model)
        client.create(model="bench", files={"bench.gguf": blob}, template="{{ .Prompt }}", stream=False)
    except BaseException:
        server.stop()
        raise
    return server


def start_llama_server(
    binary: Path, model: Path, slots: int, *, threads: int = THREADS, no_repack: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    command += ["-np", str(slots), "-c", str(slots * SLOT_CTX), "-t", str(threads), "-tb", str(threads)]
    command += ["-ngl", "0", "--no-warmup"] + (["--no-repack"] if no_repack else [])
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited with {proc.returncode}")
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("llama-server did not become healthy in 180 s")


# ----------------------------------------------------------------------------- one stream, either server


@dataclass(frozen=True)
class Stream:
    tokens: int
    ttft: float  # request sent → first token
    seconds: float  # request sent → last byte


class Contender:
    name: str
    url: str

    def body(self, prompt: str, tokens: int) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def piece(self, line: str) -> tuple[bool, int | None]:
        """(carries a token, final token count when this line is the last)."""
        raise NotImplementedError


class Pollama(Contender):
    name = "pollama"

    def __init__(self, url: str, threads: int = THREADS) -> None:
        self.url = url
        self.threads = threads

    def body(self, prompt: str, tokens: int) -> tuple[str, dict[str, Any]]:
        options = {
            "temperature": 0,
            "num_predict": tokens,
            "num_ctx": SLOT_CTX,
            "repeat_penalty": 1.0,
            "seed": 1,
            "num_thread": self.threads,
        }
        return "/api/generate", {"model": "bench", "prompt": prompt, "raw": True, "options": options}

    def piece(self, line: str) -> tuple[bool, int | None]:
        chunk = json.loads(line)
        if chunk.get("done"):
            return False, int(chunk["eval_count"])
        return bool(chunk.get("response")), None


class LlamaServer(Contender):
    name = "llama-server"

    def __init__(self, url: str) -> None:
        self.url = url

    def body(self, prompt: str, tokens: int) -> tuple[str, dict[str, Any]]:
        return "/completion", {
            "prompt": prompt,
            "n_predict": tokens,
            "temperature": 0,
            "repeat_penalty": 1.0,
            "seed": 1,
            "stream": True,
            "cache_prompt": True,
        }

    def piece(self, line: str) -> tuple[bool, int | None]:
        if not line.startswith("data: "):
            return False, None
        chunk = json.loads(line[6:])
        if chunk.get("stop"):
            return bool(chunk.get("content")), int(chunk.get("tokens_predicted", 0))
        return bool(chunk.get("content")), None


async def stream(client: httpx.AsyncClient, who: Contender, prompt: str, tokens: int) -> Stream:
    path, body = who.body(prompt, tokens)
    started = time.perf_counter()
    first: float | None = None
    count = 0
    async with client.stream("POST", who.url + path, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line:
                continue
            token, final = who.piece(line)
            if token and first is None:
                first = time.perf_counter()
            if final is not None:
                count = final
    end = time.perf_counter()
    return Stream(count, (first or end) - started, end - started)


@dataclass(frozen=True)
class Burst:
    tokens: int
    wall: float
    ttft: float  # median of the streams

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall


async def burst(who: Contender, streams: int, tokens: int, salt: int) -> Burst:
    """`streams` concurrent generations: all their tokens, the wall time, the median TTFT."""
    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=64)) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(stream(client, who, f"[{salt}-{i}] {PROMPT}", tokens) for i in range(streams)))
        wall = time.perf_counter() - started
    return Burst(sum(r.tokens for r in results), wall, statistics.median(r.ttft for r in results))


# ----------------------------------------------------------------------------- CPU accounting

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from /proc; 0 where it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def context_switches(pid: int, kind: str = "nonvoluntary") -> int:
    """Context switches of all threads of `pid` (/proc/<pid>/task/*/status): "nonvoluntary",
    the scheduler took a CPU from a thread that could still run; "voluntary", a thread went
    to sleep (an OpenMP worker at a barrier, say)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(f"{kind}_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class Sample:
    cpu: dict[str, float]  # role → CPU seconds
    switches: int  # the engine's involuntary context switches


class CpuMeter:
    """The pipeline's processes by role: the benchmark client (this process), and per
    contender its server (and pollama's runner). Deltas around a burst say who spent what."""

    def __init__(self, roles: dict[str, dict[str, list[int]]], engines: dict[str, int]) -> None:
        self.roles = roles  # contender → role → pids
        self.engines = engines  # contender → the pid that runs llama.cpp

    def sample(self, who: str) -> Sample:
        cpu = {role: sum(cpu_seconds(p) for p in pids) for role, pids in self.roles[who].items()}
        times = os.times()
        cpu["client"] = times.user + times.system
        return Sample(cpu, context_switches(self.engines[who]))

    @staticmethod
    def delta(before: Sample, after: Sample, result: Burst) -> dict[str, float]:
        out: dict[str, float] = {}
        for role, seconds in after.cpu.items():
            spent = seconds - before.cpu.get(role, 0.0)
            out[f"{role}_ms_per_token"] = 1000 * spent / max(result.tokens, 1)
            out[f"{role}_cores"] = spent / result.wall
        out["engine_involuntary_switches_per_token"] = (after.switches - before.switches) / max(result.tokens, 1)
        return out


async def prompt_heavy(who: Contender, tokens: int, salt: int) -> tuple[float, float]:
    """4 decoding streams; two ~1,500-token prompts arrive 0.5 s in. (decoders' tok/s, heavy TTFT)."""
    heavy_prompt = FILLER * 110  # ~1,500 tokens with a llama tokenizer
    async with httpx.AsyncClient(timeout=900) as client:
        decoders = [asyncio.create_task(stream(client, who, f"[{salt}-d{i}] {PROMPT}", tokens)) for i in range(4)]
        await asyncio.sleep(0.5)
        heavy = await asyncio.gather(*(stream(client, who, f"[{salt}-h{i}] {heavy_prompt}", 16) for i in range(2)))
        done = await asyncio.gather(*decoders)
        wall = max(r.seconds for r in done)
    return sum(r.tokens for r in done) / wall, statistics.median(r.ttft for r in heavy)


# ----------------------------------------------------------------------------- the run


def ratio(ours: list[float], theirs: list[float]) -> float:
    return round(statistics.median(a / b for a, b in zip(ours, theirs, strict=True)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", default="1,2,4,8,16", help="comma-separated concurrency levels")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--no-mix", action="store_true", help="skip the prompt-heavy mix")
    parser.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="decode threads of both servers (default: every CPU; fewer leaves cores to the servers' own work)",
    )
    parser.add_argument(
        "--peer-no-repack",
        action="store_true",
        help="llama-server with --no-repack: like for like on a CPU with AMX, where pollama's runner"
        " leaves the repacked layouts out (server/runner/cpu_layouts.py)",
    )
    args = parser.parse_args()
    levels = [int(s) for s in args.streams.split(",")]
    slots = max(levels)
    if args.model is None:
        from tests.fixtures.gguf_models import cached_model

        args.model = cached_model("bench")
    binary = llama_server_binary()
    loadavg_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        server = start_pollama(Path(tmp) / "models", args.model, slots)
        peer, peer_url = start_llama_server(
            binary, args.model, slots, threads=args.threads, no_repack=args.peer_no_repack
        )
        try:
            contenders: list[Contender] = [Pollama(server.url, args.threads), LlamaServer(peer_url)]
            for who in contenders:  # load and warm up
                asyncio.run(burst(who, 1, 8, -1))
            assert server.proc is not None
            runners = server.runner_pids()
            meter = CpuMeter(
                {"pollama": {"server": [server.proc.pid], "runner": runners}, "llama-server": {"server": [peer.pid]}},
                {"pollama": runners[0] if runners else server.proc.pid, "llama-server": peer.pid},
            )
            cpu: dict[str, dict[int, list[dict[str, float]]]] = {c.name: {n: [] for n in levels} for c in contenders}

            aggregate: dict[str, dict[int, list[float]]] = {c.name: {n: [] for n in levels} for c in contenders}
            ttft: dict[str, dict[int, list[float]]] = {c.name: {n: [] for n in levels} for c in contenders}
            mix: dict[str, list[tuple[float, float]]] = {c.name: [] for c in contenders}
            for round_no in range(args.rounds):
                order = contenders if round_no % 2 == 0 else contenders[::-1]
                for n in levels:
                    for who in order:
                        before = meter.sample(who.name)
                        result = asyncio.run(burst(who, n, args.tokens, round_no * 100 + n))
                        cpu[who.name][n].append(CpuMeter.delta(before, meter.sample(who.name), result))
                        aggregate[who.name][n].append(result.tok_s)
                        ttft[who.name][n].append(result.ttft)
                if not args.no_mix:
                    for who in order:
                        mix[who.name].append(asyncio.run(prompt_heavy(who, args.tokens, round_no)))
                print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            peer.terminate()
            peer.wait(timeout=30)
            server.stop()

    ours, theirs = "pollama", "llama-server"
    results: dict[str, Any] = {
        "benchmark": "peer",
        "model": args.model.name,
        "threads": args.threads,
        "tokens": args.tokens,
        "slots": slots,
        "slot_ctx": SLOT_CTX,
        "rounds": args.rounds,
        "peer_no_repack": args.peer_no_repack,
        "streams": {
            str(n): {
                "pollama_tok_s": round(statistics.median(aggregate[ours][n]), 1),
                "llama_server_tok_s": round(statistics.median(aggregate[theirs][n]), 1),
                "ratio_median_of_rounds": ratio(aggregate[ours][n], aggregate[theirs][n]),
                "pollama_ttft_s": round(statistics.median(ttft[ours][n]), 3),
                "llama_server_ttft_s": round(statistics.median(ttft[theirs][n]), 3),
                "target": ">= 0.97" if n == 1 else ">= 1.0",
            }
            for n in levels
        },
    }
    results["cpu"] = {
        name: {
            str(n): {key: round(statistics.median(d[key] for d in cpu[name][n]), 3) for key in cpu[name][n][0]}
            for n in levels
        }
        for name in cpu
    }
    results["loadavg"] = {"start": round(loadavg_start, 2), "end": round(os.getloadavg()[0], 2)}
    if not args.no_mix:
        results["prompt_heavy_mix"] = {
            "pollama_decode_tok_s": round(statistics.median(m[0] for m in mix[ours]), 1),
            "llama_server_decode_tok_s": round(statistics.median(m[0] for m in mix[theirs]), 1),
            "ratio_median_of_rounds": ratio([m[0] for m in mix[ours]], [m[0] for m in mix[theirs]]),
            "pollama_heavy_ttft_s": round(statistics.median(m[1] for m in mix[ours]), 3),
            "llama_server_heavy_ttft_s": round(statistics.median(m[1] for m in mix[theirs]), 3),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
