"""What the installer builders share: the release's version and architecture, the desktop files, the staged tree.

Each builder (`deb.py`, `tarball.py`, `macos/dmg.sh`, `windows/pollama.iss`)
takes a bundle `packaging/build.py` already made (`dist/pollama/`) and only
wraps it, so one frozen program is what every installer carries and what
`build.py --check` tested.
"""

from __future__ import annotations

import os
import platform
import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "resources"
DESKTOP_FILE = RESOURCES / "pollama.desktop"
AUTOSTART_FILE = RESOURCES / "pollama-autostart.desktop"
ICON_SVG = RESOURCES / "icons" / "pollama.svg"

#: `platform.machine()` → Debian's architecture names (`dpkg --print-architecture`).
DEBIAN_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "armhf"}


def version() -> str:
    """The project's version, from pyproject.toml (what `pollama --version` prints)."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def machine() -> str:
    return platform.machine().lower()


def check_bundle(bundle: Path) -> Path:
    """`bundle` is a folder `build.py` made; its executable, or SystemExit saying what is wrong."""
    exe = bundle / "pollama"
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise SystemExit(f"{bundle} is not a pollama bundle (no executable {exe}); build one with packaging/build.py")
    return exe


def copy_tree(source: Path, target: Path) -> None:
    """Copy a bundle, hard-linking where source and target share a file system (a 300 MB bundle in a moment)."""

    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    shutil.copytree(source, target, symlinks=True, copy_function=link_or_copy)
