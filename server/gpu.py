"""Devices and their free/total memory, probed without a GPU context in the server.

Creating a CUDA context costs hundreds of MB of VRAM and pins the driver in
the server process forever, so the server never calls into CUDA itself: it
asks NVML (`nvidia-ml-py`, if installed), which reads the driver's counters,
or failing that `nvidia-smi` in a short subprocess. System memory comes from
`/proc/meminfo` on Linux, `sysctl`/`vm_stat` elsewhere via psutil if present.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

#: VRAM a runner takes on each device it uses beyond its weights, KV cache and
#: compute buffers (the driver context, cuBLAS workspace): Ollama keeps this
#: much free per GPU when it places layers (`MinimumMemory`, 457 MiB for CUDA
#: and ROCm). Measured on an H100: 0.5-0.7 GB per runner.
CONTEXT_RESERVE = {"cuda": 457 << 20, "rocm": 457 << 20}


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    kind: str  # "cuda", ...
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
    except ImportError:
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


def gpu_devices() -> list[Device]:
    """NVIDIA GPUs the runners can use: none when llama.cpp was built without CUDA (the plain
    `pip install`), so a CPU-only build never plans, reports or estimates for VRAM it cannot use."""
    backends = llama_backends()
    if backends is not None and "cuda" not in backends:
        return []
    for probe in (_nvml_devices, _nvidia_smi_devices):
        found = probe()
        if found is not None:
            return visible(found)
    return []
