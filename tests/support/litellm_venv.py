"""LiteLLM in a venv of its own, made once and cached beside the bundle builds, for the rerank test.

LiteLLM cannot live in the test environment: it pulls in boto3, whose botocore pin conflicts
with awscli where both are installed, plus tokenizers, tiktoken and aiohttp (~150 MB). A venv
without the system's packages keeps all that out of the suite's interpreter, and keeping it in
the bundle build cache (`POLLAMA_BUILD_CACHE`, which CI keeps between runs) means only the first
run pays for the install. The test then calls LiteLLM in a subprocess of that venv
(`tests/support/litellm_rerank.py`), so it runs in CI instead of being skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

from tests.packaging.bundles import BUILD_CACHE  # also puts packaging/ on sys.path

#: The LiteLLM release the test drives; pinned so the cached venv is reused until it changes.
LITELLM = "litellm==1.110.2"


def litellm_python(root: Path = BUILD_CACHE, requirement: str = LITELLM) -> Path:
    """The interpreter of a venv with `requirement` installed, made if missing (pip's output on failure)."""
    from cache_lock import locked  # from packaging/, importable once tests.packaging.bundles ran

    name = "litellm-" + requirement.split("==")[-1]
    folder = root / "venvs" / name
    python = folder / "bin" / "python"
    marker = folder / "pollama-litellm-venv"
    if marker.is_file():
        return python
    with locked(root / "locks" / f"venv-{name}.lock", announce=f"waiting for another install of {name}"):
        if marker.is_file():
            return python
        shutil.rmtree(folder, ignore_errors=True)
        venv.EnvBuilder(system_site_packages=False, with_pip=True, clear=True).create(folder)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"pip install {requirement} failed:\n{done.stdout}\n{done.stderr}")
        marker.write_text(requirement + "\n")
    return python
