"""Load llama.cpp's ggml backends from the package's own folder, and say what was loaded.

Bundles build llama.cpp with `GGML_BACKEND_DL=ON` (packaging/llama_wheel.py):
every backend, the CPU included, is then a library ggml opens at run time, and
with `GGML_CPU_ALL_VARIANTS=ON` the CPU backend comes as one library per
instruction-set level (`libggml-cpu-haswell.so`, ...), of which ggml loads the
one that scores best on the running CPU. llama-cpp-python 0.3.36 never says
where those libraries are: `llama_backend_init` calls `ggml_backend_load_all()`,
which looks beside the *executable* (the Python interpreter, or the frozen
`pollama`, whose libraries sit in `_internal/llama_cpp/lib`) and in the working
folder, so it would find nothing (and then llama.cpp refuses to load a model:
"no backends are loaded") or whatever a stranger put in the working folder.
`load()` points ggml at the package's `lib` folder before that happens.

A build without `GGML_BACKEND_DL` (the plain `pip install`) links its backends
in: the registry is already filled when the library loads, and nothing is
loaded here. Either way `report()` reads ggml's registry (backends, devices,
their memory) and names the CPU library in use, found from the address of a
function it exported, so the runner's log and `/api/pollama/devices` say which
CPU variant runs. It only runs in runner processes (and the short-lived probe,
`pollama runner --probe`): loading a GPU backend starts its driver, which the
server process must never do (server/gpu.py).

A GPU backend whose library is present but which registers no device (no
driver, no Vulkan loader, only a CPU-type Vulkan device) is not an error: the
model runs on the CPU, and `report().skipped` says why, in words for the log.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from server.runner.rpc_endpoints import Endpoint, RpcError, parse_workers, reachable

#: ggml's device types (`enum ggml_backend_dev_type`, ggml-backend.h), by value.
DEVICE_TYPES = ("cpu", "gpu", "igpu", "accel", "meta")

#: Registry names of ggml's GPU backends, by the name their library file carries.
BACKEND_NAMES = {"cuda": "CUDA", "hip": "ROCm", "vulkan": "Vulkan", "metal": "MTL", "sycl": "SYCL", "musa": "MUSA"}

#: Why a backend library loads but offers no device, when its own log says nothing.
NO_DEVICE_HINT = {
    "vulkan": "no Vulkan GPU found (ggml skips CPU-type Vulkan devices such as Mesa's lavapipe "
    "unless GGML_VK_VISIBLE_DEVICES names them)",
    "cuda": "no CUDA device found (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them all)",
    "hip": "no ROCm device found",
}

# variant names may hold dots ("armv8.2_1"); the extension is the last one
_CPU_LIBRARY = re.compile(r"^(?:lib)?ggml-cpu(?:-(?P<variant>.+))?\.(?:so|dll|dylib)$")
_BACKEND_LIBRARY = re.compile(r"^(?:lib)?ggml-(?P<name>[a-z]+)(?:-.+)?\.(?:so|dll|dylib)$")


class _DevProps(ctypes.Structure):
    """`struct ggml_backend_dev_props` (ggml-backend.h), caps as five bools."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("description", ctypes.c_char_p),
        ("memory_free", ctypes.c_size_t),
        ("memory_total", ctypes.c_size_t),
        ("type", ctypes.c_int),
        ("device_id", ctypes.c_char_p),
        ("caps", ctypes.c_bool * 5),
    ]


