"""Launch at login on each system: what the installers put there and what the Settings checkbox writes."""

from __future__ import annotations

import shutil
from pathlib import Path

from ui.autostart import XdgAutostart, launch_command

ROOT = Path(__file__).resolve().parents[2]
COMMAND = ["/opt/pollama/pollama", "app", "--hidden"]


def test_a_system_wide_entry_from_the_package_is_on_until_the_user_turns_it_off(tmp_path: Path) -> None:
    """The .deb's `/etc/xdg/autostart` entry starts the tray; turning it off overrides it for this user only."""
    system = tmp_path / "etc" / "xdg"
    (system / "autostart").mkdir(parents=True)
    shutil.copy(ROOT / "resources" / "pollama-autostart.desktop", system / "autostart" / "pollama.desktop")
    xdg = XdgAutostart(COMMAND, tmp_path / "home", system_dirs=[tmp_path / "elsewhere", system])
    assert xdg.is_enabled()

    xdg.set_enabled(False)
    assert not xdg.is_enabled()
    assert "Hidden=true" in xdg.path.read_text()  # the user's entry of the same name wins (XDG autostart spec)
    assert (system / "autostart" / "pollama.desktop").exists()  # the package's file is not the user's to change

    xdg.set_enabled(True)
    assert xdg.is_enabled() and "Exec=/opt/pollama/pollama app --hidden" in xdg.path.read_text()
    other_user = XdgAutostart(COMMAND, tmp_path / "other-home", system_dirs=[system])
    assert other_user.is_enabled()


def test_without_a_system_entry_turning_it_off_leaves_no_file(tmp_path: Path) -> None:
    xdg = XdgAutostart(COMMAND, tmp_path / "home", system_dirs=[tmp_path / "etc" / "xdg"])
    xdg.set_enabled(True)
    xdg.set_enabled(False)
    assert not xdg.is_enabled() and not xdg.path.exists()


def test_windows_starts_the_windowed_executable_at_login(tmp_path: Path) -> None:
    """A console executable in the Run key would open a console window beside the tray at every login."""
    bundle = tmp_path / "pollama"
    bundle.mkdir()
    (bundle / "pollama.exe").write_bytes(b"")
    assert launch_command(str(bundle / "pollama.exe"), frozen=True, platform="win32") == [
        str(bundle / "pollama.exe"),
        "app",
        "--hidden",
    ]  # an old bundle without the windowed executable: the console one still works
    (bundle / "pollama-app.exe").write_bytes(b"")
    assert launch_command(str(bundle / "pollama.exe"), frozen=True, platform="win32")[0] == str(
        bundle / "pollama-app.exe"
    )

    python = tmp_path / "venv" / "Scripts"
    python.mkdir(parents=True)
    (python / "python.exe").write_bytes(b"")
    (python / "pythonw.exe").write_bytes(b"")
    assert launch_command(str(python / "python.exe"), frozen=False, platform="win32") == [
        str(python / "pythonw.exe"),
        "-m",
        "app",
        "app",
        "--hidden",
    ]
    assert launch_command("/usr/bin/python3", frozen=False, platform="linux")[0] == "/usr/bin/python3"
