"""Which ggml backends a runner loads and what it says about them.

The installed llama-cpp-python here is the plain build (backends linked in, no
CPU variants); the bundle tests (tests/packaging) run the same code on the
`GGML_BACKEND_DL` build with every CPU variant and with Vulkan.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from server.child_env import child_env
from server.gpu import vulkan_devices
from server.runner import ggml_backends as gb
from server.runner.client import runner_command


def dev(backend: str, name: str, kind: str = "gpu", device_id: str | None = None) -> gb.GgmlDevice:
    return gb.GgmlDevice(backend, name, f"{name} card", kind, 1 << 30, 2 << 30, device_id)


def test_cpu_variant_is_read_from_the_library_name() -> None:
    assert gb.cpu_variant_of("libggml-cpu-haswell.so") == "haswell"
    assert gb.cpu_variant_of("/x/ggml-cpu-alderlake.dll") == "alderlake"
    assert gb.cpu_variant_of("libggml-cpu-armv8.2_1.so") == "armv8.2_1"
    assert gb.cpu_variant_of("libggml-cpu.so.0") is None
    assert gb.cpu_variant_of(None) is None


def test_backend_libraries_are_found_by_name(tmp_path: Path) -> None:
    for name in ("libggml-base.so", "libggml.so", "libllama.so", "libggml-cpu-x64.so", "libggml-cpu-zen4.so"):
        (tmp_path / name).touch()
    (tmp_path / "libggml-vulkan.so").touch()
    found = gb.backend_libraries(tmp_path)
    assert sorted(found) == ["cpu", "vulkan"]
    assert [p.name for p in found["cpu"]] == ["libggml-cpu-x64.so", "libggml-cpu-zen4.so"]
    assert gb.backend_libraries(tmp_path / "missing") == {}


def test_backends_are_looked_for_in_the_package_then_the_wheels_bin(tmp_path: Path) -> None:
    package = tmp_path / "site" / "llama_cpp"
    (package / "lib").mkdir(parents=True)
    (tmp_path / "site" / "bin").mkdir()
    assert gb.library_folders(package) == [package / "lib"]  # nothing anywhere: the usual place
    (tmp_path / "site" / "bin" / "libggml-cpu-x64.so").touch()  # CMake's default install folder
    assert gb.library_folders(package) == [tmp_path / "site" / "bin"]
    (package / "lib" / "libggml-cpu-x64.so").touch()
    assert gb.library_folders(package)[0] == package / "lib"


def test_one_gpu_seen_by_cuda_and_vulkan_is_offloaded_to_once() -> None:
    cpu = dev("CPU", "CPU", "cpu")
    cuda = dev("CUDA", "CUDA0", device_id="0000:01:00.0")
    same = dev("Vulkan", "Vulkan0", device_id="0000:01:00.0")
    other = dev("Vulkan", "Vulkan1", device_id="0000:c1:00.0")  # an AMD card beside it
    assert gb.offload_devices([cpu, cuda, same, other]) == [cuda, other]
    unknown = dev("Vulkan", "Vulkan0")  # no PCI id: cannot tell, so the vendor backend alone
    assert gb.offload_devices([cuda, unknown]) == [cuda]
    assert gb.offload_devices([cpu, same, other]) == [same, other]  # Vulkan alone is used
    assert vulkan_devices(None) == []


def test_report_says_why_a_backend_is_unused(tmp_path: Path) -> None:
    broken = tmp_path / "libggml-vulkan.so"
    broken.write_bytes(b"not a library")
    skipped = gb.skipped_backends({"vulkan": [broken], "cpu": [tmp_path / "libggml-cpu-x64.so"]}, [])
    assert [(s.backend, s.library) for s in skipped] == [("vulkan", "libggml-vulkan.so")]
    assert "could not be loaded" in skipped[0].reason
    # a library that loads (any real one) but registered no device: ggml's own reason
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    if libc.exists():
        (skip,) = gb.skipped_backends({"vulkan": [libc]}, [dev("CPU", "CPU", "cpu")])
        assert "GGML_VK_VISIBLE_DEVICES" in skip.reason
    assert gb.skipped_backends({"vulkan": [broken]}, [dev("Vulkan", "Vulkan0")]) == []


def test_the_runner_reports_the_loaded_cpu_backend_in_process() -> None:
    report = gb.load()
    assert "CPU" in report.backends
    assert report.cpu_library and "ggml-cpu" in report.cpu_library  # found by dladdr
    assert "SSE3" in report.cpu_features or sys.platform != "linux"
    (cpu,) = [d for d in report.devices if d.type == "cpu"]
    assert cpu.memory_total > 0
    line = report.log_lines()[0]
    assert line.startswith("pollama runner: ggml backends ") and report.cpu_library in line
    assert gb.BackendReport.from_json(json.loads(json.dumps(report.to_json()))) == report


def test_probe_prints_the_report_as_json_and_exits() -> None:
    done = subprocess.run([*runner_command(), "--probe"], capture_output=True, text=True, timeout=120, env=child_env())
    assert done.returncode == 0, done.stderr
    report = gb.BackendReport.from_json(json.loads(done.stdout.strip().splitlines()[-1]))
    assert report == gb.load()
