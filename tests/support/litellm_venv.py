"""LiteLLM in a venv of its own, made once and cached beside the bundle builds, for the rerank test.

LiteLLM cannot live in the test environment: it pulls in boto3, whose botocore pin conflicts
with awscli where both are installed, plus tokenizers, tiktoken and aiohttp (~150 MB). A venv
without the system's packages keeps all that out of the suite's interpreter, and keeping it in
the bundle build cache (`POLLAMA_BUILD_CACHE`, which CI keeps between runs) means only the first
run pays for the install. The test then calls LiteLLM in a subprocess of that venv
(`tests/support/litellm_rerank.py`), so it runs in CI instead of being skipped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.packaging.bundles import BUILD_CACHE
from tests.support.cached_venv import cached_venv

#: The LiteLLM release the test drives; pinned so the cached venv is reused until it changes.
LITELLM = "litellm==1.110.2"


def litellm_python(root: Path = BUILD_CACHE, requirement: str = LITELLM) -> Path:
    """The interpreter of a venv with `requirement` installed, made if missing (pip's output on failure)."""

    def install(python: Path) -> str:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip install {requirement} failed:\n{done.stdout}\n{done.stderr}")
        return requirement + "\n"

    name = "litellm-" + requirement.split("==")[-1]
    return cached_venv(name, "pollama-litellm-venv", install, system_site_packages=False, root=root)
