"""The Linux CPU bundle: one command from a clean checkout builds it, portable (every CPU
variant, the best picked at run time), without duplicate libraries, and it works as the real
program (serve, create, run, ps, stop, the tray app), without touching this environment."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import httpx
import pytest

from tests.packaging.bundles import LINUX_FLAG, build, cpu_flags
from tests.support.live_server import LiveServer

pytest.importorskip("PyInstaller", reason="pyinstaller is in the test extra")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux bundle")


def installed_llama_files() -> dict[str, str]:
    """Digest of every file of the llama-cpp-python this environment has."""
    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    return {
        str(p.relative_to(package)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(package.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_cpu_bundle_builds_from_a_clean_checkout_and_runs_anywhere(tmp_path: Path) -> None:
    before = installed_llama_files()
    built = build(tmp_path, "--check")

    # the developer's llama-cpp-python is exactly as it was
    assert installed_llama_files() == before
    assert "bundle check passed" in built.output
    assert "the tray app's server answers" in built.output

    # portable: no -march=native build but one CPU library per instruction-set level
    variants = sorted(p.name for p in built.lib.glob("libggml-cpu-*.so"))
    assert {"libggml-cpu-x64.so", "libggml-cpu-sse42.so", "libggml-cpu-haswell.so"} <= set(variants), variants
    assert not (built.lib / "libggml-cpu.so").exists() and not (built.lib / "libggml-cpu.so.0").exists()

    # one real file per library; its other names are links to it
    for stem in ("libllama", "libggml", "libggml-base", "libmtmd"):
        files = [p for p in built.lib.glob(f"{stem}.so*") if not p.is_symlink()]
        assert len(files) == 1, (stem, sorted(p.name for p in built.lib.glob(f"{stem}.so*")))
        assert (built.lib / f"{stem}.so").resolve() == files[0].resolve()

    # the machine's GPU driver stack and unused Qt do not come along
    internal = built.bundle / "_internal"
    names = {p.name for p in internal.rglob("*")}
    assert not {"libvulkan.so.1", "libcuda.so.1", "libqgtk3.so", "libQt6Qml.so.6", "libQt6Quick.so.6"} & names
    assert not list(internal.glob("PySide6/Qt/translations/*"))
    assert {"libqxcb.so", "libqoffscreen.so", "libqwayland.so"} <= names

    # it reports the CPU variant it loaded, and that variant runs on this CPU
    server = LiveServer(tmp_path / "models", command=[str(built.exe), "serve"], env={"HOME": str(tmp_path)})
    server.start(timeout=60)
    try:
        ggml = httpx.get(server.url + "/api/pollama/devices", timeout=120).json()["ggml"]
    finally:
        server.stop()
    assert ggml["dynamic"] is True and "CPU" in ggml["backends"]
    assert ggml["cpu_library"] == f"libggml-cpu-{ggml['cpu_variant']}.so" and ggml["cpu_library"] in variants
    flags = cpu_flags()
    assert {LINUX_FLAG[f] for f in ggml["cpu_features"] if f in LINUX_FLAG} <= flags
    if "avx2" in flags:  # the best variant, not the lowest common one
        assert ggml["cpu_variant"] not in ("x64", "sse42", "sandybridge"), ggml
