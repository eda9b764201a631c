"""GPU offload report: what `/api/ps` says against what the driver sees, and decode speed
with all, half and none of the layers on the GPU. One command, JSON out.

    python benchmarks/bench_gpu.py [--tokens 128] [--model PATH] [--exe dist/pollama/pollama]

Needs a llama-cpp-python built with a GPU backend (e.g. CMAKE_ARGS="-DGGML_CUDA=on") and
`nvidia-smi` for the driver's view; without offload support it prints why and exits 0, so
it is safe to run anywhere. For each `num_gpu` (default -1 = all layers, then half, then 0)
it reloads the model and records size, size_vram, the PROCESSOR text `pollama ps` prints,
the runner's memory as nvidia-smi reports it, and decode tok/s from eval_duration (median
of rounds), with the in-process llama-cpp-python figure for the same layer count beside it.

`--exe` measures a built bundle instead of this checkout (packaging/gpu_check.sh does): the
server is the bundle's `pollama serve`, whether a GPU is there comes from its
`/api/pollama/devices`, and the in-process column is left out (the bundle's llama.cpp is not
importable here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.formatting import processor  # noqa: E402
from benchmarks.bench_inference import PROMPT  # noqa: E402
from tests.support.live_server import LiveServer  # noqa: E402

IN_PROCESS = textwrap.dedent(
    """
    import json, sys, time
    from llama_cpp import Llama
    llm = Llama(model_path=sys.argv[1], n_ctx=2048, n_gpu_layers=int(sys.argv[2]), verbose=False)
    rates = []
    for _ in range(int(sys.argv[4])):
        times = []
        for _ in llm.create_completion(sys.argv[5], max_tokens=int(sys.argv[3]), temperature=0.0, repeat_penalty=1.0, stream=True):
            times.append(time.perf_counter())
        llm.reset()
        rates.append((len(times) - 1) / (times[-1] - times[0]))
    print(json.dumps(rates))
    """
)


def driver_memory() -> dict[int, int]:
    """Bytes of GPU memory per process, as nvidia-smi reports them."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    out = subprocess.run(
        [exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout
    usage: dict[int, int] = {}
    for line in out.strip().splitlines():
        pid, _, mib = line.partition(",")
        try:
            usage[int(pid)] = int(float(mib)) << 20
        except ValueError:
            continue
    return usage


def generate(url: str, tokens: int, num_gpu: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {"temperature": 0, "num_predict": tokens, "seed": 1}
    if num_gpu is not None:
        options["num_gpu"] = num_gpu
    body = {"model": "bench", "prompt": PROMPT, "raw": True, "stream": False, "options": options}
    response = httpx.post(url + "/api/generate", json=body, timeout=600)
    response.raise_for_status()
    return dict(response.json())


def in_process(model: Path, layers: int, tokens: int, rounds: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(model), str(layers), str(tokens), str(rounds), PROMPT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(statistics.median(json.loads(out.stdout)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--exe", type=Path, help="a bundle's pollama executable to measure")
    args = parser.parse_args()
    if args.exe is None:
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            print(json.dumps({"benchmark": "gpu", "skipped": "this llama-cpp-python build has no GPU backend"}))
            return
    if args.model is None:
        from tests.fixtures.gguf_models import cached_model

        args.model = cached_model("bench")
    from server.store.gguf_info import read_gguf

    n_layer = int(read_gguf(args.model).arch_value("block_count", 0) or 0)
    results: dict[str, Any] = {"benchmark": "gpu", "model": args.model.name, "n_layer": n_layer, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        command = None if args.exe is None else [str(args.exe.resolve()), "serve"]
        env = {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_CONTEXT_LENGTH": "2048"}
        server = LiveServer(Path(tmp) / "models", env=env, command=command).start(timeout=60)
        try:
            import ollama

            devices = httpx.get(server.url + "/api/pollama/devices", timeout=120).json()
            results["devices"] = devices["devices"]
            results["ggml"] = devices.get("ggml")
            if args.exe is not None and not devices["devices"]:
                results["skipped"] = "the bundle sees no GPU (see ggml.skipped)"
                print(json.dumps(results, indent=2))
                return

            client = ollama.Client(host=server.url)
            client.create(
                model="bench",
                files={"bench.gguf": client.create_blob(args.model)},
                template="{{ .Prompt }}",
                stream=False,
            )
            # -1 first: an auto request matches any loaded layer count, explicit ones reload.
            for num_gpu in (None, n_layer // 2, 0):
                generate(server.url, 8, num_gpu)  # load and warm up
                rates = []
                for _ in range(args.rounds):
                    final = generate(server.url, args.tokens, num_gpu)
                    rates.append(final["eval_count"] / (final["eval_duration"] / 1e9))
                ps = httpx.get(server.url + "/api/ps", timeout=10).json()["models"][0]
                runners = server.runner_pids()
                seen = driver_memory()
                layers = -1 if num_gpu is None else num_gpu
                results["runs"].append(
                    {
                        "num_gpu": layers,
                        "size": ps["size"],
                        "size_vram": ps["size_vram"],
                        "processor": processor(ps["size"], ps["size_vram"]),
                        "nvidia_smi_runner_bytes": sum(seen.get(pid, 0) for pid in runners),
                        "pollama_decode_tok_s": round(statistics.median(rates), 1),
                        "in_process_decode_tok_s": None
                        if args.exe is not None
                        else round(in_process(args.model, layers, args.tokens, args.rounds), 1),
                    }
                )
            cli = subprocess.run(
                [sys.executable, "-m", "app", "ps"] if args.exe is None else [str(args.exe.resolve()), "ps"],
                capture_output=True,
                text=True,
                timeout=30,
                env={**server.env()},
                cwd=Path(__file__).resolve().parents[1],
            )
            results["pollama_ps"] = cli.stdout.strip().splitlines()
        finally:
            server.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
