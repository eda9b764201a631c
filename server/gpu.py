"""Devices and their free/total memory, probed without a GPU context in the server.

Creating a CUDA context costs hundreds of MB of VRAM and pins the driver in
the server process forever, so the server never calls into CUDA itself: it
asks NVML (`nvidia-ml-py`, if installed), which reads the driver's counters,
or failing that `nvidia-smi` in a short subprocess. System memory comes from
`/proc/meminfo` on Linux, `sysctl`/`vm_stat` elsewhere via psutil if present.

Vulkan has no such side channel, and which backends and CPU variant the
runners will load is only known to ggml: for those the server runs the probe
(`pollama runner --probe`, server/runner/ggml_backends.py) in a short-lived
child, as Ollama discovers devices by starting a runner (discover/runner.go),
so whatever driver state the probe creates ends with it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from server.runner.ggml_backends import BackendReport, offload_devices

log = logging.getLogger("pollama.gpu")

#: How long the backend probe may take (loading a GPU backend starts its driver).
PROBE_TIMEOUT = 60.0

#: VRAM a runner takes on each device it uses beyond its weights, KV cache and
#: compute buffers (the driver context, cuBLAS workspace): Ollama keeps this
#: much free per GPU when it places layers (`MinimumMemory`, 457 MiB for CUDA
#: and ROCm). Measured on an H100: 0.5-0.7 GB per runner.
CONTEXT_RESERVE = {"cuda": 457 << 20, "rocm": 457 << 20}


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    kind: str  # "cuda", "vulkan", "rpc" (a `pollama worker`'s device)
    total_memory: int
    free_memory: int

    @property
    def context_reserve(self) -> int:
        """What a new runner's own context will take here (`CONTEXT_RESERVE`)."""
        return CONTEXT_RESERVE.get(self.kind, 0)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class SystemMemory:
    total: int
    free: int


def system_memory() -> SystemMemory:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return SystemMemory(int(vm.total), int(vm.available))
    except (ImportError, AttributeError):
        # missing, or half-imported where a platform module it needs is absent (the
        # portable tests take `resource` away from psutil's Linux backend): read /proc
        pass
    try:
        fields: dict[str, int] = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024
        return SystemMemory(fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", 0)))
    except (OSError, KeyError, ValueError):
        pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
        size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
        return SystemMemory(pages * size, pages * size // 2)


def _nvml_devices() -> list[Device] | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            out.append(Device(str(i), name, "cuda", int(mem.total), int(mem.free)))
        return out
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _nvidia_smi_devices() -> list[Device] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        result = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    devices = []
    for line in result.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        idx, name, total, free = parts
        try:
            devices.append(Device(idx, name, "cuda", int(float(total)) << 20, int(float(free)) << 20))
        except ValueError:
            continue
    return devices


def visible(devices: list[Device]) -> list[Device]:
    """Honour CUDA_VISIBLE_DEVICES as the runner processes will."""
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return devices
    wanted = [m.strip() for m in mask.split(",") if m.strip()]
    return [d for d in devices if d.id in wanted]


@cache
def llama_backends() -> frozenset[str] | None:
    """The ggml GPU backends the installed llama-cpp-python was built with ("cuda", ...), read
    from the library files beside it without loading them (loading would start CUDA here).
    None when the package cannot be located, e.g. in an unusual bundle: then assume any."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return backends_in(Path(next(iter(spec.submodule_search_locations))) / "lib")


def backends_in(lib: Path) -> frozenset[str] | None:
    if not lib.is_dir():
        return None
    names = " ".join(p.name.lower() for p in lib.iterdir())
    return frozenset(kind for kind in ("cuda", "hip", "vulkan", "sycl") if f"ggml-{kind}" in names)


def probe_backends(*, with_workers: bool = False) -> BackendReport | None:
    """What a runner loads (backends, devices with free memory now, CPU variant), from
    `pollama runner --probe` in a child process; None, logged, when the probe fails.

    The RPC workers are left out unless asked for: a worker serves one client at a
    time (llama.cpp's `ggml_backend_rpc_start_server` accepts the next connection only
    when the last one closes), so a probe that reached for a worker a runner is using
    would wait for that runner to exit."""
    from server.child_env import child_env
    from server.runner.client import runner_command

    command = [*runner_command(), "--probe"]
    env = child_env()
    if not with_workers:
        env.pop("POLLAMA_RPC_WORKERS", None)
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("backend probe failed: %s", exc)
        return None
    lines = done.stdout.decode("utf-8", errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()[-3:]
        log.warning("backend probe exited with %s: %s", done.returncode, " | ".join(tail))
        return None
    try:
        report = BackendReport.from_json(json.loads(lines[-1]))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("backend probe printed something unexpected (%s): %r", exc, lines[-1][:200])
        return None
    if not with_workers:
        global _report
        _report = report
    return report


_report: BackendReport | None = None


def backend_report() -> BackendReport | None:
    """The last probe's answer, probing if none has been made: which backends and CPU variant
    the runners load does not change while the server runs (the libraries do not)."""
    return _report if _report is not None else probe_backends()


def vulkan_devices(report: BackendReport | None) -> list[Device]:
    """The Vulkan GPUs a runner offloads to (none that are also a CUDA/ROCm device), with the
    memory ggml-vulkan reports: the heap budget where the driver has VK_EXT_memory_budget."""
    if report is None:
        return []
    return [
        Device(d.name, d.description, "vulkan", d.memory_total, d.memory_free)
        for d in offload_devices(report.devices)
        if d.backend == "Vulkan"
    ]


def gpu_devices() -> list[Device]:
    """GPUs the runners can use: NVIDIA ones (from the driver's counters) when llama.cpp was
    built with CUDA, Vulkan ones (from a fresh probe) when it has the Vulkan backend; none for
    a CPU-only build (the plain `pip install`), so it never plans, reports or estimates for
    VRAM it cannot use."""
    backends = llama_backends()
    found: list[Device] = []
    if backends is None or "cuda" in backends:
        for probe in (_nvml_devices, _nvidia_smi_devices):
            nvidia = probe()
            if nvidia is not None:
                found += visible(nvidia)
                break
    report = None
    if backends is None or "vulkan" in backends:  # unknown build: the probe tells
        report = probe_backends()
        found += vulkan_devices(report)
    if rpc_workers():
        found += worker_devices()
    return found


def rpc_workers() -> str:
    """The RPC workers the server's runners use (`POLLAMA_RPC_WORKERS`, from env or settings)."""
    from server.child_env import child_env

    return child_env().get("POLLAMA_RPC_WORKERS", "")


_workers_seen: tuple[str, list[Device]] | None = None


def worker_devices() -> list[Device]:
    """The RPC workers' devices, probed once while no runner holds them (at the first plan)
    and kept: the workers are machines set aside for this, and probing one while a runner
    uses it would wait for that runner (`probe_backends`). Probed again until one answers."""
    global _workers_seen
    workers = rpc_workers()
    if _workers_seen is not None and _workers_seen[0] == workers:
        return _workers_seen[1]
    devices = rpc_devices(probe_backends(with_workers=True))
    if devices:
        _workers_seen = (workers, devices)
    return devices


def rpc_devices(report: BackendReport | None) -> list[Device]:
    """The devices of the RPC workers that answered the probe (`RPC0`, …; `name` is the
    worker's endpoint), with the memory each worker reports for its device."""
    if report is None:
        return []
    return [
        Device(d.name, d.description, "rpc", d.memory_total, d.memory_free)
        for d in report.devices
        if d.backend == "RPC"
    ]
