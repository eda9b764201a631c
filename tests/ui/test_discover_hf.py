"""Discover's Hugging Face search, end to end against a local hub (tests/support/fake_hf.py).

The page searches through `huggingface_hub` (HF_ENDPOINT points at the local hub),
lists a repository's GGUF files by quantization, asks the server whether one fits
(the server reads its manifest and header from the hub's registry routes), and
pulls it through pollama's own `hf.co/...` pull, which the server sends to the
same hub through HF_ENDPOINT.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.fixtures.gguf_models import Preset, cached_model
from tests.support.fake_hf import FakeHub, HubRepo
from tests.support.live_server import LiveServer
from tests.ui.conftest import ScriptedPrompter, make_desktop
from ui.desktop import DesktopApp
from ui.discover_page import DiscoverPage
from ui.format import human_size

TINY_Q8 = Preset("tiny-q8", 2, 64, 4, 2, 128, 1024, 2048, "Q8_0")
REPO = "tester/Tiny-GGUF"
Q8_NAME = f"hf.co/{REPO}:Q8_0"


@pytest.fixture
def tiny_q8_path() -> Path:
    return cached_model(TINY_Q8)


@pytest.fixture
def hub(tiny_model_path: Path, tiny_q8_path: Path, tiny_projector_path: Path) -> Iterator[FakeHub]:
    server = FakeHub(
        [
            HubRepo.of(
                REPO,
                {
                    "tiny-F32.gguf": tiny_model_path,
                    "tiny-Q8_0.gguf": tiny_q8_path,
                    "mmproj-tiny-F16.gguf": tiny_projector_path,
                    "README.md": b"# Tiny\n",
                },
                downloads=50,
            ),
            HubRepo.of(
                "tester/Split-GGUF",
                {
                    "Q2_K/split-Q2_K-00001-of-00002.gguf": b"GGUF" + bytes(3000),
                    "Q2_K/split-Q2_K-00002-of-00002.gguf": bytes(2000),
                },
                downloads=10,
            ),
            HubRepo.of("tester/Safetensors-Only", {"model.safetensors": bytes(100)}, tags=("safetensors",)),
        ]
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hf_server(models_dir: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """A live server whose hf.co pulls go to the local hub, and a UI whose searches do."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    server = LiveServer(models_dir, env={"HF_ENDPOINT": hub.url}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def discover(
    qtbot: QtBot, hf_server: LiveServer, prompter: ScriptedPrompter, tmp_path: Path
) -> Iterator[tuple[DesktopApp, DiscoverPage]]:
    app = make_desktop(hf_server.url, prompter, tmp_path)
    app.start()
    try:
        page = app.show_page("discover")
        assert isinstance(page, DiscoverPage)
        qtbot.waitUntil(lambda: page.free_memory > 0, timeout=10_000)
        page.tabs.setCurrentIndex(1)
        yield app, page
    finally:
        app.shutdown()


def test_search_list_estimate_and_pull_from_hugging_face(
    qtbot: QtBot,
    discover: tuple[DesktopApp, DiscoverPage],
    hub: FakeHub,
    hf_server: LiveServer,
    tiny_q8_path: Path,
    tiny_model_path: Path,
    tiny_projector_path: Path,
) -> None:
    app, page = discover
    qtbot.keyClicks(page.search_box, "tester")
    with qtbot.waitSignal(page.hf_results_shown, timeout=20_000) as found:
        qtbot.keyClick(page.search_box, Qt.Key.Key_Return)
    assert found.args[0] == page.hf_repo_ids() == [REPO, "tester/Split-GGUF"]  # not the safetensors one
    assert any(r.startswith("GET /api/models?") and "filter=gguf" in r and "search=tester" in r for r in hub.requests)

    with qtbot.waitSignal(page.hf_files_shown, timeout=20_000):
        page.select_hf_repo(REPO)
    projector = tiny_projector_path.stat().st_size
    q8_size = tiny_q8_path.stat().st_size + projector
    rows = page.hf_rows()
    assert [r[0] for r in rows] == ["Q8_0", "F32"]  # by size; the mmproj file is no model of its own
    assert [r[1] for r in rows] == [human_size(q8_size), human_size(tiny_model_path.stat().st_size + projector)]
    assert all(r[2].startswith("≈ ") for r in rows)  # guessed from the size until the server is asked
    assert "mmproj-tiny-F16.gguf" in page.hf_note.text()

    hub.reset_counters()
    with qtbot.waitSignal(page.estimate_shown, timeout=30_000) as shown:
        assert page.select(Q8_NAME)
    name, view = shown.args
    assert name == Q8_NAME and not view.guessed and page.hf_rows()[0][2] == view.label == "Fits"
    served = hub.served.get(f"/{REPO}/resolve/main/tiny-Q8_0.gguf", 0)
    assert 0 < served < tiny_q8_path.stat().st_size  # the header, by ranges: not the file
    assert f"GET /v2/{REPO}/manifests/Q8_0" in hub.requests
    remote = httpx.post(hf_server.url + "/api/pollama/estimate", json={"model": Q8_NAME}, trust_env=False).json()
    assert remote["local"] is False and remote["weights"] == q8_size and remote["download_size"] > q8_size
    assert human_size(remote["total"]) in view.tooltip

    with qtbot.waitSignal(app.pulls.finished, timeout=60_000) as finished:
        page.pull_button.click()
    assert finished.args[0] == Q8_NAME
    assert page.hf_rows()[0][3] == "Downloaded"
    assert Q8_NAME in app.show_pulls().card_for  # the Downloads page shows it like any pull
    tags = httpx.get(hf_server.url + "/api/tags", trust_env=False).json()["models"]
    assert [m["name"] for m in tags] == [Q8_NAME]
    show = httpx.post(hf_server.url + "/api/show", json={"model": Q8_NAME}, trust_env=False).json()
    assert "vision" in show["capabilities"]  # the projector came along
    local = httpx.post(hf_server.url + "/api/pollama/estimate", json={"model": Q8_NAME}, trust_env=False).json()
    assert local["local"] is True and local["total"] == remote["total"]


def test_split_files_are_one_model_and_failures_say_why(
    qtbot: QtBot, discover: tuple[DesktopApp, DiscoverPage], hub: FakeHub
) -> None:
    app, page = discover
    with qtbot.waitSignal(page.hf_results_shown, timeout=20_000):
        page.search_hf("split")
    with qtbot.waitSignal(page.hf_files_shown, timeout=20_000):
        page.select_hf_repo("tester/Split-GGUF")
    assert page.hf_rows() == [("Q2_K  (2 parts)", human_size(3004 + 2000), "≈ Fits", "")]

    # Hugging Face's registry refuses a split model to a pull; the pull says so in words
    with qtbot.waitSignal(app.pulls.failed, timeout=30_000) as failed:
        page.select("hf.co/tester/Split-GGUF:Q2_K")
        page.pull_selected()
    assert "sharded GGUF" in failed.args[1]

    hub.stop()  # huggingface_hub retries a refused connection five times (~23 s) before it gives up
    with qtbot.waitSignal(page.hf.failed, timeout=90_000):
        page.search_hf("tiny")
    assert f"cannot reach {hub.url}" in page.hf_note.text()
