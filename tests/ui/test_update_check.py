"""The update check against a real HTTP server on loopback: off by default, one plain GET, a tray entry when newer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.support.live_server import LiveServer
from ui.settings_store import SettingsStore
from ui.settings_window import SettingsWindow
from ui.update_check import UPDATE_CHECK, UPDATE_URL, Release, UpdateChecker, UpdateError, fetch_release, is_newer


@dataclass
class Feed:
    """What the feed server answers, and every request it got (method, path, headers)."""

    body: bytes = b'{"version": "0.2.0", "url": "https://example.invalid/releases/0.2.0"}'
    status: int = 200
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def feed() -> Iterator[Feed]:
    state = Feed()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/pollama/latest.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def settings(tmp_path: Path, values: dict[str, str], environ: dict[str, str] | None = None) -> SettingsStore:
    store = SettingsStore(tmp_path / "config" / "config.json", environ=environ or {})
    store.save(values)
    return store


def test_a_newer_release_is_one_plain_get_and_nothing_else(feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    for proxy in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    release = fetch_release(feed.url)
    assert release == Release("0.2.0", "https://example.invalid/releases/0.2.0")
    assert is_newer(release, "0.1.0") and not is_newer(release, "0.2.0") and not is_newer(release, "0.10.0")
    assert is_newer(Release("0.2.0", release.url), "0.2.0rc1")
    [(method, path, headers)] = feed.requests
    assert (method, path) == ("GET", "/pollama/latest.json")  # no query string: nothing about this machine
    assert set(headers) <= {"host", "accept", "accept-encoding", "connection", "user-agent"}
    assert "pollama" not in headers.get("user-agent", "")


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>not json</html>", "did not answer with JSON"),
        (200, b'{"url": "https://x.invalid/"}', 'no "version"'),
        (200, b'{"version": "next", "url": "https://x.invalid/"}', "not a version number"),
        (200, b'{"version": "1.0", "url": "file:///etc/passwd"}', "must be an http(s) address"),
        (404, b"{}", "answered 404"),
        (200, b'{"version": "1.0", "url": "https://x.invalid/", "pad": "' + b"x" * 70_000 + b'"}', "larger than"),
    ],
)
def test_a_bad_feed_is_a_clear_error(feed: Feed, status: int, body: bytes, message: str) -> None:
    feed.status, feed.body = status, body
    with pytest.raises(UpdateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fetch_release(feed.url)


def test_off_by_default_no_request_is_made(qtbot: QtBot, feed: Feed, tmp_path: Path) -> None:
    checker = UpdateChecker(settings(tmp_path, {UPDATE_URL: feed.url}), "0.1.0")
    assert not checker.check_now()
    checker.start()
    checker.stop()
    assert feed.requests == []


def test_the_tray_shows_a_newer_release(qtbot: QtBot, server: LiveServer, feed: Feed, tmp_path: Path) -> None:
    from ui.desktop import DesktopApp
    from ui.pull_state import PendingPulls

    app = DesktopApp(
        server.url,
        None,
        pending=PendingPulls(tmp_path / "state" / "pulls.json"),
        settings=settings(tmp_path, {UPDATE_CHECK: "1", UPDATE_URL: feed.url}),
        autostart=NoAutostart(),
        log_dir=tmp_path / "logs",
        use_system_tray=False,
        quit_app=lambda: None,
        version="0.1.0",
    )
    assert app.updates is not None
    try:
        with qtbot.waitSignal(app.updates.checked, timeout=10_000) as done:
            app.start()  # checks at start
        assert done.args == [""]
        action = app.tray.update_action
        qtbot.waitUntil(action.isVisible, timeout=5_000)
        assert action.text() == "pollama 0.2.0 is available…"
        assert app.updates.latest == Release("0.2.0", "https://example.invalid/releases/0.2.0")
        assert len(feed.requests) == 1
    finally:
        app.shutdown()

    feed.body = b'{"version": "0.1.0", "url": "https://example.invalid/releases/0.1.0"}'
    current = UpdateChecker(settings(tmp_path / "again", {UPDATE_CHECK: "1", UPDATE_URL: feed.url}), "0.1.0")
    with qtbot.waitSignal(current.checked, timeout=10_000), qtbot.assertNotEmitted(current.available):
        assert current.check_now()
    assert current.latest is None


class NoAutostart:
    def is_enabled(self) -> bool:
        return False

    def set_enabled(self, enabled: bool) -> None:
        raise AssertionError("not touched")


def test_the_settings_checkbox_is_the_one_switch(qtbot: QtBot, feed: Feed, tmp_path: Path) -> None:
    store = settings(tmp_path, {})
    window = SettingsWindow(store, NoAutostart())
    qtbot.addWidget(window)
    assert not window.update_check.isChecked() and not window.update_check.isEnabled()  # no address set
    assert UPDATE_URL in window.update_check.toolTip()

    store.save({UPDATE_URL: feed.url})
    window.load()
    assert window.update_check.isEnabled() and not window.update_check.isChecked()
    window.update_check.setChecked(True)
    assert UPDATE_CHECK in (window.save() or [])
    assert json.loads(store.path.read_text()) == {UPDATE_CHECK: "1", UPDATE_URL: feed.url}
    window.update_check.setChecked(False)
    window.save()
    assert UPDATE_CHECK not in store.load()

    fixed = SettingsWindow(settings(tmp_path / "env", {UPDATE_URL: feed.url}, {UPDATE_CHECK: "1"}), NoAutostart())
    qtbot.addWidget(fixed)
    assert fixed.update_check.isChecked() and not fixed.update_check.isEnabled()  # the environment wins
