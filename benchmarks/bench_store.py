"""Store benchmark: `/api/tags` latency with 500 models, and `pollama serve` start-up time.

    python benchmarks/bench_store.py [--models 500] [--rounds 50]

Prints JSON. The baseline, measured in the same run, is the bare minimum the
endpoint must do: read every manifest and config file from disk in-process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.live_server import LiveServer  # noqa: E402


def populate(models: Path, count: int) -> None:
    """An Ollama-layout store of `count` models sharing one fake weights blob."""
    blobs = models / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (blobs / digest.replace(":", "-")).write_bytes(data)
        return digest

    weights = blob(b"GGUF" + b"\0" * 1024)
    for i in range(count):
        config = json.dumps(
            {
                "model_format": "gguf",
                "model_family": "llama",
                "model_families": ["llama"],
                "model_type": "8B",
                "file_type": "Q4_K_M",
                "architecture": "amd64",
                "os": "linux",
                "i": i,
            }
        ).encode()
        template = f"{{{{ .Prompt }}}} {i}".encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.ollama.image.model", "digest": weights, "size": 1028},
                {"mediaType": "application/vnd.ollama.image.template", "digest": blob(template), "size": len(template)},
            ],
        }
        path = models / "manifests" / "registry.ollama.ai" / "library" / f"model{i:04d}" / "latest"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(json.dumps(manifest).encode())


def raw_scan(models: Path) -> int:
    n = 0
    for path in (models / "manifests").rglob("*"):
        if path.is_file():
            m = json.loads(path.read_bytes())
            json.loads((models / "blobs" / m["config"]["digest"].replace(":", "-")).read_bytes())
            path.stat()
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        populate(models, args.models)
        startups = []
        for _ in range(5):
            server = LiveServer(models)
            t0 = time.perf_counter()
            server.start()
            startups.append(time.perf_counter() - t0)
            if _ < 4:
                server.stop()
        tags, scans = [], []
        with httpx.Client(base_url=server.url) as client:
            assert len(client.get("/api/tags").json()["models"]) == args.models
            for _ in range(args.rounds):  # alternate A/B so drift hits both equally
                t0 = time.perf_counter()
                client.get("/api/tags").raise_for_status()
                tags.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                raw_scan(models)
                scans.append(time.perf_counter() - t0)
        server.stop()
    tags_ms = statistics.median(tags) * 1000
    scan_ms = statistics.median(scans) * 1000
    print(
        json.dumps(
            {
                "benchmark": "store",
                "models": args.models,
                "tags_latency_ms": {
                    "median": round(tags_ms, 2),
                    "p90": round(sorted(tags)[int(len(tags) * 0.9)] * 1000, 2),
                },
                "baseline_raw_scan_ms": {"median": round(scan_ms, 2)},
                "tags_over_raw_scan": round(tags_ms / scan_ms, 2),
                "serve_to_first_200_s": {
                    "median": round(statistics.median(startups), 3),
                    "min": round(min(startups), 3),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
