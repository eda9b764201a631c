"""Building bundles the way a user or CI does, from a clean copy of this checkout, for the tests.

The packaging scripts live in `packaging/` (not a package: its name is taken by
PyPI's `packaging`), so they are imported with that folder on `sys.path`.

The test suite gives every test its own HOME and XDG folders (tests/conftest.py),
which would make the wheel cache cold on every run; the build cache is therefore
resolved here, at import time, from the real environment, and passed to the
builds as `POLLAMA_BUILD_CACHE`. That folder persists between CI runs, as pip's
cache does, so only the first run on a machine compiles llama.cpp.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
if str(PACKAGING) not in sys.path:
    sys.path.insert(0, str(PACKAGING))

#: The build cache of the machine (not of the test's temporary HOME).
BUILD_CACHE = Path(
    os.environ.get("POLLAMA_BUILD_CACHE") or Path(platformdirs.user_cache_dir("pollama")) / "bundle-build"
)
#: The generated test models, shared with the rest of the suite.
MODEL_CACHE = Path(os.environ.get("POLLAMA_TEST_CACHE") or ROOT / "tests" / ".cache")

#: A cold build compiles llama.cpp (all CPU variants, or the Vulkan shaders): over an hour on
#: two cores. A warm one (wheels cached) takes minutes.
BUILD_TIMEOUT = 4 * 3600


def clean_checkout(dest: Path) -> Path:
    """The files git knows of (tracked, and new ones not ignored), copied to `dest`: no build
    output, caches or virtual environments of the working tree come along."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = Path(os.fsdecode(raw))
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


@dataclass(frozen=True)
class Built:
    checkout: Path
    bundle: Path  # dist/pollama
    exe: Path
    output: str

    @property
    def lib(self) -> Path:
        return self.bundle / "_internal" / "llama_cpp" / "lib"


def build(tmp: Path, *args: str) -> Built:
    """`python packaging/build.py ARGS` in a clean copy of the checkout; fails the test on error."""
    checkout = clean_checkout(tmp / "checkout")
    dist = tmp / "dist"
    env = dict(os.environ, POLLAMA_BUILD_CACHE=str(BUILD_CACHE), POLLAMA_TEST_CACHE=str(MODEL_CACHE))
    env.pop("PYTHONPATH", None)
    command = [sys.executable, "packaging/build.py", "--dist", str(dist), "--work", str(tmp / "work"), *args]
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    exe = dist / "pollama" / ("pollama.exe" if sys.platform == "win32" else "pollama")
    assert exe.is_file(), output[-3000:]
    return Built(checkout, dist / "pollama", exe, output)


def cpu_flags() -> set[str]:
    """This CPU's feature flags as Linux names them (/proc/cpuinfo)."""
    text = Path("/proc/cpuinfo").read_text()
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    return set(match[1].split()) if match else set()


#: ggml's CPU feature names (ggml_backend_cpu_get_features) as /proc/cpuinfo spells them.
LINUX_FLAG = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
