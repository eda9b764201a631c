"""What goes into a bundle and what is left out, and the one-copy rule for shared libraries.

Used by pollama.spec (filtering PyInstaller's table of contents) and by build.py
(after PyInstaller has written the folder). Kept apart from both so the rules are
plain data and functions a test can read.

* **One copy per library.** A wheel cannot hold symlinks, so llama-cpp-python's
  wheel carries `libllama.so`, `libllama.so.0` and `libllama.so.0.5.0` as three
  full files, and PyInstaller copies all three. The bundle keeps the file under
  its SONAME (`libllama.so.0`, what the dynamic loader looks up) and makes the
  other names symlinks to it: llama-cpp-python opens `libllama.so` by path, and a
  second *file* of the same library would map a second copy of it (with its own
  ggml backend registry) into the process.
* **No GPU driver in the bundle.** `libvulkan.so.1` (the Vulkan loader, which
  finds the installed drivers) and `libcuda.so.1` (part of the NVIDIA driver)
  belong to the machine: a bundled copy could not match its drivers. Without them
  ggml skips that backend and the model runs on the CPU (the runner logs why).
  The CUDA *runtime* (`libcudart`, `libcublas`) is not part of the driver and is
  bundled, as Ollama ships it.
* **Only the Qt that pollama uses.** pollama imports QtCore, QtGui, QtWidgets and
  QtNetwork. PyInstaller's Qt hooks also collect every plugin of those modules'
  plugin types, some of which link further Qt modules (QtSvg, QtDBus,
  QtOpenGL, the Wayland client) or system toolkits (GTK), and all translations.
  Kept: the platform plugins a tray app needs (xcb, wayland, offscreen, minimal
  on Linux; cocoa; windows), the image formats a chat image may come in, TLS.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: Python modules never frozen: test tools, and Qt modules pollama does not use.
EXCLUDED_MODULES = [
    "tkinter",
    "pytest",
    "hypothesis",
    "IPython",
    "matplotlib",
    "botocore",
    "boto3",
    # huggingface_hub's Xet transfer engine (11 MB): only for downloading and uploading files;
    # pollama's Discover page only lists (ui/hf_search.py), and hf.co pulls go through the
    # registry client. huggingface_hub looks for it by its metadata, which the bundle never
    # had, so it already ran without it.
    "hf_xet",
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtQuickWidgets",
    "PySide6.QtOpenGL",
    "PySide6.QtOpenGLWidgets",
    "PySide6.QtSvg",
    "PySide6.QtSvgWidgets",
    "PySide6.QtPdf",
    "PySide6.QtSql",
    "PySide6.QtTest",
    "PySide6.QtDBus",
    "PySide6.QtPrintSupport",
    "PySide6.QtXml",
    "PySide6.QtConcurrent",
    "PySide6.QtDesigner",
    "PySide6.QtHelp",
    "PySide6.QtUiTools",
    "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets",
    "PySide6.Qt3DCore",
    "PySide6.QtMultimedia",
    "PySide6.QtCharts",
    "PySide6.QtDataVisualization",
    "PySide6.QtBluetooth",
    "PySide6.QtPositioning",
]

#: Shared libraries of the machine's GPU driver stack (see the module docstring).
SYSTEM_GPU_LIBRARIES = re.compile(r"^(libvulkan\.so\.1|libcuda\.so(\.\d+)*|libnvidia-.*|nvcuda\.dll|vulkan-1\.dll)$")

#: Qt plugin folders (plugins/<type>/...) and which of their plugins to keep; None keeps all.
QT_PLUGINS: dict[str, re.Pattern[str] | None] = {
    "platforms": re.compile(r"(lib)?q(xcb|wayland|offscreen|minimal|cocoa|windows|direct2d)\b"),
    "imageformats": re.compile(r"(lib)?q(jpeg|gif|webp|ico)\b"),
    "platforminputcontexts": None,  # compose key and IBus: typing accents and CJK into the chat box
    "tls": None,
    "networkinformation": None,
    "xcbglintegrations": None,
    "wayland-shell-integration": None,
    "wayland-graphics-integration-client": None,
    "wayland-decoration-client": None,
    "styles": None,
}

_HEADER = re.compile(r"\.(h|hpp)$")
_LIBRARY = re.compile(r"(\.so(\.\d+)*|\.dylib|\.dll|\.lib|\.a)$")


def is_library_or_header(path: str) -> bool:
    return bool(_HEADER.search(path) or _LIBRARY.search(path) or "/cmake/" in path.replace(os.sep, "/"))


def _qt_plugin(dest: str) -> tuple[str, str] | None:
    parts = dest.replace("\\", "/").split("/")
    if "plugins" in parts and parts[0].startswith("PySide6"):
        i = parts.index("plugins")
        if len(parts) > i + 2:
            return parts[i + 1], parts[-1]
    return None


def wanted(dest: str) -> bool:
    """Whether a file PyInstaller collected (by its path in the bundle) belongs there."""
    name = dest.replace("\\", "/").rsplit("/", 1)[-1]
    if SYSTEM_GPU_LIBRARIES.match(name):
        return False
    norm = dest.replace("\\", "/")
    if norm.startswith("PySide6/") and "/translations/" in norm:
        return False  # pollama's own text is English and not translated
    plugin = _qt_plugin(dest)
    if plugin is not None:
        kind, file = plugin
        if kind not in QT_PLUGINS:
            return False
        pattern = QT_PLUGINS[kind]
        return pattern is None or bool(pattern.match(file))
    return True


def keep(toc: Iterable[Any]) -> list[Any]:
    """PyInstaller's table of contents (dest, source, kind), less what the bundle does not need."""
    return [entry for entry in toc if wanted(entry[0])]


