"""The PyInstaller bundle builds from the checkout and works as the real program: serve, create, run, ps, stop, and the tray app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("PyInstaller", reason="pyinstaller is in the test extra")


def test_the_frozen_bundle_serves_creates_and_runs_a_model(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "packaging" / "build.py"),
            "--check",
            "--dist",
            str(tmp_path / "dist"),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "bundle check passed" in done.stdout
    assert "the tray app's server answers" in done.stdout
