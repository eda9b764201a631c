"""Launch at login, the native way on each system; off unless the person turns it on.

Linux: an XDG autostart entry (`$XDG_CONFIG_HOME/autostart/pollama.desktop`),
which every desktop that has a session manager honours; the `.deb` also puts
one for every user in `/etc/xdg/autostart`, and a user's entry of the same
name overrides it (the XDG autostart spec), so turning it off writes a
`Hidden=true` entry. macOS: a per-user LaunchAgent plist with RunAtLoad.
Windows: a value under the HKCU `Run` key (the installer's optional
autostart writes the same value, so the setting shows it). The entry itself
is the setting: there is nothing to keep in sync.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

LABEL = "io.pollama.app"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
VALUE_NAME = "pollama"


def launch_command(
    executable: str | None = None, *, frozen: bool | None = None, platform: str | None = None
) -> list[str]:
    """How to start the tray at login: the frozen executable, or this Python with `-m app app`.

    On Windows the program started at login must be a windowed one, or a
    console window opens with the tray: the bundle's `pollama-app.exe` (the
    spec builds it beside `pollama.exe`), or `pythonw.exe` beside `python.exe`.
    """
    exe = Path(executable or sys.executable)
    frozen = getattr(sys, "frozen", False) if frozen is None else frozen
    if (platform or sys.platform).startswith("win"):
        windowed = exe.with_name("pollama-app.exe" if frozen else "pythonw.exe")
        if windowed.exists():
            exe = windowed
    if frozen:
        return [str(exe), "app", "--hidden"]
    return [str(exe), "-m", "app", "app", "--hidden"]


class Autostart(Protocol):
    def is_enabled(self) -> bool: ...

    def set_enabled(self, enabled: bool) -> None: ...


def _system_config_dirs() -> list[Path]:
    """`$XDG_CONFIG_DIRS` (default `/etc/xdg`), where system-wide autostart entries live."""
    dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    return [Path(d) for d in dirs.split(os.pathsep) if d]


def _starts(text: str) -> bool:
    return "Hidden=true" not in text and "X-GNOME-Autostart-enabled=false" not in text


class XdgAutostart:
    def __init__(
        self, command: Sequence[str], config_home: Path | None = None, system_dirs: Sequence[Path] | None = None
    ) -> None:
        base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        self.path = base / "autostart" / "pollama.desktop"
        self.system_paths = [d / "autostart" / "pollama.desktop" for d in (system_dirs or _system_config_dirs())]
        self.command = list(command)

    def is_enabled(self) -> bool:
        """The user's entry decides when there is one; otherwise the first system-wide one does."""
        for path in (self.path, *self.system_paths):
            try:
                return _starts(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except OSError:
                return False
        return False

    def set_enabled(self, enabled: bool) -> None:
        self.path.unlink(missing_ok=True)
        if not enabled and not self.is_enabled():
            return  # no system-wide entry starts it either
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            "[Desktop Entry]\n"
            "Type=Application\n"
            "Name=pollama\n"
            "Comment=Run large language models locally\n"
            f"Exec={shlex.join(self.command)}\n"
            "Icon=pollama\n"
            "Terminal=false\n"
            "Categories=Utility;\n" + ("X-GNOME-Autostart-enabled=true\n" if enabled else "Hidden=true\n"),
            encoding="utf-8",
        )


class LaunchAgent:
    def __init__(self, command: Sequence[str], agents_dir: Path | None = None) -> None:
        self.path = (agents_dir or Path.home() / "Library" / "LaunchAgents") / f"{LABEL}.plist"
        self.command = list(command)

    def is_enabled(self) -> bool:
        try:
            data = plistlib.loads(self.path.read_bytes())
        except (OSError, ValueError, plistlib.InvalidFileException):
            return False
        return bool(data.get("RunAtLoad")) and not data.get("Disabled", False)

    def set_enabled(self, enabled: bool) -> None:
        if not enabled:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plist = {"Label": LABEL, "ProgramArguments": self.command, "RunAtLoad": True, "ProcessType": "Interactive"}
        self.path.write_bytes(plistlib.dumps(plist))


class RunKey:
    """HKCU\\...\\Run; `registry` is the `winreg` module (a fake in tests)."""

    def __init__(self, command: Sequence[str], registry: Any = None) -> None:
        if registry is None:
            import winreg as registry  # type: ignore[no-redef]
        self.reg = registry
        self.command = subprocess.list2cmdline(list(command))

    def is_enabled(self) -> bool:
        try:
            with self.reg.OpenKey(self.reg.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _ = self.reg.QueryValueEx(key, VALUE_NAME)
        except OSError:
            return False
        return bool(value)

    def set_enabled(self, enabled: bool) -> None:
        with self.reg.CreateKey(self.reg.HKEY_CURRENT_USER, RUN_KEY) as key:
            if enabled:
                self.reg.SetValueEx(key, VALUE_NAME, 0, self.reg.REG_SZ, self.command)
                return
            try:
                self.reg.DeleteValue(key, VALUE_NAME)
            except OSError:
                pass


def for_this_system(platform: str | None = None) -> Autostart:
    platform = platform or sys.platform
    command = launch_command()
    if platform == "darwin":
        return LaunchAgent(command)
    if platform.startswith("win"):
        return RunKey(command)
    return XdgAutostart(command)
