"""The desktop app against a server with API keys: its own requests carry the key, also after a
restart that changed it; without one the server refuses it, as it refuses any other client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.desktop import EmbeddedServer
from server.config import load_config
from tests.support.live_server import LiveServer
from tests.ui.conftest import make_desktop

KEY = "pk-ui-test-5150"


@pytest.fixture
def keyed_server(models_dir: Path) -> Iterator[LiveServer]:
    srv = LiveServer(models_dir, env={"POLLAMA_API_KEYS": KEY}).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_app_sends_its_key(qtbot, keyed_server: LiveServer, prompter, tmp_path: Path) -> None:
    app = make_desktop(keyed_server.url, prompter, tmp_path, api_key=KEY)
    app.start()
    try:
        qtbot.waitUntil(lambda: app.monitor.reachable is True, timeout=10_000)
        call = app.client.tags()
        with qtbot.waitSignal(call.succeeded, timeout=10_000) as got:
            pass
        assert got.args[0] == {"models": []}
    finally:
        app.shutdown()


def test_without_the_key_the_app_is_refused(qtbot, keyed_server: LiveServer, prompter, tmp_path: Path) -> None:
    app = make_desktop(keyed_server.url, prompter, tmp_path)
    app.start()
    try:
        qtbot.waitUntil(lambda: app.monitor.reachable is False, timeout=10_000)
        assert app.monitor.last_error is not None and app.monitor.last_error.status == 401
        assert "missing API key" in app.monitor.last_error.message
    finally:
        app.shutdown()


def test_a_restart_hands_the_client_the_new_key(qtbot, keyed_server: LiveServer, prompter, tmp_path: Path) -> None:
    class Server:
        url = keyed_server.url
        api_key: str | None = None

        def restart(self, on_ready) -> None:
            Server.api_key = KEY  # as if the settings window had just set it
            on_ready(None)

        def stop(self) -> None:
            pass

    app = make_desktop(keyed_server.url, prompter, tmp_path)
    app.server = Server()
    app.start()
    try:
        qtbot.waitUntil(lambda: app.monitor.reachable is False, timeout=10_000)
        window = app.show_settings()
        qtbot.addWidget(window)
        window.expose_check.setChecked(True)
        window.keys_edit.setText(KEY)
        with qtbot.waitSignal(app.server_restarted, timeout=10_000):
            window.save()
        assert app.client.api_key == KEY
        qtbot.waitUntil(lambda: app.monitor.reachable is True, timeout=10_000)
    finally:
        app.shutdown()


def test_the_embedded_server_offers_its_first_key() -> None:
    server = EmbeddedServer(lambda: load_config({"POLLAMA_API_KEYS": f"{KEY},pk-other"}, {}))
    assert server.api_key == KEY
    assert EmbeddedServer(lambda: load_config({}, {})).api_key is None


def test_a_dropped_gguf_is_imported_with_the_key(
    qtbot, keyed_server: LiveServer, prompter, tmp_path: Path, tiny_model_path: Path
) -> None:
    """Upload (HEAD and POST `/api/blobs`) and `/api/create` each carry the key; without it the
    dialog shows the server's 401 instead of a model."""
    import shutil

    import httpx

    source = tmp_path / "dropped" / "tiny-drop.gguf"
    source.parent.mkdir()
    shutil.copyfile(tiny_model_path, source)

    def import_with(api_key: str | None) -> list:
        app = make_desktop(keyed_server.url, prompter, tmp_path / (api_key or "none"), api_key=api_key)
        try:
            dialog = app.import_files([source])
            qtbot.waitUntil(lambda: bool(dialog.candidates) and not dialog.job.running, timeout=10_000)
            with qtbot.waitSignal(dialog.imported, timeout=30_000) as done:
                dialog.import_button.click()
            return done.args[0]
        finally:
            app.shutdown()

    refused = import_with(None)
    assert [r.ok for r in refused] == [False] and "API key" in refused[0].error
    imported = import_with(KEY)
    assert [(r.ok, r.imported.how) for r in imported] == [(True, "copied")]
    assert imported[0].item.name.startswith("tiny-drop:")
    names = {
        m["name"]
        for m in httpx.get(keyed_server.url + "/api/tags", headers={"Authorization": f"Bearer {KEY}"}).json()["models"]
    }
    assert imported[0].item.name in names
