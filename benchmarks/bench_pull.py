"""Pull benchmark: throughput of `/api/pull` against `curl` on the same blob, and the server's peak RSS.

    python benchmarks/bench_pull.py [--rounds 6]

Starts a CNCF distribution registry (`docker-registry`) on loopback with the
bench GGUF (~262 MB) and a 26 MB random blob, and a `pollama serve`. Each
round downloads the bench blob once with `curl` (to a file in the same
folder as the store) and pulls it once through pollama (from the request to
`success`: parts, hashing, fsync, manifest), one after the other so both
see the same machine load, the one going first swapping every round. The ratio is curl's time over pollama's (throughput
ratio; target ≥ 0.9). Requests go through one httpx client made before any
timing (making one loads a CA bundle, tens of ms), as curl's `time_total`
leaves out curl's own start-up. The server's peak RSS during each pull
(`PeakRss`) above its idle RSS is reported for both blob sizes, to show
memory does not grow with the blob. Also reported: the CPU seconds curl and the
server spend per pull (the registry's are the same for both), and how fast one core
computes SHA-256, which bounds any verifying download (the hash is
sequential), and so the ratio's ceiling where curl is faster than that.
Prints JSON.

On a virtual machine whose kernel hands freed memory back to its host
(virtio-balloon free page reporting, `vm_free_page_reporting` in the
output), a transfer that writes into pages the host took back runs two to
three times slower: the first touch of each costs a fault in the host.
curl pays it too, in the rounds that follow a delete; the order swaps every
round so such rounds cannot all fall on one side. `page_cache_growth_MiB`
shows how much each side leaves in the page cache.

By default (`POLLAMA_PULL_DIRECT_IO` unset: auto) pollama writes a blob this
size through the page cache on a physical machine, where it stays cached
for the load after a pull, and past it (`O_DIRECT`) on such a VM
(`direct_io_auto_chooses_direct` in the output). `POLLAMA_PULL_DIRECT_IO=0`
or `=1` measures one path or the other anywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
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

from server.gpu import system_memory  # noqa: E402
from server.host_reclaim import host_reclaims_free_memory  # noqa: E402
from server.registry.settings import TransferSettings  # noqa: E402
from server.store.manifest import MODEL  # noqa: E402
from tests.fixtures.gguf_models import cached_model  # noqa: E402
from tests.support.live_server import LiveServer  # noqa: E402
from tests.support.registry import RegistryServer, upload_model  # noqa: E402


def proc_kib(path: str, field: str) -> int:
    """A `Field:   123 kB` line of a /proc file (0 where there is no such line)."""
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    return proc_kib(f"/proc/{pid}/status", field)


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

    def __enter__(self) -> PeakRss:
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


def page_cache_kib() -> int:
    """The page cache's size now (Linux `Cached:`; 0 elsewhere)."""
    try:
        return proc_kib("/proc/meminfo", "Cached")
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pull(client: httpx.Client, server: LiveServer, name: str) -> tuple[float, int, float, int]:
    """Seconds, peak RSS above idle (KiB), the server's CPU seconds, and the page cache's growth (KiB) for one pull."""
    pid = server.proc.pid  # type: ignore[union-attr]
    idle = rss_kib(pid)
    cpu = cpu_seconds(pid)
    cached = page_cache_kib()
    with PeakRss(pid) as sampler:
        start = time.perf_counter()
        r = client.post(f"{server.url}/api/pull", json={"model": name, "insecure": True, "stream": False})
        elapsed = time.perf_counter() - start
    assert r.json() == {"status": "success"}, r.text
    return elapsed, sampler.peak - idle, cpu_seconds(pid) - cpu, page_cache_kib() - cached


def delete(client: httpx.Client, server: LiveServer, name: str) -> None:
    r = client.request("DELETE", f"{server.url}/api/delete", json={"model": name})
    assert r.status_code == 200, r.text


def sha256_rate(path: Path) -> float:
    """Bytes per second one core hashes (median of 3, file in memory): no verifying download
    can beat it, so where curl is faster the ratio's ceiling is this rate over curl's."""
    data = path.read_bytes()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        hashlib.sha256(data).digest()
        times.append(time.perf_counter() - start)
    return len(data) / statistics.median(times)


