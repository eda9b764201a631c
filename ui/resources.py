"""Find files shipped in the top-level `resources/` folder, frozen or from a checkout."""

from __future__ import annotations

import sys
from pathlib import Path


def resource_dir() -> Path:
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def resource_path(*parts: str) -> Path:
    return resource_dir().joinpath(*parts)


def model_suggestions() -> list[str]:
    """The curated names the pull box suggests (`resources/model-suggestions.txt`, one per line)."""
    try:
        text = resource_path("model-suggestions.txt").read_text(encoding="utf-8")
    except OSError:
        return []
    names = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return sorted({n for n in names if n})
