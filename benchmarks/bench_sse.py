"""Per-token cost of the OpenAI SSE stream against the native NDJSON stream.

    python benchmarks/bench_sse.py [--rounds 9] [--tokens 256] [--models tiny,small]

Starts a real `pollama serve` with the test fixtures' random-weight models and
streams the same greedy chat through `POST /api/chat` (NDJSON) and
`POST /v1/chat/completions` (SSE), alternating A, B, A, B… so the machine's
drift hits both equally (see shared/reference/benchmarking.md). Each run is
timed on the client from the request to the last token, and for the decode
rate from the first token chunk to the last one; the server process's own CPU
time per token is read from /proc around each run. Prints one JSON object with
the medians, the SSE/NDJSON tokens-per-second ratio (target ≥ 0.98) and the
server CPU per token on each path.

The tiny model decodes one to three thousand tokens a second, so its ratio is the
worst case: the server's per-chunk work is a large share of each token. With
a model of realistic speed (small, or `bench` with --models bench) the same
overhead is a rounding error.

Live ratios on a shared 2-core machine are noisy, so a second measurement
isolates the HTTP layer: the app in-process with a scripted stand-in for the
inference service (no runner, no sockets) streams N identical chunks through
both routes, giving each route's own cost per chunk in microseconds; that
extra cost at each model's measured native decode rate gives
`ratio_implied_by_http_layer`, the figure that is stable from run to run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.gguf_models import cached_model  # noqa: E402
from tests.support.live_server import LiveServer  # noqa: E402

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
MESSAGES = [{"role": "user", "content": "Tell me a long story."}]


def create(client: httpx.Client, name: str, path: Path) -> None:
    import hashlib

    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    if client.head(f"/api/blobs/{digest}").status_code != 200:
        client.post(f"/api/blobs/{digest}", content=path.read_bytes()).raise_for_status()
    client.post(
        "/api/create", json={"model": name, "files": {"model.gguf": digest}, "template": CHATML, "stream": False}
    ).raise_for_status()


def server_cpu_ns(pid: int | None) -> int:
    """CPU time of the server process (all its threads; not its runners), in ns, from /proc.

    Wall-clock rates on a shared machine swing by 2× between runs; the CPU the
    server itself spends per token is what the SSE path adds to, and it is
    barely touched by other load.
    """
    if pid is None:
        return 0
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def native_run(client: httpx.Client, model: str, tokens: int) -> dict[str, float]:
    body = {
        "model": model,
        "messages": MESSAGES,
        "stream": True,
        "options": {"temperature": 0, "top_p": 1.0, "seed": 1, "num_predict": tokens},
    }
    t0 = time.perf_counter()
    first = last = 0.0
    final: dict[str, Any] = {}
    with client.stream("POST", "/api/chat", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line:
                continue
            if line.startswith('{"model"') and '"done":true' in line:
                final = json.loads(line)
                continue
            now = time.perf_counter()
            first = first or now
            last = now
    return _result(t0, first, last, int(final["eval_count"]))


def sse_run(client: httpx.Client, model: str, tokens: int) -> dict[str, float]:
    body = {
        "model": model,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "top_p": 1.0,
        "seed": 1,
        "max_tokens": tokens,
    }
    t0 = time.perf_counter()
    first = last = 0.0
    usage: dict[str, Any] = {}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if '"choices":[]' in line:
                usage = json.loads(line[6:])["usage"]
                continue
            if '"finish_reason":null' not in line:
                continue  # the finish chunk carries no token
            now = time.perf_counter()
            first = first or now
            last = now
    return _result(t0, first, last, int(usage["completion_tokens"]))


def _result(t0: float, first: float, last: float, count: int) -> dict[str, float]:
    end = time.perf_counter()
    return {
        "tokens": count,
        "tok_s": count / (end - t0),
        "decode_tok_s": (count - 1) / (last - first) if last > first else 0.0,
    }


def bench_model(client: httpx.Client, pid: int | None, model: str, tokens: int, rounds: int) -> dict[str, Any]:
    for _ in range(2):  # load the runner, fill the prompt cache, warm both paths
        native_run(client, model, tokens)
        sse_run(client, model, tokens)
    native: list[dict[str, float]] = []
    sse: list[dict[str, float]] = []
    for i in range(rounds):
        pair = [(native, native_run), (sse, sse_run)]
        for results, run in pair if i % 2 == 0 else reversed(pair):
            cpu0 = server_cpu_ns(pid)
            result = run(client, model, tokens)
            result["server_cpu_us_per_token"] = (server_cpu_ns(pid) - cpu0) / 1e3 / tokens
            results.append(result)
    assert all(r["tokens"] == tokens for r in native + sse), "every run must generate the same number of tokens"

    def med(rs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    out: dict[str, Any] = {"tokens_per_run": tokens, "rounds": rounds}
    for key in ("tok_s", "decode_tok_s"):
        n, s = med(native, key), med(sse, key)
        out[key] = {"native_ndjson": round(n, 1), "openai_sse": round(s, 1), "ratio_sse_over_native": round(s / n, 4)}
    n, s = med(native, "server_cpu_us_per_token"), med(sse, "server_cpu_us_per_token")
    out["server_cpu_us_per_token"] = {"native_ndjson": round(n, 1), "openai_sse": round(s, 1), "extra": round(s - n, 1)}
    return out


def implied_ratio(native_decode_tok_s: float, extra_us_per_token: float) -> float:
    """tok/s ratio if every token cost `extra_us_per_token` more than at the native rate."""
    per_token_us = 1e6 / native_decode_tok_s
    return round(per_token_us / (per_token_us + extra_us_per_token), 4)


def http_layer_cost(chunks: int, rounds: int) -> dict[str, Any]:
    """µs per chunk spent by each route's own code (handler, translation, framing, Quart)."""
    import asyncio
    import os

    async def run() -> dict[str, list[float]]:
        from server.app import build_services, create_app
        from server.config import load_config
        from server.inference.events import Final, Piece, Stats

        class Scripted:
            async def _events(self) -> Any:
                piece = Piece("abc")
                for _ in range(chunks):
                    yield piece
                yield Final(done_reason="length", stats=Stats(prompt_eval_count=5, eval_count=chunks))

            def chat(self, req: Any, *, strict_think: bool = True) -> Any:
                return self._events()

        config = load_config(settings={})
        app = create_app(config, services=build_services(config, inference=Scripted()))
        times: dict[str, list[float]] = {"native_ndjson": [], "openai_sse": []}
        routes = [("native_ndjson", "/api/chat", {}), ("openai_sse", "/v1/chat/completions", {"stream": True})]
        async with app.test_app() as test_app:
            client = test_app.test_client()
            for i in range(rounds + 1):
                for name, path, extra in routes if i % 2 == 0 else reversed(routes):
                    t0 = time.perf_counter()
                    r = await client.post(path, json={"model": "m", "messages": MESSAGES, **extra})
                    await r.get_data()
                    if i:  # the first round warms up
                        times[name].append((time.perf_counter() - t0) / chunks * 1e6)
        return times

    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("OLLAMA_MODELS")
        os.environ["OLLAMA_MODELS"] = tmp
        try:
            times = asyncio.run(run())
        finally:
            if old is None:
                os.environ.pop("OLLAMA_MODELS", None)
            else:
                os.environ["OLLAMA_MODELS"] = old
    out = {name: round(statistics.median(v), 2) for name, v in times.items()}
    return {
        "chunks": chunks,
        "us_per_chunk": out,
        "extra_us_per_chunk": round(out["openai_sse"] - out["native_ndjson"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--models", default="tiny,small", help="comma-separated fixture presets: tiny, small, bench")
    args = parser.parse_args()
    presets = [p.strip() for p in args.models.split(",") if p.strip()]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "models", env={"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_KEEP_ALIVE": "10m"}).start()
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                for preset in presets:
                    create(client, f"bench-{preset}", cached_model(preset))
                    pid = server.proc.pid if server.proc is not None else None
                    results[preset] = bench_model(client, pid, f"bench-{preset}", args.tokens, args.rounds)
        finally:
            server.stop()
    layer = http_layer_cost(20000, args.rounds)
    for result in results.values():
        # The HTTP layer's extra cost per chunk, measured without noise, at this model's speed.
        result["ratio_implied_by_http_layer"] = implied_ratio(
            result["decode_tok_s"]["native_ndjson"], layer["extra_us_per_chunk"]
        )
    print(
        json.dumps(
            {
                "benchmark": "sse_vs_ndjson",
                "target_ratio": 0.98,
                "models": results,
                "http_layer_scripted_service": layer,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
