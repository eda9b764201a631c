"""The CLI runs as a real subprocess against a real `pollama serve` with a temporary store.

One server (and one set of tiny models, created through `pollama create`)
is shared by a test module, because the machines running the suite have few
cores; tests that change the store use names of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import REPO, LiveServer

#: Tiny model settings that keep every generation to a few tokens (and deterministic).
TINY_MODELFILE = "FROM {path}\nPARAMETER num_predict 4\nPARAMETER temperature 0\nSYSTEM You are a tiny test model.\n"


@dataclass
class CLI:
    """Runs `python -m app ...` with OLLAMA_HOST pointing at one server."""

    server: LiveServer
    home: Path
    cwd: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_") and not k.startswith("PYTEST")}
        env.update(
            OLLAMA_HOST=self.server.host,
            HOME=str(self.home),
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
            COLUMNS="100",
        )
        env.update(extra)
        return env

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=self.cwd,
            env=self.env(**env),
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, (
            f"pollama {' '.join(args)} → {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli-home")
    (home / "work").mkdir()
    return home


@pytest.fixture(scope="module")
def server(module_home: Path) -> Iterator[LiveServer]:
    live = LiveServer(module_home / ".ollama" / "models", env={"HOME": str(module_home)}).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def cli(server: LiveServer, module_home: Path) -> CLI:
    return CLI(server, module_home, module_home / "work")


@pytest.fixture(scope="module")
def tiny(cli: CLI, tiny_model_path: Path) -> str:
    """`tiny:latest`, created with `pollama create` from a Modelfile next to a copy of the GGUF."""
    folder = cli.cwd / "tiny"
    folder.mkdir(exist_ok=True)
    (folder / "model.gguf").write_bytes(tiny_model_path.read_bytes())
    (folder / "Modelfile").write_text(TINY_MODELFILE.format(path="./model.gguf"))
    cli.ok("create", "tiny", "-f", str(folder / "Modelfile"))
    return "tiny:latest"


@pytest.fixture(scope="module")
def bert(cli: CLI, bert_model_path: Path) -> str:
    folder = cli.cwd / "bert"
    folder.mkdir(exist_ok=True)
    (folder / "Modelfile").write_text(f"FROM {bert_model_path}\n")
    cli.ok("create", "bert", "-f", str(folder / "Modelfile"))
    return "bert:latest"


def require_endpoint(server: LiveServer, path: str) -> None:
    """Skip (never fake) while another issue's endpoint does not exist yet: only on 404."""
    r = httpx.post(server.url + path, json={}, timeout=30, trust_env=False)
    if r.status_code == 404 and "page not found" in r.text:
        pytest.skip(f"{path} is not implemented by the server yet (404)")


def require_generation(server: LiveServer) -> None:
    require_endpoint(server, "/api/generate")
    require_endpoint(server, "/api/chat")
    try:
        import server.runner.main as _runner_main  # noqa: F401  (a plain import would rebind the `server` parameter)
    except ModuleNotFoundError as exc:
        pytest.skip(f"the runner is not built yet ({exc.name})")