def curl(url: str, dest: Path) -> tuple[float, float, int]:
    """curl's own transfer time, the CPU seconds it used, and the page cache's growth (KiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cached = page_cache_kib()
    out = subprocess.run(
        ["curl", "-s", "-f", "-o", str(dest), "-w", "%{time_total}", url], check=True, capture_output=True, text=True
    )
    grown = page_cache_kib() - cached
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    size = dest.stat().st_size
    dest.unlink()
    assert size > 0
    return float(out.stdout), (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), grown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
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
            curl_times, pull_times, big_rss, small_rss, curl_cpu, pull_cpu = [], [], [], [], [], []
            cache_growth: dict[str, list[int]] = {"curl": [], "pull": []}
            registry_pid = registry.proc.pid  # type: ignore[union-attr]
            registry_cpu: dict[str, list[float]] = {"curl": [], "pull": []}
            curl(blob_url, root / "warm.bin")  # page cache warm for both
            with httpx.Client(trust_env=False, timeout=600) as client:
                pull(
                    client, server, big
                )  # untimed, as curl's start-up is: the server's first pull loads code and threads
                delete(client, server, big)

                def timed_curl() -> None:
                    served = cpu_seconds(registry_pid)
                    t, cpu, grown = curl(blob_url, root / "home" / ".ollama" / "models" / "curl.bin")
                    curl_times.append(t)
                    curl_cpu.append(cpu)
                    cache_growth["curl"].append(grown)
                    registry_cpu["curl"].append(cpu_seconds(registry_pid) - served)

                def timed_pull() -> None:
                    served = cpu_seconds(registry_pid)
                    t, rss, cpu, grown = pull(client, server, big)
                    pull_times.append(t)
                    big_rss.append(rss)
                    pull_cpu.append(cpu)
                    cache_growth["pull"].append(grown)
                    registry_cpu["pull"].append(cpu_seconds(registry_pid) - served)
                    delete(client, server, big)

                for n in range(args.rounds):
                    for step in (timed_curl, timed_pull) if n % 2 == 0 else (timed_pull, timed_curl):
                        step()
                    _, rss, _, _ = pull(client, server, little)
                    small_rss.append(rss)
                    delete(client, server, little)
        finally:
            server.stop()
            registry.stop()
            shutil.rmtree(root, ignore_errors=True)
    curl_s, pull_s = statistics.median(curl_times), statistics.median(pull_times)
    sha_rate = sha256_rate(bench)
    print(
        json.dumps(
            {
                "blob_bytes": size,
                "rounds": args.rounds,
                "curl_seconds": [round(t, 3) for t in curl_times],
                "pull_seconds": [round(t, 3) for t in pull_times],
                "curl_MBps": round(size / curl_s / 1e6, 1),
                "pull_MBps": round(size / pull_s / 1e6, 1),
                "throughput_ratio_pull_over_curl": round(curl_s / pull_s, 3),
                "target_ratio": 0.9,
                "cpu_seconds_curl": round(statistics.median(curl_cpu), 3),
                "cpu_seconds_pollama_server": round(statistics.median(pull_cpu), 3),
                "cpu_seconds_registry": {k: round(statistics.median(v), 3) for k, v in registry_cpu.items()},
                "direct_io": os.environ.get("POLLAMA_PULL_DIRECT_IO", "auto"),
                "direct_io_auto_chooses_direct": TransferSettings().direct_for(
                    size, lambda: system_memory().free, host_reclaims_free_memory
                ),
                "cores": os.cpu_count(),
                "vm_free_page_reporting": host_reclaims_free_memory(),
                "sha256_one_core_MBps": round(sha_rate / 1e6, 1),
                "ratio_ceiling_from_sha256": round(min(1.0, sha_rate * curl_s / size), 3),
                "page_cache_growth_MiB": {k: round(statistics.median(v) / 1024, 1) for k, v in cache_growth.items()},
                "peak_rss_above_idle_MiB_262MB_blob": round(max(big_rss) / 1024, 1),
                "peak_rss_above_idle_MiB_26MB_blob": round(max(small_rss) / 1024, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
