"""The build's decisions, checked without building: llama.cpp's flags and the cache key, the build
venv's requirements, what a bundle keeps, and the one-copy rule for libraries (on real files)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import build_venv
import bundle_files
import llama_wheel
import numpy_wheel
import pytest

import build
from packaging.requirements import Requirement
from tests.packaging import bundles


def test_cpu_wheel_is_portable_with_every_cpu_variant() -> None:
    flags = llama_wheel.cmake_args("cpu", "linux")
    assert {"-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"} <= set(flags)
    assert "-DCMAKE_INSTALL_BINDIR=llama_cpp/lib" in flags  # the variants land beside libllama


def test_gpu_wheels_hold_only_their_backend() -> None:
    vulkan = llama_wheel.cmake_args("vulkan", "linux")
    assert {"-DGGML_VULKAN=ON", "-DGGML_CPU=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_NATIVE=OFF"} <= set(vulkan)
    assert "-DGGML_CPU_ALL_VARIANTS=ON" not in vulkan
    cuda = llama_wheel.cmake_args("cuda", "linux")
    assert "-DGGML_CUDA=ON" in cuda and "-DGGML_CPU=OFF" in cuda
    hip = llama_wheel.cmake_args("hip", "linux")
    assert "-DGGML_HIP=ON" in hip and any(f.startswith("-DGPU_TARGETS=") for f in hip)


def test_macos_builds_metal_like_llama_cpps_release() -> None:
    metal = llama_wheel.cmake_args("metal", "darwin", machine="arm64")
    assert {"-DGGML_METAL=ON", "-DGGML_METAL_EMBED_LIBRARY=ON", "-DGGML_NATIVE=OFF"} <= set(metal)
    assert "-DGGML_BACKEND_DL=ON" not in metal
    assert llama_wheel.base_backend("darwin") == "metal" and llama_wheel.base_backend("linux") == "cpu"
    with pytest.raises(ValueError, match="not built on"):
        llama_wheel.cmake_args("cuda", "darwin")


def test_cache_key_changes_with_flags_version_and_platform() -> None:
    """pip's wheel cache ignores CMAKE_ARGS; this one must not."""
    spec = llama_wheel.WheelSpec("cpu", "0.3.36", ("-DA=1",), "linux", "x86_64")
    same = llama_wheel.WheelSpec("cpu", "0.3.36", ("-DA=1",), "linux", "x86_64")
    assert spec.key == same.key and spec.key.startswith("0.3.36-cpu-")
    for other in (
        llama_wheel.WheelSpec("cpu", "0.3.36", ("-DA=2",), "linux", "x86_64"),
        llama_wheel.WheelSpec("cpu", "0.3.37", ("-DA=1",), "linux", "x86_64"),
        llama_wheel.WheelSpec("cpu", "0.3.36", ("-DA=1",), "linux", "aarch64"),
    ):
        assert other.key != spec.key
    assert llama_wheel.spec_for("cpu").version == "0.3.36"  # pyproject's pin


def test_an_unfinished_wheel_folder_is_not_a_cached_wheel(tmp_path: Path) -> None:
    spec = llama_wheel.WheelSpec("cpu", "0.3.36", ("-DA=1",), "linux", "x86_64")
    folder = spec.folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl").write_bytes(b"half")
    assert llama_wheel.cached_wheel(spec, tmp_path) is None
    (folder / "build.json").write_text("{}")
    assert llama_wheel.cached_wheel(spec, tmp_path) == folder / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"


def test_build_venv_gets_pollamas_requirements_with_qt_essentials_only() -> None:
    reqs = build_venv.requirements()
    names = [r.split(">")[0].split("=")[0].lower() for r in reqs]
    assert "llama-cpp-python" not in names and "pyside6" not in names
    assert "pyside6-essentials>=6.7" in reqs and "pyinstaller>=6.10" in reqs and "quart>=0.20" in reqs


