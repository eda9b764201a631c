"""The environment of the server's own child processes (runners, the quantizer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def child_env() -> dict[str, str]:
    """This process's environment, set up for a child that runs pollama's code.

    Unbuffered output, so progress and errors arrive as they happen; and,
    from a checkout, the project root on `PYTHONPATH`, so `-m server...`
    finds the same code whatever the working folder.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # ggml's abort handler otherwise attaches gdb and prints a 30-frame backtrace, which
    # buries the GGML_ASSERT line that a crash message should quote (and takes seconds)
    env.setdefault("GGML_NO_BACKTRACE", "1")
    if not getattr(sys, "frozen", False):
        root = str(Path(__file__).resolve().parents[1])
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in parts:
            env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env
