"""llama-cpp-python wheels for the bundles: built once per backend, kept in the user's cache.

A bundle must not depend on what the developer happens to have installed, and
building one must not change it: the old build script reinstalled llama-cpp-python
*into the running environment* with a backend's CMake flag. Here each backend's
wheel is built from the pinned version's sdist with `pip wheel`, into a folder
of the user's cache named by a digest of the version, the CMake flags and the
platform, so a second build (or the next CI run, whose cache folder persists)
takes seconds. pip's own wheel cache is not used (`--no-cache-dir`): it keys a
built wheel by the sdist alone and ignores CMAKE_ARGS, so it would hand a CPU
wheel to a Vulkan build.

The flags follow llama.cpp's own release builds (`.github/workflows/release.yml`
in ggml-org/llama.cpp): `GGML_NATIVE=OFF` (no `-march=native`, so the bundle
runs on other CPUs), `GGML_BACKEND_DL=ON` (each backend a library ggml loads at
run time, so a missing GPU runtime disables that backend instead of failing to
start) and `GGML_CPU_ALL_VARIANTS=ON` (one CPU library per instruction-set level;
ggml scores each against the running CPU and loads the best).

* The `cpu` wheel is the base of every bundle on Linux and Windows: libllama,
  libmtmd and all CPU variants.
* A GPU wheel (`vulkan`, `cuda`, `hip`) is built with `GGML_CPU=OFF`, as
  llama.cpp's Windows releases build their CUDA and Vulkan packages: only its
  backend library (`libggml-vulkan.so`, ...) goes into the bundle, beside the base.
  With `GGML_BACKEND_DL` libllama has no backend compiled in, and ggml checks each
  backend's API version when it loads it, so the pieces fit.
* macOS has one wheel, `metal`: llama-cpp-python turns Metal on (shaders embedded)
  for every Apple build, and llama.cpp's macOS releases do not use `GGML_BACKEND_DL`
  (all Apple Silicon shares one CPU baseline).

ggml's backend modules install to CMake's `bin` folder, which in a wheel is a
top-level `bin/` outside the package; `CMAKE_INSTALL_BINDIR=llama_cpp/lib` puts
them beside libllama, where `server/runner/ggml_backends.py` loads them from.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from cache_lock import locked

ROOT = Path(__file__).resolve().parents[1]

#: Backends a bundle can be built with on each OS; the first is the base every bundle has.
BACKENDS_BY_OS = {
    "linux": ("cpu", "vulkan", "cuda", "hip"),
    "win32": ("cpu", "vulkan", "cuda", "hip"),
    "darwin": ("metal",),
}

#: The library each backend's wheel contributes to a bundle (`None`: the whole wheel is the base).
BACKEND_LIBRARY = {"vulkan": "ggml-vulkan", "cuda": "ggml-cuda", "hip": "ggml-hip", "rpc": "ggml-rpc"}

#: Backends that are not a device of this machine but go beside any base: ggml's RPC client and
#: server (`pollama worker`, `POLLAMA_RPC_WORKERS`), built as its own module like a GPU backend.
EXTRA_BACKENDS = ("rpc",)


def os_key(platform_name: str = sys.platform) -> str:
    return "linux" if platform_name.startswith("linux") else platform_name


def backends_here(platform_name: str = sys.platform) -> tuple[str, ...]:
    return BACKENDS_BY_OS.get(os_key(platform_name), ("cpu",))


def base_backend(platform_name: str = sys.platform) -> str:
    return backends_here(platform_name)[0]


def cmake_args(backend: str, platform_name: str = sys.platform, machine: str | None = None) -> tuple[str, ...]:
    """The CMake flags of `backend`'s wheel on this OS (see the module docstring for why)."""
    system = os_key(platform_name)
    if backend not in BACKENDS_BY_OS.get(system, ()) and not (backend in EXTRA_BACKENDS and system != "darwin"):
        raise ValueError(f"the {backend} backend is not built on {system}")
    if backend == "metal":
        # llama.cpp's macOS release flags; llama-cpp-python's CMakeLists forces GGML_METAL and
        # GGML_METAL_EMBED_LIBRARY on for Apple anyway, the flags say so explicitly.
        arch = machine or platform.machine()
        flags = ["-DGGML_NATIVE=OFF", "-DGGML_METAL_EMBED_LIBRARY=ON", "-DCMAKE_OSX_DEPLOYMENT_TARGET=13.3"]
        flags.append("-DGGML_METAL=ON" if arch == "arm64" else "-DGGML_METAL=OFF")  # as the x64 release
        return tuple(flags)
    rpath = "$ORIGIN" if system == "linux" else ""
    common = [
        "-DGGML_NATIVE=OFF",
        "-DGGML_BACKEND_DL=ON",
        "-DCMAKE_INSTALL_BINDIR=llama_cpp/lib",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
    ]
    if rpath:
        common.append(f"-DCMAKE_INSTALL_RPATH={rpath}")
    if backend == "cpu":
        return (*common, "-DGGML_CPU_ALL_VARIANTS=ON")
    gpu_only = [*common, "-DGGML_CPU=OFF", "-DLLAVA_BUILD=OFF"]
    if backend == "rpc":
        return (*gpu_only, "-DGGML_RPC=ON")
    if backend == "vulkan":
        flags = [*gpu_only, "-DGGML_VULKAN=ON"]
        if system == "linux" and (include := vulkan_headers()) is not None:
            flags.append(f"-DVulkan_INCLUDE_DIR={include}")
        return tuple(flags)
    if backend == "cuda":
        # No CMAKE_CUDA_ARCHITECTURES: ggml-cuda's CMakeLists then builds its broad default set,
        # as the release does; POLLAMA_CUDA_ARCHITECTURES narrows it (e.g. "90" for an H100/H200).
        flags = [*gpu_only, "-DGGML_CUDA=ON", "-DGGML_CUDA_NCCL=OFF"]
        if archs := os.environ.get("POLLAMA_CUDA_ARCHITECTURES"):
            flags.append(f"-DCMAKE_CUDA_ARCHITECTURES={archs}")
        return tuple(flags)
    if backend == "hip":
        # llama.cpp's docs/build.md (HIP): GGML_HIP with the GPU targets to compile for; the
        # release lists them per ROCm version. POLLAMA_HIP_TARGETS picks them here.
        flags = [*gpu_only, "-DGGML_HIP=ON"]
        targets = os.environ.get("POLLAMA_HIP_TARGETS", "gfx1030;gfx1100;gfx1101;gfx1102;gfx1200;gfx1201;gfx90a;gfx942")
        flags.append(f"-DGPU_TARGETS={targets}")
        return tuple(flags)
    raise ValueError(f"unknown backend {backend!r}")


