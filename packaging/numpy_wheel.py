"""numpy without BLAS for the Linux bundle: built once from the sdist, kept in the build cache.

PyPI's numpy wheels for Linux carry OpenBLAS (`numpy.libs/libscipy_openblas64_*.so`,
25 MB, and the gfortran runtime it needs, 3 MB): 28 MB of a bundle that never
multiplies a matrix. pollama's numpy use is element-wise and small (the sampler's
softmax and top-k in server/runner/sampling.py, one vector norm per embedding in
server/runner/embedding.py), and llama-cpp-python's own (`llama_cpp/llama.py`,
`_internals.py`) is the same kind; none of it reaches BLAS or LAPACK. numpy's
build supports exactly this (`-Dblas=none -Dlapack=none -Dallow-noblas=true`):
`numpy.dot` and `numpy.linalg` then run on numpy's own C loops and its bundled
`lapack_lite`, with the same results, slower only on large matrices.

The version is pinned here, not taken from the resolver, so a build is repeatable
and the cache key stable; it must satisfy pyproject.toml's `numpy` requirement
(tests/packaging/test_build_parts.py checks), and moving it is a deliberate edit.
The wheel is built with the Python that runs the build (the build venv's Python
is the same interpreter), `--no-cache-dir` for the reason packaging/llama_wheel.py
gives (pip's cache ignores build settings), into a folder of the build cache named
by a digest of the version, the settings, the Python and the platform.

Only Linux: macOS's wheels use Apple's Accelerate (nothing bundled); Windows'
wheels carry OpenBLAS too, but a numpy source build with MSVC has not been tried
there, so Windows keeps PyPI's wheel for now.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cache_lock import locked
from llama_wheel import niced

#: The numpy release the bundle's wheel is built from (see the module docstring).
VERSION = "2.4.6"

#: meson-python settings for a numpy with no BLAS or LAPACK library.
SETTINGS = (
    "-Csetup-args=-Dblas=none",
    "-Csetup-args=-Dlapack=none",
    "-Csetup-args=-Dallow-noblas=true",
)


def wanted(platform_name: str = sys.platform) -> bool:
    """Whether bundles on this OS freeze the BLAS-free numpy (Linux only, see above)."""
    return platform_name.startswith("linux")


@dataclass(frozen=True)
class NumpySpec:
    version: str
    settings: tuple[str, ...]
    python: str
    platform: str
    machine: str

    @property
    def key(self) -> str:
        fields = [self.version, *self.settings, self.python, self.platform, self.machine]
        return f"numpy-{self.version}-noblas-{hashlib.sha256(chr(0).join(fields).encode()).hexdigest()[:16]}"

    def folder(self, root: Path) -> Path:
        return root / "wheels" / self.key


def spec() -> NumpySpec:
    python = f"{sys.implementation.name}{sys.version_info.major}{sys.version_info.minor}"
    return NumpySpec(VERSION, SETTINGS, python, sys.platform, platform.machine())


def cached_wheel(spec: NumpySpec, root: Path) -> Path | None:
    """The finished wheel, if built before (the folder is renamed into place whole)."""
    folder = spec.folder(root)
    wheels = sorted(folder.glob("numpy-*.whl")) if (folder / "build.json").is_file() else []
    return wheels[0] if wheels else None


def build_wheel(spec: NumpySpec, root: Path) -> Path:
    """The BLAS-free numpy wheel: from the cache, or built now from PyPI's sdist and cached."""
    if (found := cached_wheel(spec, root)) is not None:
        return found
    folder = spec.folder(root)
    with locked(root / "locks" / f"{spec.key}.lock", announce=f"waiting for another build of {spec.key}"):
        if (found := cached_wheel(spec, root)) is not None:
            return found
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)  # a crashed build's
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.key}-", dir=folder.parent))
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--no-binary", "numpy"]
        command += ["-w", str(staging), *spec.settings, f"numpy=={spec.version}"]
        print(f"building numpy {spec.version} without BLAS (once; cached in {folder})", flush=True)
        started = time.monotonic()
        try:
            subprocess.run(niced(command), check=True)
            seconds = time.monotonic() - started
            record = {"version": spec.version, "settings": list(spec.settings), "seconds": round(seconds, 1)}
            (staging / "build.json").write_text(json.dumps(record, indent=2))
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        print(f"built numpy {spec.version} without BLAS in {seconds:.0f} s", flush=True)
    wheel = cached_wheel(spec, root)
    if wheel is None:
        raise SystemExit(f"pip wheel finished but no numpy wheel is in {folder}")
    return wheel
