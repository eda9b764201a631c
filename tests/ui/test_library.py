"""The library window against a real server: list, filter, sort, details, delete, copy, create, drop."""

from __future__ import annotations

from pathlib import Path

import httpx
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent

from tests.support.live_server import LiveServer


def server_names(server: LiveServer) -> set[str]:
    return {m["name"] for m in httpx.get(server.url + "/api/tags", trust_env=False).json()["models"]}


def open_library(qtbot, desktop):
    with qtbot.waitSignal(desktop.library().refreshed, timeout=10_000):
        window = desktop.show_library()
    qtbot.addWidget(window)
    return window


def test_lists_the_tiny_models_with_their_columns(qtbot, desktop) -> None:
    window = open_library(qtbot, desktop)
    assert sorted(window.names()) == ["tiny-chat:latest", "tiny:latest"]
    model = window.table_model
    row = [model.index(0, c).data() for c in range(model.columnCount())]
    assert row[0].startswith("tiny")
    assert len(row[1]) == 12  # ID: first 12 hex digits of the manifest digest
    assert row[2].endswith("KB") or row[2].endswith("MB")
    assert row[3] == "llama"
    assert row[5]  # quantization
    assert row[6] == "Just now"


def test_filter_and_sort(qtbot, desktop) -> None:
    window = open_library(qtbot, desktop)
    window.filter_edit.setText("CHAT")
    assert window.names() == ["tiny-chat:latest"]
    window.filter_edit.clear()
    window.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert window.names() == ["tiny-chat:latest", "tiny:latest"]
    window.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    assert window.names() == ["tiny:latest", "tiny-chat:latest"]


def test_details_pane_shows_show(qtbot, desktop) -> None:
    window = open_library(qtbot, desktop)
    with qtbot.waitSignal(window.details_shown, timeout=10_000):
        assert window.select("tiny-chat:latest")
    info = window.details.shown
    assert info is not None
    assert "<|im_start|>" in window.details.template.toPlainText()
    assert window.details.system.toPlainText() == "You are terse."
    assert "completion" in info.capabilities
    keys = [window.details.info.item(r, 0).text() for r in range(window.details.info.rowCount())]
    assert "general.architecture" in keys
    assert "Capabilities" in window.details.overview.text()


def test_delete_asks_first_then_deletes(qtbot, desktop, prompter, server) -> None:
    window = open_library(qtbot, desktop)
    window.select("tiny:latest")
    prompter.confirms = [False]
    window.delete_button.click()
    assert "tiny:latest" in server_names(server)
    prompter.confirms = [True]
    window.delete_button.click()
    qtbot.waitUntil(lambda: window.names() == ["tiny-chat:latest"], timeout=10_000)
    assert server_names(server) == {"tiny-chat:latest"}
    assert window.status.kind == "ok"


def test_copy_through_the_window(qtbot, desktop, prompter, server) -> None:
    window = open_library(qtbot, desktop)
    window.select("tiny:latest")
    prompter.texts = ["copied:v1"]
    window.copy_button.click()
    qtbot.waitUntil(lambda: "copied:v1" in window.names(), timeout=10_000)
    assert "copied:v1" in server_names(server)


def test_errors_are_shown_inline(qtbot, desktop) -> None:
    window = open_library(qtbot, desktop)
    with qtbot.waitSignal(window.operation_failed, timeout=10_000) as blocker:
        window.copy("does-not-exist", "x")
    assert "does not exist" in blocker.args[0] or "not found" in blocker.args[0].lower()
    assert window.status.kind == "error"


def test_create_from_a_modelfile_in_the_dialog(qtbot, desktop, server) -> None:
    window = open_library(qtbot, desktop)
    dialog = window.open_create_dialog()
    dialog.name_edit.setText("pirate")
    dialog.text_edit.setPlainText(
        'FROM tiny\nSYSTEM """You are a pirate."""\nPARAMETER temperature 0.3\nPARAMETER stop "<end>"\n'
    )
    with qtbot.waitSignal(window.operation_done, timeout=20_000):
        dialog.accept()
    shown = httpx.post(server.url + "/api/show", json={"model": "pirate"}, trust_env=False).json()
    assert shown["system"] == "You are a pirate."
    assert "temperature" in shown["parameters"] and "<end>" in shown["parameters"]


def test_create_from_a_dropped_gguf(qtbot, desktop, prompter, server, tiny_model_path: Path, tmp_path: Path) -> None:
    window = open_library(qtbot, desktop)
    dropped = tmp_path / "My Model.gguf"
    dropped.write_bytes(tiny_model_path.read_bytes() + b"")  # same bytes: the blob is already there
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    prompter.texts = ["dropped"]
    event = QDropEvent(
        QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(window.operation_done, timeout=30_000):
        window.dropEvent(event)
    assert "dropped:latest" in server_names(server)
    assert any("My Model.gguf" in q for q in prompter.asked)


def test_create_uploads_a_new_gguf(qtbot, desktop, server, small_model_path: Path) -> None:
    window = open_library(qtbot, desktop)
    with qtbot.waitSignal(window.operation_done, timeout=60_000):
        window.create_from_gguf("small", small_model_path)
    assert "small:latest" in server_names(server)
