"""`pull` and `push` against a loopback registry: progress, success, resume after Ctrl+C."""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.app.conftest import CLI, require_endpoint, require_generation
from tests.support.live_server import REPO, LiveServer

pytest.importorskip("tests.support.registry_plugin", reason="the loopback registry fixtures are not available")

from tests.support.registry import FaultProxy, Faults, RegistryServer, upload_model  # noqa: E402

MODEL_LAYER = "application/vnd.ollama.image.model"
WEIGHTS_SIZE = 6_000_000


def weights() -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < WEIGHTS_SIZE:
        out += hashlib.sha256(f"cli-{counter}".encode()).digest() * 256
        counter += 1
    return bytes(out[:WEIGHTS_SIZE])


@pytest.fixture
def pull_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server with small pull parts and frequent checkpoints, so an interrupted pull leaves progress on disk."""
    home = tmp_path / "pull-home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "POLLAMA_PULL_PART_SIZE": "500000",
        "POLLAMA_PULL_CHECKPOINT": "0.05",
        "POLLAMA_PULL_PARALLEL": "2",
    }
    live = LiveServer(home / ".ollama" / "models", env=env).start()
    try:
        yield live
    finally:
        live.stop()


def test_pull_shows_progress_and_resumes_after_ctrl_c(
    pull_server: LiveServer, registry: RegistryServer, registry_client, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    require_endpoint(pull_server, "/api/pull")
    data = weights()
    upload_model(
        registry_client,
        registry.url,
        "library/m",
        "latest",
        [(MODEL_LAYER, data)],
        config=b'{"model_format":"gguf","model_family":"llama"}',
    )
    proxy = FaultProxy(("127.0.0.1", registry.port), Faults(rate=1_000_000)).start()
    cli = CLI(pull_server, tmp_path / "pull-home", tmp_path)
    name = f"{proxy.host}/library/m"
    try:
        child = pexpect.spawn(
            sys.executable,
            ["-m", "app", "pull", name, "--insecure"],
            cwd=str(REPO),
            encoding="utf-8",
            timeout=60,
            dimensions=(24, 120),
            env=cli.env(TERM="xterm"),
        )
        child.expect("pulling manifest")
        digest12 = hashlib.sha256(data).hexdigest()[:12]
        percent = 0
        while percent < 25:  # rich redraws the bar line: `pulling <id>:  34% ▕███   ▏ 2.0 MB/6 MB  1.0 MB/s  4s`
            child.expect(rf"pulling {digest12}:\s+(\d+)%")
            percent = int(child.match.group(1))
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 130 or child.signalstatus is not None
        assert "success" not in (child.before or "")
        blobs = pull_server.models / "blobs"
        assert any("partial" in p.name for p in blobs.iterdir()), "an interrupted pull keeps its progress"

        proxy.reset_counters()
        proxy.faults.rate = 0
        time.sleep(0.3)
        result = cli.ok("pull", name, "--insecure")
        lines = result.stderr.splitlines()
        assert lines[0] == "pulling manifest"
        assert f"pulling {digest12}: 100% 6 MB" in lines
        assert lines[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
        assert proxy.bytes_down < 0.85 * len(data), (proxy.bytes_down, len(data))
        listed = cli.ok("list").stdout
        assert f"{name}:latest" in listed
    finally:
        proxy.stop()


def test_pull_of_a_missing_model_is_an_error(pull_server: LiveServer, registry: RegistryServer, tmp_path: Path) -> None:
    require_endpoint(pull_server, "/api/pull")
    cli = CLI(pull_server, tmp_path / "pull-home", tmp_path)
    result = cli.run("pull", f"{registry.host}/library/absent", "--insecure")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "Error: pull model manifest: file does not exist"


def test_push_then_run_pulls_it_back(cli: CLI, server, tiny: str, registry: RegistryServer) -> None:  # type: ignore[no-untyped-def]
    require_endpoint(server, "/api/push")
    target = f"{registry.host}/library/tiny"
    cli.ok("cp", "tiny", target)
    result = cli.ok("push", target, "--insecure")
    assert result.stdout == f"\nYou can find your model at:\n\n\t{target}:latest\n"
    lines = result.stderr.splitlines()
    assert lines[0] == "retrieving manifest" and lines[-2:] == ["pushing manifest", "success"]
    assert any(re.fullmatch(r"pushing [0-9a-f]{12}: 100% .*", line) for line in lines), lines
    cli.ok("rm", target)
    assert target not in cli.ok("list").stdout

    require_generation(server)
    ran = cli.ok("run", target, "--insecure", "hi")
    assert "success" in ran.stderr.splitlines()
    assert ran.stdout.endswith("\n\n") and ran.stdout.strip()
    assert f"{target}:latest" in cli.ok("list").stdout
    cli.ok("rm", target)


def test_push_unknown_model_is_an_error(cli: CLI, server, registry: RegistryServer) -> None:  # type: ignore[no-untyped-def]
    require_endpoint(server, "/api/push")
    result = cli.run("push", f"{registry.host}/library/never-made", "--insecure")
    assert result.returncode == 1 and result.stderr.splitlines()[-1].startswith("Error: ")
