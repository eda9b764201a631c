"""Wrap a built bundle as a Debian package: `pollama_<version>_<arch>.deb`, built with `dpkg-deb`.

    python packaging/deb.py [--bundle dist/pollama] [--out dist] [--compression xz|gzip|zstd|none] [--level 0-9]

The package installs the bundle in `/opt/pollama`, links `/usr/bin/pollama`
to it, and adds the desktop entry and icon (`/usr/share/applications`,
`/usr/share/icons/hicolor`) and an autostart entry for every user in
`/etc/xdg/autostart` (a conffile; a person turns it off in Settings, which
writes a per-user override). No maintainer scripts: the icon cache and the
desktop database are refreshed by the dpkg triggers that `hicolor-icon-theme`
and `desktop-file-utils` declare, and pollama writes nothing under
`/opt/pollama` at run time, so `apt-get purge` leaves nothing behind.

`Depends` lists the Debian packages that own the system libraries the
bundle's programs and libraries link to (what `dpkg-shlibdeps` would find,
resolved with `ldd` and `dpkg -S` on the building machine), so a minimal
system installing the package gets what the tray's Qt needs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from installer_common import (
    AUTOSTART_FILE,
    DEBIAN_ARCH,
    DESKTOP_FILE,
    ICON_SVG,
    ROOT,
    check_bundle,
    copy_tree,
    machine,
    version,
)

MAINTAINER = "pollama developers <pollama@localhost>"
DESCRIPTION = """\
Local LLM server with an Ollama-compatible API, as a tray app
 pollama runs large language models on this computer and answers apps the
 way Ollama does (and OpenAI's and Anthropic's APIs), with a tray icon and a
 model library window. It reads and writes Ollama's model store."""
#: Libraries every Debian system has (the essential set): never worth a Depends line.
ESSENTIAL = frozenset({"libc6", "libgcc-s1", "libstdc++6", "zlib1g"})


def elf_files(tree: Path) -> list[Path]:
    out = []
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(path)
    return out


def system_dependencies(tree: Path) -> tuple[list[str], list[str]]:
    """(Debian packages owning the system libraries the bundle links to, sonames found nowhere).

    `ldd` runs with the bundle's library folder on the search path, as the
    PyInstaller bootloader sets it, so what the bundle carries resolves inside it.
    """
    inside = {p.name for p in tree.rglob("*")}
    env = dict(os.environ, LD_LIBRARY_PATH=str(tree / "_internal"))
    libraries: set[str] = set()
    missing: set[str] = set()
    for path in elf_files(tree):
        done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env)
        for line in done.stdout.splitlines():
            match = re.match(r"\s*(\S+) => (not found|(/\S+))", line)
            if not match:
                continue
            if match.group(2) == "not found":
                if match.group(1) not in inside:
                    missing.add(match.group(1))
                continue
            resolved = Path(match.group(3)).resolve()
            if tree.resolve() not in resolved.parents:
                libraries.add(str(resolved))
    packages: set[str] = set()
    for library in sorted(libraries):
        owner = subprocess.run(["dpkg", "-S", library], capture_output=True, text=True)
        if owner.returncode != 0:  # /lib → /usr/lib merged: dpkg knows one of the two names
            alias = library.replace("/usr/lib/", "/lib/", 1)
            owner = subprocess.run(["dpkg", "-S", alias], capture_output=True, text=True)
        if owner.returncode == 0:
            packages.update(p.split(":")[0].strip() for p in owner.stdout.split(": ", 1)[0].split(","))
    return sorted(packages - ESSENTIAL), sorted(missing)


def control(arch: str, depends: list[str], installed_kib: int) -> str:
    lines = [
        "Package: pollama",
        f"Version: {version()}",
        f"Architecture: {arch}",
        f"Maintainer: {MAINTAINER}",
        f"Installed-Size: {installed_kib}",
        "Section: utils",
        "Priority: optional",
    ]
    if depends:
        lines.append("Depends: " + ", ".join(depends))
    lines.append("Recommends: hicolor-icon-theme, desktop-file-utils")
    lines.append(f"Description: {DESCRIPTION}")
    return "\n".join(lines) + "\n"


def build_deb(bundle: Path, out: Path, compression: str = "xz", level: int | None = None) -> Path:
    check_bundle(bundle)
    arch = DEBIAN_ARCH.get(machine(), machine())
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pollama-deb-", dir=out) as tmp:
        stage = Path(tmp) / "root"
        copy_tree(bundle, stage / "opt" / "pollama")
        (stage / "usr" / "bin").mkdir(parents=True)
        os.symlink("/opt/pollama/pollama", stage / "usr" / "bin" / "pollama")
        for source, target in (
            (DESKTOP_FILE, "usr/share/applications/pollama.desktop"),
            (ICON_SVG, "usr/share/icons/hicolor/scalable/apps/pollama.svg"),
            (AUTOSTART_FILE, "etc/xdg/autostart/pollama.desktop"),
        ):
            (stage / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, stage / target)
            os.chmod(stage / target, 0o644)
        depends, missing = system_dependencies(stage / "opt" / "pollama")
        if missing:
            print("note: no file on this system provides " + ", ".join(missing), file=sys.stderr)
        size = sum(p.lstat().st_size for p in stage.rglob("*") if not p.is_dir())
        debian = stage / "DEBIAN"
        debian.mkdir()
        (debian / "control").write_text(control(arch, depends, (size + 1023) // 1024))
        (debian / "conffiles").write_text("/etc/xdg/autostart/pollama.desktop\n")
        for path in [stage, *stage.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o755)
        deb = out / f"pollama_{version()}_{arch}.deb"
        subprocess.run(
            [
                "dpkg-deb",
                "--root-owner-group",
                f"-Z{compression}",
                *([f"-z{level}"] if level is not None else []),
                "--build",
                str(stage),
                str(deb),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return deb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "pollama", help="the folder build.py made")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the .deb goes")
    parser.add_argument("--compression", choices=["xz", "gzip", "zstd", "none"], default="xz")
    parser.add_argument("--level", type=int, choices=range(10), help="compression level (dpkg-deb's default if unset)")
    args = parser.parse_args()
    if shutil.which("dpkg-deb") is None:
        raise SystemExit("dpkg-deb is not installed (Debian's dpkg package)")
    print(build_deb(args.bundle, args.out, args.compression, args.level))


if __name__ == "__main__":
    main()
