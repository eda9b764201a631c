"""The environment the server gives its children: a runner's OpenMP threads spin briefly
before they sleep, unless the user chose how they wait."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.child_env import OPENMP_SPIN_COUNT, child_env
from server.runner.client import LoadOptions, RunnerClient


def test_openmp_threads_spin_briefly_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert child_env()["GOMP_SPINCOUNT"] == OPENMP_SPIN_COUNT
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert "GOMP_SPINCOUNT" not in child_env() and child_env()["OMP_WAIT_POLICY"] == "passive"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "50000")
    assert child_env()["GOMP_SPINCOUNT"] == "50000"


def test_a_runner_process_gets_the_spin_count(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)

    async def run() -> dict[str, str]:
        client = await RunnerClient.start(LoadOptions(str(tiny_model_path), num_ctx=64, num_gpu=0), load_timeout=60)
        try:
            raw = Path(f"/proc/{client.pid}/environ").read_bytes()
        finally:
            await client.close()
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs}

    if not Path("/proc/self/environ").exists():
        pytest.skip("reads the runner's environment from /proc")
    assert asyncio.run(run())["GOMP_SPINCOUNT"] == OPENMP_SPIN_COUNT
