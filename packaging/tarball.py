"""Wrap a built bundle as a portable Linux archive with an install script: `pollama-<version>-linux-<arch>.tar.gz`.

    python packaging/tarball.py [--bundle dist/pollama] [--out dist] [--level 1-9]

For systems without dpkg. An AppImage would be the single-file form, but
`appimagetool` and the AppImage runtime it embeds are packaged neither by
Debian nor on PyPI (`python-appimage` downloads them from GitHub when it
runs), so they cannot be had where this project builds. The archive holds
`pollama/` (the bundle, runnable in place), `install.sh` (copies it under a
prefix, default `~/.local`, with a `bin/pollama` link, the desktop entry and
the icon; `--uninstall` removes them) and `share/`.
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

from installer_common import DESKTOP_FILE, ICON_SVG, ROOT, check_bundle, machine, version

INSTALL_SCRIPT = ROOT / "packaging" / "linux" / "install.sh"


def build_tarball(bundle: Path, out: Path, level: int = 6) -> Path:
    check_bundle(bundle)
    top = f"pollama-{version()}-linux-{machine()}"
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"{top}.tar.gz"

    def executable(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mode = 0o755
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(archive, "w:gz", compresslevel=level) as tar:
        tar.add(bundle, f"{top}/pollama", filter=owned)
        tar.add(INSTALL_SCRIPT, f"{top}/install.sh", filter=executable)
        tar.add(DESKTOP_FILE, f"{top}/share/pollama.desktop", filter=owned)
        tar.add(ICON_SVG, f"{top}/share/pollama.svg", filter=owned)
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "pollama", help="the folder build.py made")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the archive goes")
    parser.add_argument("--level", type=int, choices=range(1, 10), default=6, help="gzip level (1: fastest)")
    args = parser.parse_args()
    print(build_tarball(args.bundle, args.out, args.level))


if __name__ == "__main__":
    main()
