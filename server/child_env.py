"""The environment of the server's own child processes (runners, the quantizer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Settings the server hands to every child through its environment, set once at start-up
#: (`pass_to_children`): a runner and the device probe read `POLLAMA_RPC_WORKERS` there,
#: whether it came from the environment or from the settings file.
_for_children: dict[str, str] = {}

#: How long (in PAUSE loops, about 50 µs here) a waiting OpenMP thread of a runner spins
#: before it sleeps, where the environment sets neither `GOMP_SPINCOUNT` nor
#: `OMP_WAIT_POLICY`. Every graph node of a decode ends in an OpenMP barrier; libgomp's own
#: default spins 300,000 loops (milliseconds), so when the CPUs are shared with other busy
#: processes (another model's runner, a peer server) a thread whose partner lost its CPU
#: burns its own slice waiting. On the 2-vCPU VM at load 8 a one-row decode of the bench
#: model took 740-1,344 ms with 2 threads that way, 150 ms at 1,000 loops, 105-180 ms with
#: `OMP_WAIT_POLICY=passive`, 97-130 ms with one thread (benchmarks/README.md). 1,000 is
#: also what libgomp falls back to by itself when it has more threads than CPUs.
OPENMP_SPIN_COUNT = "1000"


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
    if "GOMP_SPINCOUNT" not in env and "OMP_WAIT_POLICY" not in env:
        env["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
    if not getattr(sys, "frozen", False):
        root = str(Path(__file__).resolve().parents[1])
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in parts:
            env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env
