"""Running models against a real server: a generate loads a model, the view and the tray show it, Unload empties them."""

from __future__ import annotations

import httpx
import pytest

from tests.support.live_server import LiveServer


def load(server: LiveServer, model: str) -> None:
    r = httpx.post(
        server.url + "/api/generate",
        json={"model": model, "prompt": "Hi", "stream": False, "keep_alive": "10m", "options": {"num_predict": 2}},
        timeout=120,
        trust_env=False,
    )
    if r.status_code == 404 and "not found" in r.text and "model" not in r.text:
        pytest.skip("/api/generate is not served yet")
    assert r.status_code == 200, r.text


def test_running_view_follows_generate_and_unload(qtbot, desktop, server) -> None:
    window = desktop.show_running()
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.empty_label.isVisibleTo(window), timeout=10_000)
    load(server, "tiny")
    qtbot.waitUntil(lambda: [m.name for m in window.models] == ["tiny:latest"], timeout=10_000)
    row = window.models[0]
    assert row.size > 0 and row.context_length > 0
    assert window.table.item(0, 0).text() == "tiny:latest"
    assert "tokens" in window.table.item(0, 3).text()
    countdown = window.table.item(0, 4).text()
    assert countdown.count(":") == 1 and countdown.startswith(("9:", "10:"))
    bar = window.table.cellWidget(0, 2)
    assert bar.format() in ("CPU only",) or "of" in bar.format()
    # the tray menu shows it too, with its memory and an Unload item
    titles = [a.text() for a in desktop.tray.running_menu.actions()]
    assert any(t.startswith("tiny:latest — ") for t in titles)
    with qtbot.waitSignal(window.unloaded, timeout=30_000):
        window.table.cellWidget(0, 5).click()
    qtbot.waitUntil(lambda: window.models == [], timeout=10_000)
    assert window.empty_label.isVisibleTo(window)
    assert httpx.get(server.url + "/api/ps", trust_env=False).json()["models"] == []


def test_tray_unload_item(qtbot, desktop, server) -> None:
    load(server, "tiny-chat")
    qtbot.waitUntil(lambda: len(desktop.monitor.running) == 1, timeout=10_000)
    from ui.icons import TrayState

    assert desktop.tray.state is TrayState.LOADED
    sub = next(a.menu() for a in desktop.tray.running_menu.actions() if a.menu() is not None)
    unload = next(a for a in sub.actions() if a.text() == "Unload")
    unload.trigger()
    qtbot.waitUntil(lambda: desktop.monitor.running == [], timeout=30_000)
    assert desktop.tray.state is TrayState.IDLE


def test_devices_and_estimate(qtbot, desktop) -> None:
    window = desktop.running()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.devices_refreshed, timeout=20_000) as got:
        window.refresh_devices()
    devices = got.args[0]
    assert devices.system_total > 0
    texts = [window.devices_layout.itemAt(i).widget() for i in range(window.devices_layout.count())]
    assert texts  # a label per device (or "No GPU found") and system memory
    with qtbot.waitSignal(window.estimated, timeout=20_000) as est:
        window.estimate("tiny")
    e = est.args[0]
    assert e.total >= e.weights > 0 and e.context_length > 0
    assert e.fits
    assert "It fits." in window.estimate_label.text()
