"""Pull benchmark: throughput of `/api/pull` against `curl` on the same blob, and the server's peak RSS.

    python benchmarks/bench_pull.py [--rounds 3]

Starts a CNCF distribution registry (`docker-registry`) on loopback with the
bench GGUF (~262 MB) and a 26 MB random blob, and a `pollama serve`. Each
round downloads the bench blob once with `curl` (to a file in the same
folder as the store) and pulls it once through pollama (from the request to
`success`: parts, hashing, fsync, manifest), alternating so both see the
same machine load. The ratio is curl's time over pollama's (throughput
ratio; target ≥ 0.9). Requests go through one httpx client made before any
timing (making one loads a CA bundle, tens of ms), as curl's `time_total`
leaves out curl's own start-up. The server's peak RSS during each pull
(`PeakRss`) above its idle RSS is reported for both blob sizes, to show
memory does not grow with the blob. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.store.manifest import MODEL  # noqa: E402
from tests.fixtures.gguf_models import cached_model  # noqa: E402
from tests.support.live_server import LiveServer  # noqa: E402
from tests.support.registry import RegistryServer, upload_model  # noqa: E402


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """The peak RSS of a process while the block runs.

    Linux keeps the high-water mark itself (`VmHWM`), and writing 5 to
    `clear_refs` resets it to the current RSS: exact, and it takes no CPU
    from the pull being measured on a two-core machine. Where that reset is
    not allowed, RSS is sampled every 5 ms instead.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._exact = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.005)

    def __enter__(self) -> "PeakRss":
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            self._exact = True
        except OSError:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._exact:
            self.peak = rss_kib(self.pid, "VmHWM")
        else:
            self._stop.set()
            self._thread.join()


def pull(client: httpx.Client, server: LiveServer, name: str) -> tuple[float, int]:
    idle = rss_kib(server.proc.pid)  # type: ignore[union-attr]
    with PeakRss(server.proc.pid) as sampler:  # type: ignore[union-attr]
        start = time.perf_counter()
        r = client.post(f"{server.url}/api/pull", json={"model": name, "insecure": True, "stream": False})
        elapsed = time.perf_counter() - start
    assert r.json() == {"status": "success"}, r.text
    return elapsed, sampler.peak - idle


def delete(client: httpx.Client, server: LiveServer, name: str) -> None:
    r = client.request("DELETE", f"{server.url}/api/delete", json={"model": name})
    assert r.status_code == 200, r.text


def curl(url: str, dest: Path) -> float:
    out = subprocess.run(["curl", "-s", "-f", "-o", str(dest), "-w", "%{time_total}", url], check=True, capture_output=True, text=True)
    size = dest.stat().st_size
    dest.unlink()
    assert size > 0
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bench = cached_model("bench-q8")
    size = bench.stat().st_size
    small = os.urandom(26_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        root = Path(tmp)
        os.environ["HOME"] = str(root / "home")
        registry = RegistryServer(root / "registry").start()
        server = LiveServer(root / "home" / ".ollama" / "models").start()
        try:
            with httpx.Client(trust_env=False, timeout=600) as client:
                raw = upload_model(client, registry.url, "library/bench", "latest", [(MODEL, bench)])
                upload_model(client, registry.url, "library/small", "latest", [(MODEL, small)])
            digest = json.loads(raw)["layers"][0]["digest"]
            blob_url = f"{registry.url}/v2/library/bench/blobs/{digest}"
            big, little = f"{registry.host}/library/bench", f"{registry.host}/library/small"
            curl_times, pull_times, big_rss, small_rss = [], [], [], []
            curl(blob_url, root / "warm.bin")  # page cache warm for both
            with httpx.Client(trust_env=False, timeout=600) as client:
                for _ in range(args.rounds):
                    curl_times.append(curl(blob_url, root / "home" / ".ollama" / "models" / "curl.bin"))
                    t, rss = pull(client, server, big)
                    pull_times.append(t)
                    big_rss.append(rss)
                    delete(client, server, big)
                    _, rss = pull(client, server, little)
                    small_rss.append(rss)
                    delete(client, server, little)
        finally:
            server.stop()
            registry.stop()
            shutil.rmtree(root, ignore_errors=True)
    curl_s, pull_s = statistics.median(curl_times), statistics.median(pull_times)
    print(json.dumps({
        "blob_bytes": size,
        "rounds": args.rounds,
        "curl_seconds": [round(t, 3) for t in curl_times],
        "pull_seconds": [round(t, 3) for t in pull_times],
        "curl_MBps": round(size / curl_s / 1e6, 1),
        "pull_MBps": round(size / pull_s / 1e6, 1),
        "throughput_ratio_pull_over_curl": round(curl_s / pull_s, 3),
        "target_ratio": 0.9,
        "peak_rss_above_idle_MiB_262MB_blob": round(max(big_rss) / 1024, 1),
        "peak_rss_above_idle_MiB_26MB_blob": round(max(small_rss) / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
