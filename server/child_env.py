"""The environment of the server's own child processes (runners, the quantizer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Settings the server hands to every child through its environment, set once at start-up
#: (`pass_to_children`): a runner and the device probe read `POLLAMA_RPC_WORKERS` there,
#: whether it came from the environment or from the settings file.
_for_children: dict[str, str] = {}

#: How long (in PAUSE loops, about 50 µs per 1,000 on the Xeon VM) a waiting OpenMP thread
#: of a runner spins before it sleeps, where the environment sets neither `GOMP_SPINCOUNT`
#: nor `OMP_WAIT_POLICY`. Every graph node of a decode ends in an OpenMP barrier; libgomp's
#: own default spins 300,000 loops (milliseconds), so when the CPUs are shared with other
#: busy processes (another model's runner, a peer server, a build) a thread whose partner
#: lost its CPU burns its own slice waiting: with six CPU hogs on the 2-vCPU VM one stream
#: decoded 1.1 tok/s that way against 6.5-6.9 at 1,000-3,000 loops. Too short a spin costs
#: the idle case instead: a one-stream step is ~500 graph nodes of ~50 µs, and a thread that
#: sleeps at each skew must be woken (on a VM, through the host). Same run, runner servers
#: side by side: idle, 3,000 loops decoded one stream 4.6 % faster than 1,000 (10.9 against
#: 36.6 sleeps a token), with two hogs 15 % faster, with six the same; at 4 and 8 idle
#: streams no count from 1,000 to 300,000 mattered (benchmarks/README.md).
OPENMP_SPIN_COUNT = "3000"


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
