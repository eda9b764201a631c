"""Start-up pieces: single instance, tray menu and icon states, the embedded server thread, resource lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
from PySide6.QtWidgets import QMenu

from tests.support.live_server import LiveServer, free_port
from ui.api_types import RunningModel
from ui.icons import TrayState, draw_icon, tray_state
from ui.resources import model_suggestions
from ui.single_instance import SingleInstance
from ui.tray import Tray


def test_single_instance_hands_over(qtbot, tmp_path: Path) -> None:
    first = SingleInstance("pollama-test-" + tmp_path.name)
    assert first.acquire()
    try:
        second = SingleInstance(first.name)
        with qtbot.waitSignal(first.activated, timeout=5000) as got:
            assert not second.acquire("show")
        assert got.args == ["show"]
    finally:
        first.release()
    third = SingleInstance(first.name)  # released: the next launch is first again
    assert third.acquire()
    third.release()


def test_second_launch_brings_the_window_forward_on_its_page(qtbot, desktop, tmp_path: Path) -> None:
    guard = SingleInstance("pollama-test-fwd-" + tmp_path.name)
    assert guard.acquire()
    guard.activated.connect(desktop.handle_message)
    try:
        assert not SingleInstance(guard.name).acquire("show")
        qtbot.waitUntil(lambda: desktop.window.isVisible() and desktop.window.current == "chat", timeout=5000)
        assert not SingleInstance(guard.name).acquire("show library")  # `pollama app --show library`
        qtbot.waitUntil(lambda: desktop.window.current == "library", timeout=5000)
        assert desktop._library is not None and desktop._library.isVisible()
        assert not SingleInstance(guard.name).acquire("show")  # no page named: it stays where it is
        qtbot.wait(200)
        assert desktop.window.current == "library"
    finally:
        guard.release()


def test_tray_menu_carries_every_action(qtbot) -> None:
    tray = Tray(use_system_tray=False)
    texts = [a.text() for a in tray.menu.actions() if not a.isSeparator()]
    for wanted in (
        "Open chat",
        "Open library",
        "Running models",
        "Pull a model…",
        "Settings…",
        "Open logs folder",
        "Quit pollama",
    ):
        assert wanted in texts
    assert isinstance(tray.menu, QMenu)
    opened = []
    tray.open_pulls.connect(lambda: opened.append("pulls"))
    tray.quit_requested.connect(lambda: opened.append("quit"))
    tray.pull_action.trigger()
    tray.quit_action.trigger()
    assert opened == ["pulls", "quit"]
    tray.set_running([RunningModel("m:latest", size=2_000_000_000, size_vram=1_000_000_000)])
    sub = tray.running_menu.actions()[0].menu()
    assert isinstance(sub, QMenu)  # PySide6 types QAction.menu() as QObject
    assert tray.running_menu.actions()[0].text() == "m:latest — 2.0 GB (50%/50% CPU/GPU)"
    unloaded: list[str] = []
    tray.unload_requested.connect(unloaded.append)
    sub.actions()[0].trigger()
    assert unloaded == ["m:latest"]
    tray.set_running([])
    assert tray.running_menu.actions()[0].text() == "No model loaded"


def test_icon_states(qapp) -> None:  # pixmaps need a QGuiApplication
    assert tray_state(reachable=False, running=2, pulling=True) is TrayState.ERROR
    assert tray_state(reachable=True, running=2, pulling=True) is TrayState.PULLING
    assert tray_state(reachable=True, running=1, pulling=False) is TrayState.LOADED
    assert tray_state(reachable=None, running=0, pulling=False) is TrayState.IDLE
    images = {s: draw_icon(s, 32).toImage() for s in TrayState}
    assert len({img.pixelColor(16, 8).name() for img in images.values()}) == 4  # a colour per state


def test_tray_shows_an_unreachable_server(qtbot, tmp_path: Path) -> None:
    from ui.desktop import DesktopApp
    from ui.pull_state import PendingPulls

    app = DesktopApp(
        f"http://127.0.0.1:{free_port()}",
        None,
        pending=PendingPulls(tmp_path / "p.json"),
        use_system_tray=False,
        poll_ms=200,
    )
    app.start()
    try:
        qtbot.waitUntil(lambda: app.tray.state is TrayState.ERROR, timeout=10_000)
        assert "Cannot reach" in app.tray.status_action.text()
    finally:
        app.shutdown()


def test_embedded_server_starts_restarts_and_stops(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.desktop import EmbeddedServer, server_answers
    from server.config import load_config

    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    server = EmbeddedServer(load_config)
    assert server.url == f"http://127.0.0.1:{port}"
    assert server.start() is None
    try:
        assert httpx.get(server.url + "/api/tags", trust_env=False).json() == {"models": []}
        # a second one on the same port says why it cannot start
        other = EmbeddedServer(load_config)
        error = other.start(timeout=10)
        assert error and "address already in use" in error
        import threading

        done = threading.Event()
        result: list[str | None] = []

        def restarted(e: str | None) -> None:
            result.append(e)
            done.set()

        server.restart(restarted)
        assert done.wait(60) and result == [None]
        assert server_answers(server.url)
    finally:
        server.stop()
    assert not server_answers(server.url)


def test_detects_a_server_already_running(live_server: LiveServer) -> None:
    from app.desktop import loopback_url, server_answers

    assert server_answers(live_server.url)
    assert not server_answers(f"http://127.0.0.1:{free_port()}")
    assert loopback_url("http://0.0.0.0:11434") == "http://127.0.0.1:11434"


def test_curated_suggestions_ship_in_resources() -> None:
    names = model_suggestions()
    assert "llama3.2:1b" in names and len(names) >= 20
    assert all(" " not in n and not n.startswith("#") for n in names)


def test_running_model_countdown() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    m = RunningModel("m", expires_at=now + dt.timedelta(seconds=299.6))
    left = m.seconds_left(now)
    assert left is not None and round(left) == 300
    forever = RunningModel("m", expires_at=now + dt.timedelta(days=365 * 292))
    assert forever.seconds_left(now) is None


def test_launch_embeds_a_server_and_a_second_launch_hands_over(
    qtbot, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.desktop import launch, server_answers

    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    launched = launch([])
    assert not isinstance(launched, int)
    try:
        assert launched.server is not None and server_answers(url)
        assert launched.desktop.tray.status_action.text() == f"Server running at 127.0.0.1:{port}"
        window = launched.desktop.window
        assert window.isVisible() and window.current == "chat"  # no tray offscreen: the window opens, on Chat
        window.hide()
        assert launch(["--show", "library"]) == 0  # a second launch exits...
        qtbot.waitUntil(window.isVisible, timeout=5000)  # ...and the first one came forward...
        qtbot.waitUntil(lambda: window.current == "library", timeout=5000)  # ...on the page it asked for
        assert launched.desktop.library().isVisible()
    finally:
        launched.desktop.shutdown()
        launched.instance.release()
    assert not server_answers(url)  # quitting stopped the embedded server


def test_launch_uses_a_server_already_running(qtbot, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.desktop import launch

    monkeypatch.setenv("OLLAMA_HOST", live_server.host)
    launched = launch(["--hidden", "--show", "running"])
    assert not isinstance(launched, int)
    try:
        assert launched.desktop.window.current == "running" and launched.desktop.running().isVisible()
        assert launched.server is None
        assert "already running" in launched.desktop.tray.status_action.text()
    finally:
        launched.desktop.shutdown()
        launched.instance.release()
    assert httpx.get(live_server.url + "/api/version", trust_env=False).status_code == 200  # not ours to stop


def test_show_takes_the_page_names() -> None:
    from app.desktop import handoff_message, parse_args
    from ui.pages import PAGE_NAMES

    assert PAGE_NAMES == ("chat", "discover", "library", "running", "pulls", "developer", "settings")
    for name in PAGE_NAMES:
        assert parse_args(["--show", name]).show == name
    assert parse_args([]).show is None
    with pytest.raises(SystemExit):
        parse_args(["--show", "nowhere"])
    assert handoff_message("pulls") == "show pulls" and handoff_message(None) == "show"
