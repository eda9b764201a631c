"""`pollama` commands against a server with API keys: the CLI sends `OLLAMA_API_KEY` (as ollama-python
does) or the first of `POLLAMA_API_KEYS`, and says plainly when the server refuses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import ClientError, api_key
from tests.app.conftest import CLI
from tests.support.live_server import LiveServer

KEY = "pk-cli-test-2718"


def test_which_key_the_cli_sends(tmp_path: Path) -> None:
    assert api_key({}) is None
    assert api_key({"OLLAMA_API_KEY": " pk-a "}) == "pk-a"
    assert api_key({"POLLAMA_API_KEYS": "pk-b,pk-c"}) == "pk-b"
    assert api_key({"OLLAMA_API_KEY": "pk-a", "POLLAMA_API_KEYS": "pk-b"}) == "pk-a"
    keyfile = tmp_path / "keys"
    keyfile.write_text("# comment\npk-file\n", encoding="utf-8")
    assert api_key({"POLLAMA_API_KEYS": str(keyfile)}) == "pk-file"
    with pytest.raises(ClientError, match="cannot read the key file"):
        api_key({"POLLAMA_API_KEYS": str(tmp_path / "none")})


@pytest.fixture(scope="module")
def keyed_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CLI]:
    home = tmp_path_factory.mktemp("cli-keys")
    (home / "work").mkdir()
    server = LiveServer(home / ".ollama" / "models", env={"HOME": str(home), "POLLAMA_API_KEYS": KEY}).start()
    try:
        yield CLI(server, home, home / "work")
    finally:
        server.stop()


def test_cli_with_and_without_the_key(keyed_cli: CLI) -> None:
    refused = keyed_cli.run("list")
    assert refused.returncode == 1
    assert "Error: unauthorized: missing API key" in refused.stderr
    wrong = keyed_cli.run("list", OLLAMA_API_KEY="pk-wrong")
    assert wrong.returncode == 1 and "invalid API key" in wrong.stderr and "pk-wrong" not in wrong.stderr
    assert keyed_cli.ok("list", POLLAMA_API_KEYS=KEY).stdout.startswith("NAME")
    assert keyed_cli.ok("ps", OLLAMA_API_KEY=KEY).stdout.startswith("NAME")