def test_gpu_backend_library_comes_out_of_its_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    name = "ggml-vulkan.dll" if sys.platform == "win32" else "libggml-vulkan.so"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"llama_cpp/lib/{name}", b"\x7fELF vulkan")
    lib = build.backend_library(wheel, "vulkan", tmp_path / "lib")
    assert lib.read_bytes() == b"\x7fELF vulkan"
    with pytest.raises(SystemExit, match="no llama_cpp/lib/.*cuda"):
        build.backend_library(wheel, "cuda", tmp_path / "lib")


@pytest.mark.parametrize(
    ("dest", "kept"),
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", True),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", False),
        ("PySide6/Qt/plugins/platforms/libqeglfs.so", False),
        ("PySide6/Qt/plugins/imageformats/libqjpeg.so", True),
        ("PySide6/Qt/plugins/imageformats/libqpdf.so", False),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", False),
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", False),
        ("PySide6/Qt/plugins/iconengines/libqsvgicon.so", False),
        ("PySide6/Qt/plugins/tls/libqopensslbackend.so", True),
        ("PySide6/Qt/translations/qtbase_de.qm", False),
        ("libvulkan.so.1", False),
        ("libcuda.so.1", False),
        ("libcudart.so.13", True),
        ("llama_cpp/lib/libggml-vulkan.so", True),
        ("libQt6Core.so.6", True),
    ],
)
def test_what_a_bundle_keeps(dest: str, kept: bool) -> None:
    assert bundle_files.wanted(dest) is kept


def test_libraries_only_a_dropped_plugin_needed_go_too() -> None:
    toc = [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/q/libqxcb.so", "BINARY"),
        ("PySide6/QtCore.abi3.so", "/q/QtCore.abi3.so", "EXTENSION"),
        ("PySide6/Qt/lib/libQt6Core.so.6", "/q/libQt6Core.so.6", "BINARY"),
        ("PySide6/Qt/lib/libQt6XcbQpa.so.6", "/q/libQt6XcbQpa.so.6", "BINARY"),
        ("libicuuc.so.73", "/q/libicuuc.so.73", "BINARY"),
        ("libgtk-3.so.0", "/s/libgtk-3.so.0", "BINARY"),  # only the GTK theme plugin wanted it
        ("libQt6Core.so.6", "PySide6/Qt/lib/libQt6Core.so.6", "SYMLINK"),
        ("libgtk-3.so.0.2", "libgtk-3.so.0", "SYMLINK"),
        ("llama_cpp/lib/libllama.so", "/l/libllama.so", "BINARY"),
        ("resources/icons/pollama.svg", "/r/pollama.svg", "DATA"),
    ]
    imports = {
        "/q/libqxcb.so": ["libQt6XcbQpa.so.6"],
        "/q/libQt6XcbQpa.so.6": ["libQt6Core.so.6"],
        "/q/QtCore.abi3.so": ["libQt6Core.so.6"],
        "/q/libQt6Core.so.6": ["libicuuc.so.73"],
    }
    kept = bundle_files.prune_unreachable(toc, lambda src: imports.get(src, []))
    assert [e[0] for e in kept] == [
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/QtCore.abi3.so",
        "PySide6/Qt/lib/libQt6Core.so.6",
        "PySide6/Qt/lib/libQt6XcbQpa.so.6",
        "libicuuc.so.73",
        "libQt6Core.so.6",
        "llama_cpp/lib/libllama.so",
        "resources/icons/pollama.svg",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="Windows DLLs come one file each")
def test_copies_of_a_library_become_links_to_its_soname_file(tmp_path: Path) -> None:
    lib = tmp_path / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    for name in ("libllama.so", "libllama.so.0", "libllama.so.0.5.0"):
        (lib / name).write_bytes(b"L" * 1000)
    (lib / "libggml-cpu-haswell.so").write_bytes(b"H" * 10)
    (lib / "libggml-cpu-zen4.so").write_bytes(b"H" * 10)  # same bytes, another library: kept
    saved = bundle_files.dedupe_libraries(tmp_path)
    assert saved == 2000
    assert not (lib / "libllama.so.0").is_symlink()
    assert (lib / "libllama.so").readlink() == Path("libllama.so.0")
    assert (lib / "libllama.so.0.5.0").readlink() == Path("libllama.so.0")
    assert (lib / "libllama.so").read_bytes() == b"L" * 1000
    assert not (lib / "libggml-cpu-zen4.so").is_symlink()
    assert bundle_files.folder_size(tmp_path) == 1020
    assert bundle_files.cpu_variants(tmp_path) == ["haswell", "zen4"]


