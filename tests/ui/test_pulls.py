"""The pull manager against a real server pulling from a loopback registry (distribution) through a throttling proxy."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import LiveServer
from tests.support.registry import Faults, upload_model

MODEL_MEDIA = "application/vnd.ollama.image.model"
CONFIG = json.dumps(
    {"model_format": "gguf", "model_family": "llama", "model_families": ["llama"], "file_type": "F32"}
).encode()


@pytest.fixture
def published(registry, registry_client: httpx.Client, tiny_model_path: Path) -> str:
    upload_model(registry_client, registry.url, "library/tinyreg", "latest", [(MODEL_MEDIA, tiny_model_path)], CONFIG)
    return "library/tinyreg:latest"


def needs_pull(server: LiveServer) -> None:
    r = httpx.post(server.url + "/api/pull", json={"model": "", "stream": False}, trust_env=False)
    if r.status_code == 404 and "page not found" in r.text:
        pytest.skip("/api/pull is not served yet")


def test_pull_with_progress_bars(qtbot, desktop, server, registry, published) -> None:
    needs_pull(server)
    window = desktop.show_pulls()
    qtbot.addWidget(window)
    name = f"{registry.host}/{published}"
    window.name_edit.setText(name)
    with qtbot.waitSignal(desktop.pulls.finished, timeout=60_000):
        window.pull_button.click()
    job = desktop.pulls.jobs[name]
    assert job.tracker.succeeded and job.tracker.fraction == 1.0
    assert len(job.tracker.layers) == 2  # the model and the config
    card = window.card_for[name]
    assert card.status.text().startswith("Done")
    assert len(card.layer_bars) == 2
    assert all(bar.value() == 1000 for _, bar, _ in card.layer_bars.values())
    assert desktop.pulls.pending.items() == []
    names = {m["name"] for m in httpx.get(server.url + "/api/tags", trust_env=False).json()["models"]}
    assert any(n.endswith("tinyreg:latest") for n in names)


def test_unknown_model_error_in_words(qtbot, desktop, server, registry, published) -> None:
    needs_pull(server)
    window = desktop.show_pulls()
    qtbot.addWidget(window)
    name = f"{registry.host}/library/nosuchmodel"
    with qtbot.waitSignal(desktop.pulls.failed, timeout=30_000) as failed:
        desktop.pulls.start(name)
    card = window.card_for[name]
    assert "no model with that name" in failed.args[1]
    assert card.error.text() == failed.args[1] and card.retry_button.isVisibleTo(card)
    assert desktop.pulls.pending.items() == []  # not worth resuming


def test_cancel_and_retry(qtbot, desktop, server, fault_proxy, published) -> None:
    needs_pull(server)
    fault_proxy.faults = Faults(rate=60_000)
    name = f"{fault_proxy.host}/{published}"
    window = desktop.show_pulls()
    qtbot.addWidget(window)
    job = desktop.pulls.start(name)
    qtbot.waitUntil(lambda: job.tracker.completed > 0, timeout=30_000)
    window.card_for[name].cancel_button.click()
    assert desktop.pulls.jobs[name].status.value == "cancelled"
    assert desktop.pulls.pending.items() == []
    fault_proxy.faults = Faults()
    with qtbot.waitSignal(desktop.pulls.finished, timeout=60_000):
        window.card_for[name].retry_button.click()


def test_pull_survives_an_app_restart(qtbot, server, fault_proxy, published, tmp_path, prompter) -> None:
    """Quit mid-pull: the pull stays pending; the next app start resumes it and finishes."""
    needs_pull(server)
    from ui.autostart import XdgAutostart
    from ui.desktop import DesktopApp
    from ui.pull_manager import PullStatus
    from ui.pull_state import PendingPulls

    def make_app() -> DesktopApp:
        return DesktopApp(
            server.url,
            None,
            pending=PendingPulls(tmp_path / "state" / "pulls.json"),
            autostart=XdgAutostart(["pollama"], tmp_path / "xdg"),
            prompter=prompter,
            use_system_tray=False,
            quit_app=lambda: None,
        )

    fault_proxy.faults = Faults(rate=50_000)
    name = f"{fault_proxy.host}/{published}"
    first = make_app()
    first.start()
    job = first.pulls.start(name)
    qtbot.waitUntil(lambda: job.tracker.completed > 100_000, timeout=30_000)
    first.shutdown()  # quitting: checkpoint, not cancel
    assert [p.model for p in PendingPulls(tmp_path / "state" / "pulls.json").items()] == [name]
    assert job.status is PullStatus.RUNNING  # not marked failed or cancelled by the quit

    fault_proxy.faults = Faults()
    second = make_app()
    try:
        with qtbot.waitSignal(second.pulls.finished, timeout=60_000):
            second.start()
        assert second.pulls.jobs[name].tracker.succeeded
        assert PendingPulls(tmp_path / "state" / "pulls.json").items() == []
    finally:
        second.shutdown()
    names = {m["name"] for m in httpx.get(server.url + "/api/tags", trust_env=False).json()["models"]}
    assert any(n.endswith("tinyreg:latest") for n in names)
