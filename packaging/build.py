"""Build the pollama bundle for this OS, with the llama.cpp backend asked for, and smoke-test it.

    python packaging/build.py [--backend installed|cpu|cuda|metal|vulkan|hip] [--check]

PyInstaller freezes whatever llama-cpp-python is installed, so the GPU backend
is chosen by building llama-cpp-python (pinned in pyproject.toml) with that
backend's CMake flag first; `installed` (the default) keeps the current build.
The result is `dist/pollama/` (`dist/pollama.app` on macOS as well), one folder
holding the `pollama` executable, which is also the tray app and each model's
runner process.

`--check` runs the frozen program the way a user would: `pollama serve` on a
free loopback port with an empty model folder, `pollama create` from a tiny
generated GGUF, `pollama run` (which starts a runner process from the bundle),
`pollama ps`, then stops the server. It needs the checkout's `tests/fixtures`
to write the model, and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The CMake flag that builds llama.cpp with each backend (llama-cpp-python's README).
BACKEND_FLAGS = {
    "cpu": "",
    "cuda": "-DGGML_CUDA=on",
    "metal": "-DGGML_METAL=on",
    "vulkan": "-DGGML_VULKAN=on",
    "hip": "-DGGML_HIP=on",
}


def pinned_llama_cpp() -> str:
    """The exact llama-cpp-python requirement from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        if requirement.replace(" ", "").startswith("llama-cpp-python=="):
            return str(requirement)
    raise SystemExit("pyproject.toml does not pin llama-cpp-python")


def install_backend(backend: str) -> None:
    env = dict(os.environ, CMAKE_ARGS=BACKEND_FLAGS[backend], FORCE_CMAKE="1")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--force-reinstall",
        "--no-deps",
        "--no-cache-dir",
        pinned_llama_cpp(),
    ]
    print("building llama-cpp-python:", f"CMAKE_ARGS={env['CMAKE_ARGS']!r}", " ".join(command), flush=True)
    subprocess.run(command, env=env, check=True)


def freeze(dist: Path, work: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(ROOT / "packaging" / "pollama.spec"),
    ]
    subprocess.run(command, check=True, cwd=ROOT)
    exe = dist / "pollama" / ("pollama.exe" if sys.platform == "win32" else "pollama")
    if not exe.exists():
        raise SystemExit(f"PyInstaller finished but {exe} is missing")
    return exe


def check(exe: Path) -> None:
    """Serve, create, run and list a tiny model with the frozen executable only."""
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.gguf_models import cached_model
    from tests.support.live_server import LiveServer

    os.environ.pop("PYTHONPATH", None)  # nothing may come from the checkout
    model = cached_model("tiny")
    with tempfile.TemporaryDirectory(prefix="pollama-bundle-") as tmp:
        home = {"HOME": tmp}
        server = LiveServer(Path(tmp) / "models", command=[str(exe), "serve"], env=home).start(timeout=60)
        try:
            modelfile = Path(tmp) / "Modelfile"
            modelfile.write_text(f"FROM {model}\nPARAMETER num_predict 8\n")

            def cli(*args: str) -> str:
                done = subprocess.run(
                    [str(exe), *args], env=server.env(), cwd=tmp, capture_output=True, text=True, timeout=300
                )
                print(f"$ pollama {' '.join(args)}\n{done.stdout}{done.stderr}", flush=True)
                if done.returncode != 0:
                    raise SystemExit(f"`pollama {' '.join(args)}` exited with {done.returncode}")
                return done.stdout

            cli("create", "bundle-check", "-f", str(modelfile))
            if not cli("run", "bundle-check", "hello there").strip():
                raise SystemExit("`pollama run` printed nothing")
            if "bundle-check" not in cli("ps"):
                raise SystemExit("`pollama ps` does not list the model that just ran")
            cli("stop", "bundle-check")
        finally:
            server.stop()
        # `pollama app` (Qt from the bundle; offscreen where no display is set) starts its embedded server.
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and sys.platform.startswith("linux"):
            home["QT_QPA_PLATFORM"] = "offscreen"
        LiveServer(Path(tmp) / "models", command=[str(exe), "app"], env=home).start(timeout=60).stop()
        print("$ pollama app: the tray app's server answers", flush=True)
    print("bundle check passed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["installed", *BACKEND_FLAGS], default="installed")
    parser.add_argument("--check", action="store_true", help="smoke-test the bundle after building it")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the bundle goes (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work folder")
    args = parser.parse_args()
    if args.backend != "installed":
        install_backend(args.backend)
    exe = freeze(args.dist, args.work)
    print(f"built {exe}", flush=True)
    if args.check:
        check(exe)


if __name__ == "__main__":
    main()