def _is_root(dest: str) -> bool:
    """Files loaded for their own sake: Python extensions, Qt plugins, llama.cpp's libraries
    (opened with ctypes), Python itself. Every other library is there because one of these needs it."""
    norm = dest.replace("\\", "/")
    name = norm.rsplit("/", 1)[-1]
    return (
        bool(re.search(r"\.(cpython-[^.]+|abi3)\.(so|pyd)$|\.pyd$", name))
        or "/plugins/" in norm
        or norm.startswith("llama_cpp/")
        or name.startswith(("libpython", "python3", "Python"))
    )


def prune_unreachable(toc: Iterable[Any], imports_of: Callable[[str], Iterable[str]]) -> list[Any]:
    """Drop the libraries PyInstaller collected only for files `keep` dropped (the GTK stack
    of Qt's GTK theme plugin, the Qt modules of dropped plugins): a dependency stays when a
    root (`_is_root`) still needs it, directly or through another dependency."""
    entries = list(toc)
    libs = [e for e in entries if e[2] in ("BINARY", "EXTENSION")]
    by_name: dict[str, list[Any]] = {}
    for entry in libs:
        by_name.setdefault(_base(entry[0]), []).append(entry)
    needed: set[str] = set()
    todo = [e for e in libs if _is_root(e[0])]
    seen: set[str] = set()
    while todo:
        entry = todo.pop()
        if entry[1] in seen:
            continue
        seen.add(entry[1])
        for name in imports_of(entry[1]):
            base = _base(name)
            if base not in needed:
                needed.add(base)
                todo += by_name.get(base, [])
    return [
        e for e in entries if e[2] not in ("BINARY", "EXTENSION", "SYMLINK") or _is_root(e[0]) or _base(e[0]) in needed
    ]


def _base(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _soname_rank(name: str) -> tuple[int, str]:
    """Which of a library's names keeps the real file: the SONAME-like one (`lib.so.0`,
    `lib.0.dylib`) first, then the plain one, the fully versioned one last."""
    if (
        re.search(r"\.so\.\d+$", name)
        or re.search(r"\.\d+\.dylib$", name)
        and not re.search(r"\.\d+\.\d+\.dylib$", name)
    ):
        return 0, name
    if name.endswith((".so", ".dylib")):
        return 1, name
    return 2, name


def library_stem(name: str) -> str:
    """`libllama.so.0.5.0` → `libllama`; `libggml.0.25.3.dylib` → `libggml`."""
    return re.sub(r"(\.\d+)*\.(so|dylib)(\.\d+)*$", "", name)


def dedupe_libraries(folder: Path) -> int:
    """Replace copies of one library under several names (in each folder of the bundle) by
    symlinks to a single file; returns the bytes saved. Windows has no such copies."""
    if sys.platform == "win32":
        return 0
    saved = 0
    groups: dict[tuple[Path, str, str], list[Path]] = {}
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file() or not re.search(r"\.(so|dylib)(\.\d+)*$|\.\d+\.dylib$", path.name):
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        groups.setdefault((path.parent, library_stem(path.name), digest), []).append(path)
    for copies in groups.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda p: _soname_rank(p.name))
        real = copies[0]
        for copy in copies[1:]:
            saved += copy.stat().st_size
            copy.unlink()
            copy.symlink_to(real.name)
    return saved


