"""Shared fixtures: every test gets its own home and models folder; servers are real."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer

pytest_plugins = ["tests.fixtures.plugin", "tests.support.registry_plugin", "tests.support.openapi_plugin"]

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def temp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolate each test: HOME, XDG folders and every OLLAMA_* variable."""
    home = tmp_path / "home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith("OLLAMA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_CONFIG_DIRS", "etc/xdg"),  # system-wide entries (autostart) a package may have installed
    ):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("OLLAMA_MODELS", str(home / ".ollama" / "models"))
    return home


@pytest.fixture
def models_dir(temp_home: Path) -> Path:
    return temp_home / ".ollama" / "models"


@pytest.fixture
def live_server(models_dir: Path) -> Iterator[LiveServer]:
    server = LiveServer(models_dir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def app_client(models_dir: Path) -> AsyncIterator[object]:
    """Quart's test client on a real app (services included), no sockets."""
    from server.app import create_app
    from server.config import load_config

    app = create_app(load_config(settings={}))
    async with app.test_app() as test_app:
        yield test_app.test_client()
