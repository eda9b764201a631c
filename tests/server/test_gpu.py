"""Device discovery: no GPU is offered when llama.cpp was built without a backend for it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from server import gpu

SMI_OUTPUT = "0, NVIDIA H100 80GB HBM3, 81559, 80552\n1, NVIDIA H100 80GB HBM3, 81559, 1024\n"


@pytest.fixture
def nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `nvidia-smi` on PATH that answers the one query gpu.py makes, as the real one does;
    this machine has no NVIDIA driver, and NVML is kept out so the fallback is what runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nprintf '{SMI_OUTPUT}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(gpu, "_nvml_devices", lambda: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return exe


def test_backends_read_from_library_names(tmp_path: Path) -> None:
    assert gpu.backends_in(tmp_path / "missing") is None
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("libggml-base.so", "libggml-cpu.so", "libllama.so"):
        (lib / name).touch()
    assert gpu.backends_in(lib) == frozenset()
    (lib / "libggml-cuda.so.0").touch()
    assert gpu.backends_in(lib) == {"cuda"}


def test_installed_build_is_read() -> None:
    found = gpu.llama_backends()
    assert found is not None, "the llama_cpp package beside pollama has a lib folder"


def test_cuda_build_sees_nvidia_devices(nvidia_smi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "llama_backends", lambda: frozenset({"cuda"}))
    devices = gpu.gpu_devices()
    assert [(d.id, d.kind, d.total_memory, d.free_memory) for d in devices] == [
        ("0", "cuda", 81559 << 20, 80552 << 20),
        ("1", "cuda", 81559 << 20, 1024 << 20),
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [d.id for d in gpu.gpu_devices()] == ["1"]


def test_cpu_only_build_offers_no_gpu(nvidia_smi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "llama_backends", lambda: frozenset())
    assert gpu.gpu_devices() == []
    monkeypatch.setattr(gpu, "llama_backends", lambda: None)  # build unknown: trust the driver
    assert len(gpu.gpu_devices()) == 2


def test_vulkan_build_plans_with_the_probed_vulkan_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe itself runs for real in tests/packaging/test_vulkan_bundle.py (on lavapipe);
    here its answer is given, to check what the scheduler is handed."""
    from server.runner.ggml_backends import BackendReport, GgmlDevice

    lavapipe = GgmlDevice("Vulkan", "Vulkan0", "llvmpipe (LLVM 15.0.6, 256 bits)", "gpu", 3 << 30, 4 << 30, None)
    cpu = GgmlDevice("CPU", "CPU", "AMD EPYC", "cpu", 20 << 30, 24 << 30, None)
    report = BackendReport(True, "/lib", ("Vulkan", "CPU"), (lavapipe, cpu), "libggml-cpu-zen4.so", "zen4", (), ())
    monkeypatch.setattr(gpu, "llama_backends", lambda: frozenset({"vulkan"}))
    monkeypatch.setattr(gpu, "probe_backends", lambda: report)
    assert gpu.gpu_devices() == [gpu.Device("Vulkan0", "llvmpipe (LLVM 15.0.6, 256 bits)", "vulkan", 4 << 30, 3 << 30)]
