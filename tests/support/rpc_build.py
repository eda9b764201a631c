"""A Python whose llama.cpp has the RPC backend, for the worker tests: built once, cached.

The plain `pip install llama-cpp-python` has no RPC backend. The bundles'
base wheel (`GGML_BACKEND_DL`, all CPU variants; packaging/llama_wheel.py)
loads backends as modules, so the RPC backend is one more module beside it:
the `rpc` wheel's `libggml-rpc.so`, as a bundle adds `libggml-vulkan.so`.
Both wheels live in the bundle build cache (`POLLAMA_BUILD_CACHE`, which CI
keeps between runs); the venv reuses this interpreter's packages
(`--system-site-packages`) and shadows only llama_cpp, so making it takes
seconds once the wheels exist.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

from tests.packaging.bundles import BUILD_CACHE  # also puts packaging/ on sys.path
from tests.support.cached_venv import cached_venv


def rpc_python(root: Path = BUILD_CACHE) -> Path:
    """The interpreter of a venv with the RPC-enabled llama.cpp, made if missing."""
    import llama_wheel  # from packaging/, importable once tests.packaging.bundles ran

    base = llama_wheel.build_wheel(llama_wheel.spec_for("cpu"), root)
    rpc = llama_wheel.build_wheel(llama_wheel.spec_for("rpc"), root)
    key = hashlib.sha256(f"{base.path.name}\0{rpc.spec.key}".encode()).hexdigest()[:12]

    def install(python: Path) -> str:
        folder = python.parents[1]
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed", str(base.path)],
            check=True,
        )
        lib = Path(
            subprocess.run(
                [
                    str(python),
                    "-c",
                    "import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).parent / 'lib')",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        if not lib.is_relative_to(folder):  # never write into the interpreter the venv borrows from
            raise RuntimeError(f"the venv's llama_cpp is not its own: {lib}")
        with zipfile.ZipFile(rpc.path) as wheel:
            modules = [n for n in wheel.namelist() if Path(n).name.startswith("libggml-rpc.")]
            if not modules:
                raise RuntimeError(f"{rpc.path.name} has no libggml-rpc library")
            for name in modules:
                (lib / Path(name).name).write_bytes(wheel.read(name))
        return f"{base.path.name}\n{rpc.path.name}\n"

    return cached_venv(f"rpc-test-{key}", "pollama-rpc-venv", install, system_site_packages=True, root=root)
