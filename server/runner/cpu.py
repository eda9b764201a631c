"""How many threads llama.cpp should use: physical cores, not logical ones.

llama-cpp-python defaults to half the logical cores; on the 2-vCPU machines
this project is measured on that is 1 thread and ~35 % slower decoding
(reference/benchmarking.md). Hyperthread siblings do not help matrix work, so
the count is physical cores, limited to the CPUs this process may run on.
"""

from __future__ import annotations

import os
import platform
import subprocess


def physical_cores() -> int:
    logical = usable_cpus()
    physical = _linux_physical() if platform.system() == "Linux" else None
    if physical is None and platform.system() == "Darwin":
        physical = _sysctl_int("hw.physicalcpu")
    if physical is None:
        physical = logical
    return max(1, min(physical, logical))


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _linux_physical() -> int | None:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = ""
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical_id = value.strip()
        elif key == "core id":
            core_id = value.strip()
        elif not line.strip():
            if core_id:
                cores.add((physical_id, core_id))
            physical_id = core_id = ""
    return len(cores) or None


def _sysctl_int(name: str) -> int | None:
    try:
        return int(subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
