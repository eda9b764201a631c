"""A venv made once under the bundle build cache and reused while its marker file stands.

The RPC-enabled llama.cpp (`tests/support/rpc_build.py`) and LiteLLM
(`tests/support/litellm_venv.py`) each live in such a venv. Making one is
locked (`packaging/cache_lock.py`), so xdist workers wait for the one that is
making it, and it counts as made only once `fill` has finished and the marker
is written: a venv left half-made by a killed run is made again from scratch.
"""

from __future__ import annotations

import shutil
import venv
from collections.abc import Callable
from pathlib import Path

from tests.packaging.bundles import BUILD_CACHE  # also puts packaging/ on sys.path


def cached_venv(
    name: str,
    marker_name: str,
    fill: Callable[[Path], str],
    *,
    system_site_packages: bool,
    root: Path = BUILD_CACHE,
) -> Path:
    """The interpreter of `root/venvs/name`, made if its marker is missing.

    `fill(python)` installs what the venv is for and returns the marker's text; if it
    raises, the folder is removed and the error goes to the caller."""
    from cache_lock import locked  # from packaging/, importable once tests.packaging.bundles ran

    folder = root / "venvs" / name
    python = folder / "bin" / "python"
    marker = folder / marker_name
    if marker.is_file():
        return python
    with locked(root / "locks" / f"venv-{name}.lock", announce=f"waiting for another build of {name}"):
        if marker.is_file():
            return python
        shutil.rmtree(folder, ignore_errors=True)
        venv.EnvBuilder(system_site_packages=system_site_packages, with_pip=True, clear=True).create(folder)
        try:
            text = fill(python)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        marker.write_text(text)
    return python