#: The oldest Vulkan headers ggml-vulkan in llama-cpp-python 0.3.36 compiles with: it uses
#: VK_EXT_layer_settings, VK_KHR_cooperative_matrix and maintenance5 unguarded (1.3.275 is
#: Ubuntu 24.04's, which llama.cpp's own CI builds with).
VULKAN_HEADERS_NEEDED = 275
#: Debian's newer headers, for a Debian 12 builder (which has 1.3.239): the `libvulkan-dev`
#: package of Debian 13, unpacked into the build cache; only its headers are used, and the
#: program still links and runs against the machine's own Vulkan loader.
VULKAN_HEADERS_SUITE = "trixie"


def header_version(vulkan_core: Path) -> int | None:
    """VK_HEADER_VERSION of a vulkan_core.h."""
    if not vulkan_core.is_file():
        return None
    match = re.search(r"^#define VK_HEADER_VERSION (\d+)", vulkan_core.read_text(errors="replace"), re.MULTILINE)
    return int(match[1]) if match else None


def vulkan_headers(root: Path | None = None) -> Path | None:
    """An include folder with Vulkan headers new enough, when the system's are not (None: use
    the system's). Fetched with apt's ordinary client from Debian, once per cache."""
    system = header_version(Path("/usr/include/vulkan/vulkan_core.h"))
    if system is not None and system >= VULKAN_HEADERS_NEEDED:
        return None
    folder = (root or cache_root()) / f"vulkan-headers-{VULKAN_HEADERS_SUITE}"
    include = folder / "usr" / "include"
    found = header_version(include / "vulkan" / "vulkan_core.h")
    if found is not None and found >= VULKAN_HEADERS_NEEDED:
        return include
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SystemExit(
            f"the Vulkan headers here are version {system}; ggml-vulkan needs 1.3.{VULKAN_HEADERS_NEEDED} or newer"
        )
    with locked(folder.parent / "locks" / "vulkan-headers.lock"), tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        (state / "lists" / "partial").mkdir(parents=True)
        (state / "cache" / "archives" / "partial").mkdir(parents=True)
        sources = state / "sources.list"
        sources.write_text(f"deb http://deb.debian.org/debian {VULKAN_HEADERS_SUITE} main\n")
        apt = [
            "apt-get",
            "-qq",
            f"-o Dir::Etc::SourceList={sources}",
            "-o Dir::Etc::SourceParts=/dev/null",
            f"-o Dir::State::Lists={state / 'lists'}",
            f"-o Dir::Cache={state / 'cache'}",
        ]
        apt = [part for arg in apt for part in arg.split(" ", 1)]
        print(
            f"fetching Debian {VULKAN_HEADERS_SUITE}'s libvulkan-dev for its headers (the system's are 1.3.{system})",
            flush=True,
        )
        subprocess.run([*apt, "update"], check=True)
        subprocess.run([*apt, "download", "libvulkan-dev"], check=True, cwd=tmp)
        (deb,) = state.glob("libvulkan-dev_*.deb")
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".vulkan-headers-"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    return include


