"""Collect another module's tests again under a different fixture set (`tests/portable/`).

pytest collects any `test_*` function a module holds, imported or not, and
gives it the fixtures visible from the importing module's folder, so a
module that imports tests reruns them with its own conftest's autouse
fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any


def rerun(module: ModuleType, *names: str) -> dict[str, Callable[..., Any]]:
    """`names` from `module` (all of its `test_*` functions when none are named); a missing name is an error."""
    chosen = names or tuple(n for n in vars(module) if n.startswith("test_") and callable(getattr(module, n)))
    return {name: getattr(module, name) for name in chosen}
