"""Build the pollama bundle for this OS, with the llama.cpp backends asked for, and smoke-test it.

    python packaging/build.py [--backend vulkan|cuda|hip ...] [--check] [--jobs N]

One command from a clean checkout, and nothing in the running environment changes:

1. llama-cpp-python (the version pyproject.toml pins) is built from its sdist
   into a wheel per backend, once, and kept in the user's cache
   (packaging/llama_wheel.py: the flags, and why). The base wheel is `cpu` on
   Linux and Windows (every CPU variant; ggml picks one at run time) and
   `metal` on macOS; each `--backend` adds that GPU backend's library.
2. The bundle is frozen by PyInstaller from a build venv holding the base
   wheel, pollama's requirements and PyInstaller (packaging/build_venv.py),
   with pollama's code taken from this checkout.
3. Duplicate copies of the shared libraries become symlinks, and the size is
   reported (packaging/bundle_files.py).

The result is `dist/pollama/` (`dist/pollama.app` on macOS as well): one folder
holding the `pollama` executable, which is also the tray app and each model's
runner process. It runs on the GPU when the machine has the runtime of a
backend it carries, and on the CPU otherwise (the runner's log says why).

`--check` runs the frozen program the way a user would: `pollama serve` on a
free loopback port with an empty model folder, `/api/pollama/devices` (which
CPU variant and backends the runners load), `pollama create` from a tiny
generated GGUF, `pollama run` (a runner process started from the bundle),
`pollama ps`, `pollama stop`, then `pollama app` offscreen until its server
answers. It needs the checkout's `tests/fixtures` to write the model, and exits
non-zero on any failure.

`POLLAMA_BUILD_CACHE` moves the cache (default: the user cache folder's
`pollama/bundle-build`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import bundle_files
import llama_wheel
from build_venv import build_venv

ROOT = Path(__file__).resolve().parents[1]


def backend_library(wheel: Path, backend: str, out: Path) -> Path:
    """Unpack the GPU backend's library from its wheel (once; the wheel's folder keeps it)."""
    name = llama_wheel.BACKEND_LIBRARY[backend]
    filename = f"{name}.dll" if sys.platform == "win32" else f"lib{name}.so"
    target = out / filename
    if target.is_file():
        return target
    with zipfile.ZipFile(wheel) as zf:
        member = f"llama_cpp/lib/{filename}"
        if member not in zf.namelist():
            raise SystemExit(f"{wheel.name} has no {member}: was the {backend} backend built?")
        out.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        with zf.open(member) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(partial, target)
    return target


def freeze(python: Path, dist: Path, work: Path, backend_libs: list[Path]) -> Path:
    env = dict(os.environ, POLLAMA_BACKEND_LIBS=os.pathsep.join(str(p) for p in backend_libs))
    env.pop("PYTHONPATH", None)  # the venv and this checkout only
    command = [str(python), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"]
    command += ["--distpath", str(dist), "--workpath", str(work), str(ROOT / "packaging" / "pollama.spec")]
    subprocess.run(llama_wheel.niced(command), check=True, cwd=ROOT, env=env)
    exe = dist / "pollama" / ("pollama.exe" if sys.platform == "win32" else "pollama")
    if not exe.exists():
        raise SystemExit(f"PyInstaller finished but {exe} is missing")
    return exe


def check(exe: Path) -> None:
    """Serve, ask for devices, create, run and list a tiny model with the frozen executable only."""
    sys.path.insert(0, str(ROOT))
    import httpx

    from tests.fixtures.gguf_models import cached_model
    from tests.support.live_server import LiveServer

    os.environ.pop("PYTHONPATH", None)  # nothing may come from the checkout
    model = cached_model("tiny")
    with tempfile.TemporaryDirectory(prefix="pollama-bundle-") as tmp:
        home = {"HOME": tmp}
        server = LiveServer(Path(tmp) / "models", command=[str(exe), "serve"], env=home).start(timeout=60)
        try:
            devices = httpx.get(server.url + "/api/pollama/devices", timeout=120).json()
            print("$ GET /api/pollama/devices\n" + json.dumps(devices, indent=1), flush=True)
            ggml = devices.get("ggml") or {}
            if not ggml.get("dynamic") and sys.platform != "darwin":
                raise SystemExit("the bundle's llama.cpp was not built with GGML_BACKEND_DL")
            variant = ggml.get("cpu_variant") or ggml.get("cpu_library")
            print(f"runners load the CPU backend {variant!r} and backends {ggml.get('backends')}", flush=True)
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
        if "RPC" in (ggml.get("backends") or ()):
            check_worker(exe, tmp, home)
        # `pollama app` (Qt from the bundle; offscreen where no display is set) starts its embedded server.
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and sys.platform.startswith("linux"):
            home["QT_QPA_PLATFORM"] = "offscreen"
        LiveServer(Path(tmp) / "models", command=[str(exe), "app"], env=home).start(timeout=60).stop()
        print("$ pollama app: the tray app's server answers", flush=True)
    print("bundle check passed", flush=True)


def check_worker(exe: Path, tmp: str, home: dict[str, str]) -> None:
    """`pollama worker` from the bundle serves its CPU, and a server given it plans with its device."""
    import socket

    import httpx

    from tests.support.live_server import LiveServer, free_port

    port = free_port()
    worker = subprocess.Popen([str(exe), "worker", "--port", str(port), "--threads", "1"], env={**os.environ, **home})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("`pollama worker` did not start listening") from None
                time.sleep(0.2)
        env = {**home, "POLLAMA_RPC_WORKERS": f"127.0.0.1:{port}"}
        server = LiveServer(Path(tmp) / "models-rpc", command=[str(exe), "serve"], env=env).start(timeout=60)
        try:
            gpus = httpx.get(server.url + "/api/pollama/devices", timeout=120).json().get("devices") or []
        finally:
            server.stop()
        if not any(f"127.0.0.1:{port}" in json.dumps(d) for d in gpus):
            raise SystemExit(f"the server does not list the worker's device: {gpus}")
        print(f"$ pollama worker: its device is planned with ({gpus})", flush=True)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = [b for b in llama_wheel.backends_here() if b in llama_wheel.BACKEND_LIBRARY]
    parser.add_argument(
        "--backend", action="append", choices=gpu, default=[], help="add a GPU backend (repeatable); default: none"
    )
    parser.add_argument(
        "--no-rpc",
        action="store_true",
        help="leave out llama.cpp's RPC backend (`pollama worker`, POLLAMA_RPC_WORKERS)",
    )
    parser.add_argument("--check", action="store_true", help="smoke-test the bundle after building it")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the bundle goes (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work folder")
    parser.add_argument(
        "--jobs", type=int, default=None, help="parallel compile jobs for wheel builds (default: all cores)"
    )
    args = parser.parse_args()

    started = time.monotonic()
    root = llama_wheel.cache_root()
    base = llama_wheel.build_wheel(llama_wheel.spec_for(llama_wheel.base_backend()), root, jobs=args.jobs)
    libs = []
    timings = {base.spec.backend: base}
    # The RPC backend is a small module every bundle carries (macOS builds no modules).
    extras = [] if args.no_rpc or sys.platform == "darwin" else list(llama_wheel.EXTRA_BACKENDS)
    for backend in dict.fromkeys([*args.backend, *extras]):
        built = llama_wheel.build_wheel(llama_wheel.spec_for(backend), root, jobs=args.jobs)
        timings[backend] = built
        libs.append(backend_library(built.path, backend, built.path.parent / "lib"))
    wheels_done = time.monotonic()
    python = build_venv(base.path, root, base.spec.backend)
    venv_done = time.monotonic()
    exe = freeze(python, args.dist, args.work, libs)
    frozen = time.monotonic()
    bundle = exe.parent
    saved = bundle_files.dedupe_libraries(bundle) + bundle_files.strip_binaries(bundle, python)
    size = bundle_files.folder_size(bundle)
    parts = ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in bundle_files.sizes_by_part(bundle).items())
    for backend, built in timings.items():
        how = "from the cache" if built.cached else f"built in {built.seconds:.0f} s"
        print(f"wheel {backend}: {built.path.name} ({how})", flush=True)
    print(
        f"built {exe}: {size / 1e6:.0f} MB ({parts}; {saved / 1e6:.0f} MB saved by linking duplicate libraries and stripping); "
        f"CPU variants: {', '.join(bundle_files.cpu_variants(bundle)) or 'none'}; "
        f"wheels {wheels_done - started:.0f} s, venv {venv_done - wheels_done:.0f} s, freeze {frozen - venv_done:.0f} s",
        flush=True,
    )
    if args.check:
        check(exe)


if __name__ == "__main__":
    main()