def pinned_version() -> str:
    """The llama-cpp-python version pyproject.toml pins (`==`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name, sep, version = requirement.replace(" ", "").partition("==")
        if sep and name.lower() == "llama-cpp-python":
            return version
    raise SystemExit("pyproject.toml does not pin llama-cpp-python with ==")


def cache_root() -> Path:
    """Where built wheels (and build venvs) live: `$POLLAMA_BUILD_CACHE`, else the user's cache."""
    env = os.environ.get("POLLAMA_BUILD_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("pollama")) / "bundle-build"


@dataclass(frozen=True)
class WheelSpec:
    """One wheel to build: what identifies it is exactly what goes into its cache key."""

    backend: str
    version: str
    cmake_args: tuple[str, ...]
    platform: str
    machine: str

    @property
    def key(self) -> str:
        fields = [self.version, *self.cmake_args, self.platform, self.machine]
        return f"{self.version}-{self.backend}-{hashlib.sha256(chr(0).join(fields).encode()).hexdigest()[:16]}"

    def folder(self, root: Path) -> Path:
        return root / "wheels" / self.key


def spec_for(backend: str) -> WheelSpec:
    return WheelSpec(backend, pinned_version(), cmake_args(backend), os_key(), platform.machine())


@dataclass(frozen=True)
class BuiltWheel:
    spec: WheelSpec
    path: Path
    seconds: float  # how long building it took (0 when it came from the cache)
    cached: bool


def cached_wheel(spec: WheelSpec, root: Path) -> Path | None:
    """The finished wheel for `spec`, if one was built before. A folder only ever appears
    complete (it is renamed into place after the build), so a wheel in it is whole."""
    folder = spec.folder(root)
    wheels = sorted(folder.glob("llama_cpp_python-*.whl")) if (folder / "build.json").is_file() else []
    return wheels[0] if wheels else None


def sdist(version: str, root: Path) -> Path:
    """The pinned sdist, downloaded once into the cache (pip's ordinary client, no binaries)."""
    folder = root / "sdist"
    found = sorted(folder.glob(f"llama_cpp_python-{version}.tar.gz"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp]
        subprocess.run([*command, f"llama-cpp-python=={version}"], check=True)
        (got,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        target = folder / got.name
        os.replace(got, target)
    return target


def niced(command: list[str]) -> list[str]:
    """A build shares the machine: run it at low priority where `nice` exists."""
    nice = shutil.which("nice")
    return [nice, "-n", "10", *command] if nice else command


def build_wheel(spec: WheelSpec, root: Path | None = None, *, jobs: int | None = None) -> BuiltWheel:
    """The wheel for `spec`: from the cache, or built now (`pip wheel` from the sdist) and cached."""
    root = root or cache_root()
    if (found := cached_wheel(spec, root)) is not None:
        return BuiltWheel(spec, found, 0.0, True)
    folder = spec.folder(root)
    with locked(root / "locks" / f"{spec.key}.lock", announce=f"waiting for another build of {spec.key}"):
        if (found := cached_wheel(spec, root)) is not None:  # the other build finished it
            return BuiltWheel(spec, found, 0.0, True)
        with locked(root / "locks" / "sdist.lock"):
            source = sdist(spec.version, root)
        seconds = _pip_wheel(spec, source, folder, jobs or os.cpu_count() or 2)
    wheel = cached_wheel(spec, root)
    if wheel is None:
        raise SystemExit(f"pip wheel finished but no wheel is in {folder}")
    print(f"built {wheel.name} in {seconds:.0f} s, cached in {folder}", flush=True)
    return BuiltWheel(spec, wheel, seconds, False)


def hip_compiler_env(env: dict[str, str]) -> dict[str, str]:
    """HIP builds compile with ROCm's clang, named by HIPCXX and HIP_PATH (llama.cpp's
    docs/build.md, HIP: `HIPCXX="$(hipconfig -l)/clang" HIP_PATH="$(hipconfig -R)"`)."""
    hipconfig = shutil.which("hipconfig")
    if hipconfig is None or "HIPCXX" in env:
        return {}
    llvm = subprocess.run([hipconfig, "-l"], capture_output=True, text=True, check=True).stdout.strip()
    rocm = subprocess.run([hipconfig, "-R"], capture_output=True, text=True, check=True).stdout.strip()
    return {"HIPCXX": f"{llvm}/clang", "HIP_PATH": rocm}


def _pip_wheel(spec: WheelSpec, source: Path, folder: Path, jobs: int) -> float:
    """Build into a staging folder and rename it into place, so `folder` is whole or absent."""
    env = dict(os.environ, CMAKE_ARGS=" ".join(spec.cmake_args), CMAKE_BUILD_PARALLEL_LEVEL=str(jobs))
    env.pop("FORCE_CMAKE", None)
    if spec.backend == "hip":
        env.update(hip_compiler_env(env))
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)  # a folder without build.json is a crashed build's
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.key}-", dir=folder.parent))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir"]
    command += ["--no-binary", "llama-cpp-python", "-w", str(staging), str(source)]
    print(f"building llama-cpp-python {spec.version} ({spec.backend}), CMAKE_ARGS={env['CMAKE_ARGS']!r}", flush=True)
    started = time.monotonic()
    try:
        subprocess.run(niced(command), env=env, check=True)
        seconds = time.monotonic() - started
        record = {
            "backend": spec.backend,
            "version": spec.version,
            "cmake_args": list(spec.cmake_args),
            "platform": spec.platform,
            "machine": spec.machine,
            "seconds": round(seconds, 1),
            "jobs": jobs,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / "build.json").write_text(json.dumps(record, indent=2))
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return seconds


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Build (or find in the cache) llama-cpp-python's wheel for a backend.")
    parser.add_argument("backend", choices=(*backends_here(), *EXTRA_BACKENDS))
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: all cores)")
    args = parser.parse_args()
    built = build_wheel(spec_for(args.backend), jobs=args.jobs)
    print(built.path)


if __name__ == "__main__":
    main()
