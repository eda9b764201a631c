"""The virtual environment a bundle is frozen from: pollama's dependencies, one llama-cpp-python
wheel, PyInstaller, and nothing else.

PyInstaller freezes what it can import, so freezing from the developer's own
environment would put *their* llama-cpp-python build in the bundle (a
`-march=native` one, or none with the GPU backend asked for) and every extra
package they have that a hook drags in; it would also mean reinstalling
llama-cpp-python there to change the backend, which is what this replaces.
So each base wheel (packaging/llama_wheel.py) gets its own venv in the build
cache, created once and reused while nothing that went into it changes (its
name is a digest of the wheel, the requirements and the Python version).
GPU backends are extra ggml libraries added beside the base's, not other
Python packages, so the CPU and Vulkan bundles freeze from the same venv.

pollama itself is not installed there: PyInstaller takes `server`, `app` and
`ui` from the checkout (the spec's `pathex`), so the bundle is always the code
being built, never a stale copy in a cached venv.

PySide6 is installed as `pyside6-essentials`: the `pyside6` requirement also
pulls PySide6-Addons (WebEngine, 3D, Multimedia, hundreds of MB) and pollama
uses only QtCore, QtGui, QtWidgets and QtNetwork, which Essentials has. numpy
comes without BLAS on Linux (packaging/numpy_wheel.py: 28 MB less, nothing lost).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path

import numpy_wheel
from cache_lock import locked

ROOT = Path(__file__).resolve().parents[1]

#: Requirements renamed in the build venv (see the module docstring).
RENAMED = {"pyside6": "pyside6-essentials"}


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """pollama's run-time requirements, less llama-cpp-python (the wheel is installed instead),
    plus the `package` extra (PyInstaller)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    out = []
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["package"]]:
        name = re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower()
        if name == "llama-cpp-python":
            continue
        out.append(RENAMED[name] + requirement[len(name) :] if name in RENAMED else requirement)
    return out


def python_in(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def venv_key(wheels: list[Path], reqs: list[str]) -> str:
    """What the venv is made of: each wheel (name and content), the requirements, the Python."""
    digest = hashlib.sha256()
    for part in [*(f"{w.name}\0{_file_digest(w)}" for w in wheels), *reqs, sys.version, sys.platform]:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def own_wheels(root: Path) -> list[Path]:
    """Wheels built here for packages whose PyPI wheels carry what a bundle does not need: on
    Linux, numpy without OpenBLAS (packaging/numpy_wheel.py). pip takes a wheel file named
    beside a requirement as that requirement's choice, as long as it satisfies it."""
    return [numpy_wheel.build_wheel(numpy_wheel.spec(), root)] if numpy_wheel.wanted() else []


def build_venv(wheel: Path, root: Path, label: str) -> Path:
    """The Python of a ready venv with `wheel`, `own_wheels` and pollama's requirements, made if missing."""
    reqs = requirements()
    wheels = [wheel, *own_wheels(root)]
    key = venv_key(wheels, reqs)
    folder = root / "venvs" / f"{label}-{key}"
    marker = folder / "pollama-build-venv.json"
    if marker.is_file():
        return python_in(folder)
    with locked(root / "locks" / f"venv-{label}-{key}.lock", announce=f"waiting for another build of {folder.name}"):
        if marker.is_file():
            return python_in(folder)
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted one: start again
        started = time.monotonic()
        print(f"creating the build venv {folder}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        python = python_in(folder)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *map(str, wheels), *reqs], check=True)
        # the marker last: a venv without it is incomplete and is rebuilt next time
        record = {"wheels": [w.name for w in wheels], "requirements": reqs}
        marker.write_text(json.dumps({**record, "seconds": round(time.monotonic() - started, 1)}))
        for old in (root / "venvs").glob(f"{label}-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)  # superseded: a venv is ~0.5 GB
    return python