def _compile(out: Path, source: str, *flags: str) -> None:
    c = out.with_suffix(".c")
    c.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-g", "-o", str(out), str(c), *flags], check=True)
    c.unlink()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not shutil.which("gcc") or not shutil.which("strip"),
    reason="strips ELF libraries with binutils; compiles them with gcc",
)
def test_libraries_are_stripped_where_they_still_load_and_left_alone_otherwise(tmp_path: Path) -> None:
    internal = tmp_path / "_internal"
    internal.mkdir()
    many = "".join(f"int helper_{i}(int x) {{ return x * {i} + {i}; }}\n" for i in range(300))
    _compile(internal / "libanswer.so.1", many + "int answer(void) { return helper_6(6); }\n")
    # a library whose dependency is gone does not load here, so nothing proves a stripped copy would
    _compile(tmp_path / "libgone.so", "int gone(void) { return 1; }\n")
    _compile(
        internal / "libneeds.so",
        many + "int gone(void);\nint needs(void) { return gone(); }\n",
        f"-L{tmp_path}",
        "-lgone",
    )
    (tmp_path / "libgone.so").unlink()
    (internal / "libnot.so").write_bytes(b"not a library")
    before = {p.name: p.read_bytes() for p in internal.iterdir()}

    saved = bundle_files.strip_binaries(tmp_path)

    after = {p.name: p.read_bytes() for p in internal.iterdir()}
    assert set(after) == set(before)  # no stripped copy left behind
    assert saved == len(before["libanswer.so.1"]) - len(after["libanswer.so.1"]) > bundle_files.STRIP_WORTH
    assert ctypes.CDLL(str(internal / "libanswer.so.1")).answer() == 42  # its exported symbols stay
    assert after["libneeds.so"] == before["libneeds.so"] and after["libnot.so"] == before["libnot.so"]
    assert bundle_files.strip_binaries(tmp_path) == 0  # stripped once is stripped


def test_numpy_for_the_bundle_has_no_blas_and_meets_pollamas_requirement() -> None:
    spec = numpy_wheel.spec()
    assert {"-Csetup-args=-Dblas=none", "-Csetup-args=-Dlapack=none"} <= set(spec.settings)
    project = tomllib.loads((bundles.ROOT / "pyproject.toml").read_text())["project"]
    (requirement,) = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "numpy"]
    assert requirement.specifier.contains(numpy_wheel.VERSION)
    other = numpy_wheel.NumpySpec(spec.version, spec.settings[:1], spec.python, spec.platform, spec.machine)
    assert other.key != spec.key and spec.key.startswith(f"numpy-{numpy_wheel.VERSION}-noblas-")
    assert numpy_wheel.wanted("linux") and not numpy_wheel.wanted("win32") and not numpy_wheel.wanted("darwin")


def test_the_build_venv_key_follows_every_wheel(tmp_path: Path) -> None:
    llama, numpy = tmp_path / "llama.whl", tmp_path / "numpy.whl"
    llama.write_bytes(b"llama")
    numpy.write_bytes(b"numpy")
    key = build_venv.venv_key([llama, numpy], ["quart>=0.20"])
    assert key == build_venv.venv_key([llama, numpy], ["quart>=0.20"])
    assert key != build_venv.venv_key([llama], ["quart>=0.20"])
    numpy.write_bytes(b"numpy, rebuilt")
    assert key != build_venv.venv_key([llama, numpy], ["quart>=0.20"])
