"""Shared fixtures: where the golden data lives (read in place, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
GOLDEN = REPO_ROOT.parent / "shared" / "conformance" / "templates"


@pytest.fixture(scope="session")
def golden() -> Path:
    if not GOLDEN.is_dir():
        # CI always has shared/ beside the checkout: there, missing golden data is a failure.
        if os.environ.get("CI"):
            pytest.fail(f"golden data not found at {GOLDEN}")
        pytest.skip(f"golden data not found at {GOLDEN}")
    return GOLDEN
