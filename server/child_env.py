"""The environment of the server's own child processes (runners, the quantizer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Settings the server hands to every child through its environment, set once at start-up
#: (`pass_to_children`): a runner and the device probe read `POLLAMA_RPC_WORKERS` there,
#: whether it came from the environment or from the settings file.
_for_children: dict[str, str] = {}


def pass_to_children(name: str, value: str | None) -> None:
    """Set (or, with None, stop setting) `name` in every later child's environment."""
    if value is None:
        _for_children.pop(name, None)
    else:
        _for_children[name] = value


def child_env() -> dict[str, str]:
    """This process's environment, set up for a child that runs pollama's code.

    Unbuffered output, so progress and errors arrive as they happen; and,
    from a checkout, the project root on `PYTHONPATH`, so `-m server...`
    finds the same code whatever the working folder.
    """
    env = dict(os.environ)
    env.update(_for_children)
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
