"""What `/metrics` costs single-stream decoding: scraped every second vs not scraped.

    python benchmarks/bench_metrics.py [--rounds 8] [--tokens 512] [--model small] [--scrape-every 1.0]

Starts a real `pollama serve` with a test fixture model and streams the same greedy
generation (`POST /api/generate`, NDJSON) again and again, alternating A, B, A, B… in
one run so the machine's drift hits both equally (shared/reference/benchmarking.md):
A with nobody scraping, B with a client scraping `/metrics` every `--scrape-every`
seconds for the whole generation. The decode rate of each run is timed on the client
from the first token chunk to the last. Prints one JSON object with the medians and
the ratio B/A (the target: at least 0.99, i.e. < 1 % cost).

Counting itself is always on (per request, from the final chunk), so a second, steadier
figure isolates it: in-process, a scripted stream of N chunks is iterated bare and
through the metered inference wrapper (`server.metrics.MeteredInference`), giving the
wrapper's cost per chunk in microseconds, and from it the ratio it implies at the
measured decode rate. On a loaded shared machine the live ratio is noisy; write the
figure down with the conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.gguf_models import cached_model  # noqa: E402
from tests.support.live_server import LiveServer  # noqa: E402


def create(client: httpx.Client, name: str, path: Path) -> None:
    import hashlib

    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    if client.head(f"/api/blobs/{digest}").status_code != 200:
        client.post(f"/api/blobs/{digest}", content=path.read_bytes()).raise_for_status()
    client.post(
        "/api/create", json={"model": name, "files": {"model.gguf": digest}, "stream": False}
    ).raise_for_status()


def generation(client: httpx.Client, model: str, tokens: int) -> dict[str, float]:
    body = {
        "model": model,
        "prompt": "Once upon a time",
        "raw": True,
        "stream": True,
        "options": {"temperature": 0, "seed": 1, "num_predict": tokens},
    }
    first = last = 0.0
    final: dict[str, Any] = {}
    with client.stream("POST", "/api/generate", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line:
                continue
            if '"done":true' in line:
                final = json.loads(line)
                continue
            now = time.perf_counter()
            first = first or now
            last = now
    count = int(final["eval_count"])
    return {
        "tokens": count,
        "decode_tok_s": (count - 1) / (last - first) if last > first else 0.0,
        "server_decode_tok_s": count / (final["eval_duration"] / 1e9),
    }


class Scraper:
    """Scrapes `/metrics` every `every` seconds while running; counts the scrapes."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every = url, every
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Scraper:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30, trust_env=False) as client:
            while not self._stop.is_set():
                r = client.get("/metrics")
                r.raise_for_status()
                self.scrapes += 1
                self._stop.wait(self.every)


def live(model_path: Path, tokens: int, rounds: int, every: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "models", env={"OLLAMA_KEEP_ALIVE": "-1"}).start()
        try:
            with httpx.Client(base_url=server.url, timeout=600, trust_env=False) as client:
                create(client, "bench", model_path)
                for _ in range(2):  # load the runner, fill the prompt cache
                    generation(client, "bench", tokens)
                bare: list[dict[str, float]] = []
                scraped: list[dict[str, float]] = []
                scrapes = 0
                for i in range(rounds):
                    for which in ("bare", "scraped") if i % 2 == 0 else ("scraped", "bare"):
                        if which == "bare":
                            bare.append(generation(client, "bench", tokens))
                        else:
                            with Scraper(server.url, every) as scraper:
                                scraped.append(generation(client, "bench", tokens))
                            scrapes += scraper.scrapes
                assert all(r["tokens"] == tokens for r in bare + scraped), "every run must generate as many tokens"
        finally:
            server.stop()

    def med(rs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    out: dict[str, Any] = {"tokens_per_run": tokens, "rounds": rounds, "scrape_every_s": every, "scrapes": scrapes}
    for key in ("decode_tok_s", "server_decode_tok_s"):
        a, b = med(bare, key), med(scraped, key)
        out[key] = {"not_scraped": round(a, 1), "scraped": round(b, 1), "ratio_scraped_over_not": round(b / a, 4)}
    return out


def wrapper_cost(chunks: int, rounds: int) -> dict[str, Any]:
    """µs per chunk that `MeteredInference` adds to a stream, in process (no sockets, no runner)."""
    from server.inference.events import Final, Piece, Stats
    from server.metrics import MeteredInference, Metrics

    piece = Piece("abc")
    final = Final(done_reason="stop", stats=Stats(eval_count=chunks, eval_duration=10**9))

    class Scripted:
        async def generate(self, _req: Any) -> Any:
            for _ in range(chunks):
                yield piece
            yield final

    class Req:
        model = "m"

    metered = MeteredInference(Scripted(), Metrics(lambda: None, lambda: 0))

    async def drain(events: Any) -> float:
        t0 = time.perf_counter_ns()
        async for _ in events:
            pass
        return (time.perf_counter_ns() - t0) / 1e3

    async def run() -> tuple[list[float], list[float]]:
        bare, wrapped = [], []
        for _ in range(rounds):
            bare.append(await drain(Scripted().generate(Req())))
            wrapped.append(await drain(metered.generate(Req())))
        return bare, wrapped

    bare, wrapped = asyncio.run(run())
    b, w = statistics.median(bare) / chunks, statistics.median(wrapped) / chunks
    return {
        "chunks": chunks,
        "bare_us_per_chunk": round(b, 3),
        "metered_us_per_chunk": round(w, 3),
        "extra": round(w - b, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--model", default="small", help="a tests/fixtures preset (tiny, small, bench)")
    parser.add_argument("--scrape-every", type=float, default=1.0)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "metrics",
        "model": args.model,
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    result["live"] = live(cached_model(args.model), args.tokens, args.rounds, args.scrape_every)
    cost = wrapper_cost(2000, 21)
    per_token_us = 1e6 / result["live"]["decode_tok_s"]["not_scraped"]
    cost["ratio_implied_at_measured_decode"] = round(per_token_us / (per_token_us + max(0.0, cost["extra"])), 5)
    result["counting"] = cost
    result["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