#: A stripped copy must save at least this much to replace the library (an already stripped one
#: comes out a few bytes different).
STRIP_WORTH = 4096

#: Run by the build venv's Python: exit 0 if the library at argv[1] loads.
_LOADS = "import ctypes, sys; ctypes.CDLL(sys.argv[1])"


def strip_binaries(folder: Path, python: Path | str = sys.executable) -> int:
    """`strip --strip-unneeded` every shared library of the bundle that keeps loading (Linux,
    where `strip` exists); returns the bytes saved.

    Symbol tables are dead weight at run time (the dynamic symbols a library exports stay), and
    several libraries arrive with them: Python's own (pyenv builds libpython with debug info,
    23 MB, 6 MB stripped), llama.cpp's, and some wheels' (PyYAML's `_yaml` 2.7 MB → 0.4 MB,
    Qt's ICU libraries, wcwidth). But `strip` makes some libraries that patchelf
    rewrote (auditwheel does, for wheels that carry libraries) unloadable: "ELF load command
    address/offset not page-aligned", seen with numpy's OpenBLAS. So each library is stripped
    into a copy beside it, and the copy replaces it only if it still loads (`ctypes.CDLL` in a
    child process of `python`, the build venv's, which has the bundle's Python version)
    where the original did."""
    strip = shutil.which("strip")
    if not sys.platform.startswith("linux") or strip is None:
        return 0
    saved = 0
    for path in sorted((folder / "_internal").rglob("*.so*")):
        if path.is_symlink() or not path.is_file() or not _is_elf(path):
            continue
        copy = path.with_name(f".strip-{path.name}")
        try:
            done = subprocess.run([strip, "--strip-unneeded", "-o", str(copy), str(path)], capture_output=True)
            if done.returncode != 0 or path.stat().st_size - copy.stat().st_size < STRIP_WORTH:
                continue
            if _loads(python, path) and _loads(python, copy):
                saved += path.stat().st_size - copy.stat().st_size
                shutil.copymode(path, copy)
                os.replace(copy, path)
        finally:
            copy.unlink(missing_ok=True)
    return saved


def _is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def _loads(python: Path | str, library: Path) -> bool:
    done = subprocess.run([str(python), "-c", _LOADS, str(library)], capture_output=True)
    return done.returncode == 0


def folder_size(folder: Path) -> int:
    """Bytes the bundle takes (symlinks count as nothing, as in an archive)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def sizes_by_part(folder: Path) -> dict[str, int]:
    """The bundle's size split into the parts that matter for trimming it."""
    parts = {"llama.cpp": 0, "Qt": 0, "python": 0, "other": 0}
    for p in folder.rglob("*"):
        if not p.is_file() or p.is_symlink():
            continue
        rel = p.relative_to(folder).as_posix()
        size = p.stat().st_size
        if "llama_cpp/" in rel or "ggml" in p.name:
            parts["llama.cpp"] += size
        elif "PySide6/" in rel or "shiboken6" in rel or "Qt6" in p.name or "libicu" in p.name:
            parts["Qt"] += size
        elif "python3" in p.name or "lib-dynload" in rel or p.name == "base_library.zip":
            parts["python"] += size
        else:
            parts["other"] += size
    return parts


def cpu_variants(folder: Path) -> list[str]:
    """The CPU variants a bundle carries (`libggml-cpu-haswell.so` → "haswell")."""
    found = set()
    for p in folder.rglob("*ggml-cpu-*"):
        match = re.match(r"^(?:lib)?ggml-cpu-(.+)\.(so|dll|dylib)$", p.name)
        if match:
            found.add(match[1])
    return sorted(found)