class _Feature(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


@dataclass(frozen=True)
class GgmlDevice:
    """One device in ggml's registry, as llama.cpp will see it."""

    backend: str  # registry name: "CPU", "Vulkan", "CUDA", ...
    name: str  # "CPU", "Vulkan0", "CUDA0"
    description: str
    type: str  # "cpu", "gpu", "igpu", "accel"
    memory_free: int
    memory_total: int
    device_id: str | None  # the PCI bus id where the backend knows it


@dataclass(frozen=True)
class SkippedBackend:
    backend: str  # the library's name: "vulkan", "cuda", ...
    library: str
    reason: str


@dataclass(frozen=True)
class BackendReport:
    """What this process's ggml has loaded."""

    dynamic: bool  # GGML_BACKEND_DL: backends were loaded from `library_dir`
    library_dir: str | None
    backends: tuple[str, ...]
    devices: tuple[GgmlDevice, ...]
    cpu_library: str | None  # file name of the CPU backend's library
    cpu_variant: str | None  # "haswell", ...; None when the CPU backend is built in
    cpu_features: tuple[str, ...]  # what that library was compiled for ("AVX2", "FMA", ...)
    skipped: tuple[SkippedBackend, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackendReport:
        return cls(
            dynamic=bool(data["dynamic"]),
            library_dir=data.get("library_dir"),
            backends=tuple(data["backends"]),
            devices=tuple(GgmlDevice(**d) for d in data["devices"]),
            cpu_library=data.get("cpu_library"),
            cpu_variant=data.get("cpu_variant"),
            cpu_features=tuple(data.get("cpu_features", ())),
            skipped=tuple(SkippedBackend(**s) for s in data.get("skipped", ())),
        )

    def log_lines(self) -> list[str]:
        """What the runner writes to its log once the backends are loaded."""
        cpu = self.cpu_library or "none"
        if self.cpu_variant:
            cpu = f"{self.cpu_variant} ({self.cpu_library})"
        lines = [
            f"pollama runner: ggml backends {', '.join(self.backends) or 'none'}"
            f"{' loaded from ' + self.library_dir if self.dynamic and self.library_dir else ' (built in)'}; "
            f"CPU backend {cpu}, features {' '.join(self.cpu_features) or 'none'}"
        ]
        for dev in self.devices:
            if dev.type != "cpu":
                lines.append(
                    f"pollama runner: device {dev.name} ({dev.backend}, {dev.type}): {dev.description}, "
                    f"{dev.memory_free >> 20} MiB free of {dev.memory_total >> 20} MiB"
                )
        for skip in self.skipped:
            lines.append(f"pollama runner: {skip.backend} backend not used, running on the CPU: {skip.reason}")
        return lines


def cpu_variant_of(library: str | None) -> str | None:
    """`libggml-cpu-haswell.so` → "haswell"; the plain `libggml-cpu.so` has none."""
    if not library:
        return None
    match = _CPU_LIBRARY.match(Path(library).name)
    return match["variant"] if match else None


def backend_libraries(folder: Path) -> dict[str, list[Path]]:
    """The backend libraries in `folder`, by backend ("cpu", "vulkan", ...); `ggml-base` is not one."""
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        match = _BACKEND_LIBRARY.match(path.name)
        if match and match["name"] != "base":
            found.setdefault(match["name"], []).append(path)
    return found


def library_folders(package_dir: Path) -> list[Path]:
    """Where a llama-cpp-python install keeps ggml's backend libraries: its `lib` folder (our
    wheels install them there), else the wheel's top-level `bin/` (where ggml's own install
    rule puts them when CMAKE_INSTALL_BINDIR was left alone)."""
    candidates = [package_dir / "lib", package_dir.parent / "bin"]
    return [c for c in candidates if "cpu" in backend_libraries(c)] or [package_dir / "lib"]


class Ggml:
    """ggml's registry functions, bound with their C signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        p, s, c = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        self._bind("ggml_backend_reg_count", [], s)
        self._bind("ggml_backend_reg_get", [s], p)
        self._bind("ggml_backend_reg_name", [p], c)
        self._bind("ggml_backend_reg_by_name", [c], p)
        self._bind("ggml_backend_reg_get_proc_address", [p, c], p)
        self._bind("ggml_backend_dev_count", [], s)
        self._bind("ggml_backend_dev_get", [s], p)
        self._bind("ggml_backend_dev_backend_reg", [p], p)
        self._bind("ggml_backend_dev_get_props", [p, ctypes.POINTER(_DevProps)], None)
        self._bind("ggml_backend_load_all_from_path", [c], None)

    def _bind(self, name: str, argtypes: list[Any], restype: Any) -> None:
        fn = getattr(self.lib, name)
        fn.argtypes = argtypes
        fn.restype = restype

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)


def _ggml(package_dir: Path) -> Ggml:
    """The process's libggml. On Linux and macOS through libllama's handle, whose symbol lookup
    covers its dependencies: opening `lib/libggml.so` by path could map a *second* copy (the
    wheel holds `libggml.so`, `.so.0` and `.so.0.x.y` as separate files, and libllama loaded
    `.so.0`), with a registry of its own. Windows DLLs are single files, found by name."""
    import llama_cpp.llama_cpp as bindings

    if sys.platform == "win32":
        return Ggml(ctypes.CDLL(str(package_dir / "lib" / "ggml.dll")))
    return Ggml(bindings._lib)


def process_ggml() -> Ggml:
    """This process's libggml, bound (for server/runner/rpc.py)."""
    import llama_cpp.llama_cpp as bindings

    return _ggml(Path(bindings.__file__).resolve().parent)


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", errors="replace") if value else ""


def library_of(address: int) -> str | None:
    """The file a loaded function lives in (`dladdr`; `GetModuleFileNameW` on Windows)."""
    if not address:
        return None
    if sys.platform == "win32":
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        module = ctypes.c_void_p()
        flags = 0x4 | 0x2  # FROM_ADDRESS | UNCHANGED_REFCOUNT
        if not kernel32.GetModuleHandleExW(flags, ctypes.c_void_p(address), ctypes.byref(module)):
            return None
        buf = ctypes.create_unicode_buffer(1024)
        n = kernel32.GetModuleFileNameW(module, buf, len(buf))
        return buf.value[:n] if n else None

    class DlInfo(ctypes.Structure):
        _fields_ = [
            ("dli_fname", ctypes.c_char_p),
            ("dli_fbase", ctypes.c_void_p),
            ("dli_sname", ctypes.c_char_p),
            ("dli_saddr", ctypes.c_void_p),
        ]

    libc = ctypes.CDLL(None)
    dladdr = libc.dladdr
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    dladdr.restype = ctypes.c_int
    info = DlInfo()
    if not dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def _features(ggml: Ggml, reg: int) -> tuple[tuple[str, ...], str | None]:
    """The CPU backend's compiled-in features and the library they came from."""
    address = ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_get_features")
    if not address:
        return (), None
    get = ctypes.CFUNCTYPE(ctypes.POINTER(_Feature), ctypes.c_void_p)(address)
    names: list[str] = []
    features = get(reg)
    i = 0
    while features and features[i].name:
        value = _text(features[i].value)
        names.append(_text(features[i].name) + ("" if value == "1" else f"={value}"))
        i += 1
    return tuple(names), library_of(address)


def _devices(ggml: Ggml) -> list[GgmlDevice]:
    out = []
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        props = _DevProps()
        ggml.ggml_backend_dev_get_props(dev, ctypes.byref(props))
        reg = ggml.ggml_backend_dev_backend_reg(dev)
        kind = DEVICE_TYPES[props.type] if 0 <= props.type < len(DEVICE_TYPES) else str(props.type)
        out.append(
            GgmlDevice(
                backend=_text(ggml.ggml_backend_reg_name(reg)) if reg else "",
                name=_text(props.name),
                description=_text(props.description),
                type=kind,
                memory_free=int(props.memory_free),
                memory_total=int(props.memory_total),
                device_id=_text(props.device_id) or None,
            )
        )
    return out


def why_unused(library: Path, backend: str) -> str:
    """Why a backend library present in the folder gave ggml no device. Opening it again
    repeats the dynamic loader's error (ggml's release builds load silently)."""
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        return f"{library.name} could not be loaded: {exc}"
    return NO_DEVICE_HINT.get(backend, f"the {backend} backend found no device")


def skipped_backends(libraries: dict[str, list[Path]], devices: Iterable[GgmlDevice]) -> list[SkippedBackend]:
    """GPU backend libraries that are present but gave llama.cpp no device, with the reason."""
    used = {d.backend for d in devices if d.type != "cpu"}
    out = []
    for backend, paths in sorted(libraries.items()):
        name = BACKEND_NAMES.get(backend)
        if name is None or name in used:
            continue
        out.append(SkippedBackend(backend, paths[0].name, why_unused(paths[0], backend)))
    return out


# ---- llama.cpp's RPC backend (server/runner/rpc.py serves; this adds a server's workers)


def rpc_registry(ggml: Ggml) -> int:
    """The RPC backend's registry in this process's ggml (backends already loaded)."""
    ggml._bind("ggml_backend_register", [ctypes.c_void_p], None)
    reg = ggml.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise RpcError(
            "this build of llama.cpp has no RPC backend: reinstall llama-cpp-python with "
            'CMAKE_ARGS="-DGGML_RPC=ON" (see the README, Workers), or use a pollama bundle'
        )
    return int(reg)


def rpc_function(ggml: Ggml, reg: int, name: str, restype: Any, argtypes: list[Any]) -> Callable[..., Any]:
    """A function the RPC backend exports by name (its registry's proc-address table)."""
    address = ggml.ggml_backend_reg_get_proc_address(reg, name.encode())
    if not address:
        raise RpcError(f"the RPC backend does not export {name}")
    prototype = ctypes.CFUNCTYPE(restype, *argtypes)
    return prototype(address)


def add_rpc_workers(ggml: Ggml, endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Register each reachable worker's devices with ggml; return those added.

    Called by `load()` while it fills the registry, so every
    device list after it (the probe's report, the runner's offload choice)
    has the workers in it. A worker that is down or speaks another protocol
    version is skipped with a line on stderr: the model then loads on what is
    left, as llama.cpp does."""
    wanted = list(endpoints)
    if not wanted:
        return []
    reg = rpc_registry(ggml)
    add_server = rpc_function(ggml, reg, "ggml_backend_rpc_add_server", ctypes.c_void_p, [ctypes.c_char_p])
    added = []
    for endpoint in wanted:
        if (why := reachable(endpoint)) is not None:
            sys.stderr.write(f"pollama runner: skipping RPC worker {endpoint}: {why}\n")
            continue
        worker_reg = add_server(str(endpoint).encode())
        if not worker_reg:
            sys.stderr.write(
                f"pollama runner: skipping RPC worker {endpoint}: it offers no device "
                "(another llama.cpp RPC protocol version?)\n"
            )
            continue
        ggml.ggml_backend_register(worker_reg)
        added.append(endpoint)
        sys.stderr.write(f"pollama runner: using RPC worker {endpoint}\n")
    return added


_loaded: BackendReport | None = None


def load() -> BackendReport:
    """Load the backends (once per process, before `llama_backend_init`) and report them."""
    global _loaded
    if _loaded is not None:
        return _loaded
    import llama_cpp.llama_cpp as bindings

    package_dir = Path(bindings.__file__).resolve().parent
    ggml = _ggml(package_dir)
    dynamic = ggml.ggml_backend_reg_count() == 0  # a GGML_BACKEND_DL build registers nothing by itself
    folder: Path | None = None
    libraries: dict[str, list[Path]] = {}
    if dynamic:
        folder = library_folders(package_dir)[0]
        libraries = backend_libraries(folder)
        ggml.ggml_backend_load_all_from_path(os.fsencode(folder))
    workers = os.environ.get("POLLAMA_RPC_WORKERS")
    if workers:  # the server's RPC workers: their devices join the registry as GPUs
        try:
            add_rpc_workers(ggml, parse_workers(workers))
        except (ValueError, RpcError) as exc:
            sys.stderr.write(f"pollama runner: not using RPC workers: {exc}\n")
    backends = tuple(
        _text(ggml.ggml_backend_reg_name(ggml.ggml_backend_reg_get(i))) for i in range(ggml.ggml_backend_reg_count())
    )
    devices = _devices(ggml)
    cpu = ggml.ggml_backend_reg_by_name(b"CPU")
    features, cpu_path = _features(ggml, cpu) if cpu else ((), None)
    cpu_library = Path(cpu_path).name if cpu_path else None
    _loaded = BackendReport(
        dynamic=dynamic,
        library_dir=str(folder) if folder else None,
        backends=backends,
        devices=tuple(devices),
        cpu_library=cpu_library,
        cpu_variant=cpu_variant_of(cpu_library) if dynamic else None,
        cpu_features=features,
        skipped=tuple(skipped_backends(libraries, devices)),
    )
    return _loaded


#: Backends that drive a GPU through its vendor's own stack; Vulkan sees the same GPUs again.
_VENDOR_BACKENDS = frozenset({"CUDA", "ROCm", "MUSA", "SYCL"})


def offload_devices(devices: Iterable[GgmlDevice]) -> list[GgmlDevice]:
    """The GPUs llama.cpp should offload to when one bundle carries several GPU backends.

    ggml registers a GPU once per backend that can drive it, so an NVIDIA card appears as
    CUDA0 *and* Vulkan0, and llama.cpp would split the model across the two as if they were
    two cards. The vendor's backend wins: a Vulkan device is dropped when a vendor-backend
    device has the same PCI id, or when either id is unknown (then no pairing is safe)."""
    gpus = [d for d in devices if d.type in ("gpu", "igpu")]
    vendor = [d for d in gpus if d.backend in _VENDOR_BACKENDS]
    vendor_ids = {d.device_id for d in vendor}
    kept = []
    for dev in gpus:
        if (
            dev.backend == "Vulkan"
            and vendor
            and (dev.device_id is None or None in vendor_ids or dev.device_id in vendor_ids)
        ):
            continue
        kept.append(dev)
    return kept


def device_handles(names: Iterable[str]) -> list[int]:
    """ggml's device handles for `names` (from `load()`), for `llama_model_params.devices`."""
    import llama_cpp.llama_cpp as bindings

    ggml = _ggml(Path(bindings.__file__).resolve().parent)
    wanted = set(names)
    handles = []
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        props = _DevProps()
        ggml.ggml_backend_dev_get_props(dev, ctypes.byref(props))
        if _text(props.name) in wanted:
            handles.append(int(dev))
    return handles


def cpu_extra_buffer_types() -> tuple[str, ...]:
    """Names of the CPU backend's extra weight buffer types ("AMX", "CPU_REPACK", ...): the
    layouts llama.cpp repacks weights into when `use_extra_bufts` is on (its default),
    through the CPU registry's `ggml_backend_dev_get_extra_bufts` (ggml-cpu.cpp)."""
    import llama_cpp.llama_cpp as bindings

    ggml = _ggml(Path(bindings.__file__).resolve().parent)
    ggml._bind("ggml_backend_buft_name", [ctypes.c_void_p], ctypes.c_char_p)
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        props = _DevProps()
        ggml.ggml_backend_dev_get_props(dev, ctypes.byref(props))
        if props.type != DEVICE_TYPES.index("cpu"):
            continue
        reg = ggml.ggml_backend_dev_backend_reg(dev)
        address = ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts") if reg else None
        if not address:
            return ()
        get = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(address)
        bufts = get(dev)
        names = []
        j = 0
        while bufts and bufts[j]:
            names.append(_text(ggml.ggml_backend_buft_name(bufts[j])))
            j += 1
        return tuple(names)
    return ()
