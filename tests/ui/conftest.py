"""Qt fixtures for the desktop tests: offscreen Qt, a real server with the tiny models, the app wired to it.

Windows are driven through their real widgets and methods; questions a
person would answer (confirm, a name) come from a scripted prompter.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live_server import LiveServer

# Loopback registry fixtures, re-exported (pytest_plugins is only allowed in the top-level conftest).
from tests.support.registry_plugin import fault_proxy, needs_registry, registry, registry_client  # noqa: F401

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"


class ScriptedPrompter:
    """Answers the questions windows ask, in order; records what was asked."""

    def __init__(self) -> None:
        self.confirms: list[bool] = []
        self.texts: list[str | None] = []
        self.files: list[Path | None] = []
        self.asked: list[str] = []

    def confirm(self, parent: object, title: str, text: str) -> bool:
        self.asked.append(text)
        return self.confirms.pop(0) if self.confirms else False

    def ask_text(self, parent: object, title: str, label: str, default: str = "") -> str | None:
        self.asked.append(label)
        return self.texts.pop(0) if self.texts else None

    def open_file(self, parent: object, title: str, filters: str) -> Path | None:
        return self.files.pop(0) if self.files else None

    def choose_dir(self, parent: object, title: str, start: str = "") -> Path | None:
        return self.files.pop(0) if self.files else None

    def save_file(self, parent: object, title: str, name: str, filters: str) -> Path | None:
        self.asked.append(name)
        return self.files.pop(0) if self.files else None


def create_model(url: str, name: str, gguf: Path, **extra: object) -> None:
    """Put a model on the server the way any client would: upload the blob, create from it."""
    import hashlib

    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as c:
        if c.head(f"/api/blobs/{digest}").status_code != 200:
            r = c.post(f"/api/blobs/{digest}", content=gguf.read_bytes())
            assert r.status_code in (200, 201), r.text
        r = c.post("/api/create", json={"model": name, "files": {"model.gguf": digest}, "stream": False, **extra})
        assert r.status_code == 200, r.text


@pytest.fixture
def server(models_dir: Path, tiny_model_path: Path) -> Iterator[LiveServer]:
    """A real server on a free port with a temporary store holding `tiny` and `tiny-chat`."""
    srv = LiveServer(models_dir).start()
    try:
        create_model(srv.url, "tiny", tiny_model_path)
        create_model(srv.url, "tiny-chat", tiny_model_path, template=CHATML, system="You are terse.")
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def prompter() -> ScriptedPrompter:
    return ScriptedPrompter()


def make_desktop(url: str, prompter: ScriptedPrompter, tmp_path: Path, *, poll_ms: int = 500, **extra: Any) -> Any:
    """The desktop app as a client of the server at `url` (no tray icon offscreen; the menu is still there).

    Everything it keeps lives under `tmp_path`, except the chats: they go to the platform data
    folder, which the autouse `temp_home` fixture makes per test, so a second app in the same
    test finds the first one's chats."""
    from ui.autostart import XdgAutostart
    from ui.desktop import DesktopApp
    from ui.pull_state import PendingPulls
    from ui.settings_store import SettingsStore

    return DesktopApp(
        url,
        None,
        pending=PendingPulls(tmp_path / "state" / "pulls.json"),
        settings=SettingsStore(tmp_path / "config" / "config.json"),
        autostart=XdgAutostart(["pollama", "app"], tmp_path / "xdg"),
        prompter=prompter,  # type: ignore[arg-type]
        log_dir=tmp_path / "logs",
        use_system_tray=False,
        poll_ms=poll_ms,
        quit_app=lambda: None,
        **extra,
    )


@pytest.fixture
def desktop(qtbot: object, server: LiveServer, prompter: ScriptedPrompter, tmp_path: Path) -> Iterator[object]:
    app = make_desktop(server.url, prompter, tmp_path)
    app.start()
    try:
        yield app
    finally:
        app.shutdown()
