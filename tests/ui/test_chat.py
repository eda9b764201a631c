"""The Chat page against a real server with tiny models: streaming, Stop, persistence, images, thinking, tools, truncation.

One server per module (models are created once); every test gets its own
home, so its own chat database under the platform data folder. The server
runs with one slot per model (`OLLAMA_NUM_PARALLEL=1`) and debug logging,
so a cancelled generation shows in the runner's log and a freed slot shows
as a second request answered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PySide6.QtCore import QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage

from tests.fixtures.images import checkerboard, gradient
from tests.server.api.test_openai_api import CALL_SCHEMA, THINK_TEMPLATE, TOOLS_TEMPLATE, WEATHER_TOOL
from tests.support.live_server import LiveServer
from tests.ui.conftest import CHATML, ScriptedPrompter, create_model, make_desktop
from ui.chat_api import ChatChunk, ChatOptions, Think
from ui.chat_store import ChatStore, MessageState
from ui.chat_widgets import mime_with_files, mime_with_image

IMAGE_POSITIONS = 16  # the tiny projector's embeddings per image (tests/server/api/test_vision_api.py)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, tiny_projector_path: Path
) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("chat")
    home = base / "home"
    env = {
        "OLLAMA_NUM_PARALLEL": "1",
        "OLLAMA_DEBUG": "1",
        "OLLAMA_KEEP_ALIVE": "10m",
        "OLLAMA_MAX_LOADED_MODELS": "3",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    srv = LiveServer(base / "models", env=env).start()
    try:
        short = {"num_predict": 16, "temperature": 0, "seed": 1}
        create_model(srv.url, "tiny-chat", tiny_model_path, template=CHATML, parameters=short)
        create_model(srv.url, "tiny-long", tiny_model_path, template=CHATML, parameters={"num_predict": 100_000})
        create_model(srv.url, "tiny-think", tiny_model_path, template=THINK_TEMPLATE, parameters=short)
        create_model(srv.url, "tiny-tools", tiny_model_path, template=TOOLS_TEMPLATE)
        with httpx.Client(base_url=srv.url, timeout=60, trust_env=False) as c:
            digests = {}
            for key, path in (("model.gguf", tiny_model_path), ("mmproj.gguf", tiny_projector_path)):
                digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
                if c.head(f"/api/blobs/{digest}").status_code != 200:
                    c.post(f"/api/blobs/{digest}", content=path.read_bytes()).raise_for_status()
                digests[key] = digest
            r = c.post(
                "/api/create",
                json={"model": "seer", "files": digests, "template": CHATML, "parameters": short, "stream": False},
            )
            assert r.status_code == 200, r.text
        yield srv
    finally:
        srv.stop()


def make_app(server: LiveServer, prompter: ScriptedPrompter, tmp_path: Path) -> Any:
    app = make_desktop(server.url, prompter, tmp_path)
    app.start(resume_pulls=False)
    return app


@pytest.fixture
def desktop(qtbot, server: LiveServer, prompter: ScriptedPrompter, tmp_path: Path) -> Iterator[Any]:
    app = make_app(server, prompter, tmp_path)
    try:
        yield app
    finally:
        app.shutdown()


def open_chat(qtbot, desktop: Any, model: str) -> Any:
    page = desktop.chat()
    with qtbot.waitSignal(page.models_refreshed, timeout=20_000):
        desktop.show_chat()
    with qtbot.waitSignal(page.facts_shown, timeout=20_000):
        page.pick_model(model)
    return page


def send(qtbot, page: Any, text: str, *, timeout: int = 60_000) -> Any:
    """Type and send like a person (Enter), wait for the answer to end; the stored answer."""
    page.composer.setPlainText(text)
    with qtbot.waitSignal(page.session.answer_finished, timeout=timeout) as done:
        page.composer.setFocus()
        qtbot.keyClick(page.composer, Qt.Key.Key_Return)
    message = page.store.message(done.args[0])
    assert message is not None
    return message


def test_a_chat_streams_its_answer_into_the_view(qtbot, desktop) -> None:
    page = open_chat(qtbot, desktop, "tiny-chat:latest")
    assert desktop.window.current == "chat" and page.isVisible()  # the default page
    assert "is not loaded: it loads when you send the first message" in page.load_label.text()
    # How many pieces 16 tokens make depends on the machine's load (the runner merges tokens a
    # slow reader has not taken yet), so "piece by piece" is checked on an endless answer in the
    # Stop test; here the answer must have streamed in at least one piece before it finished.
    pieces: list[int] = []
    page.session.piece.connect(pieces.append)
    page.composer.setPlainText("Hello there")
    with qtbot.waitSignal(page.session.answer_finished, timeout=60_000) as done:
        qtbot.keyClick(page.composer, Qt.Key.Key_Return)
        assert page.send_button.text() == "Stop"  # while it streams
    assert done.args[1] == "complete"
    assert pieces and set(pieces) == {done.args[0]}
    answer = page.store.message(done.args[0])
    assert answer.state is MessageState.COMPLETE and answer.content and answer.model == "tiny-chat:latest"
    assert answer.stats is not None and answer.stats.eval_count == 16 and answer.stats.first_piece_s is not None
    qtbot.waitUntil(lambda: answer.content.strip()[:10] in page.transcript.toPlainText(), timeout=5000)
    text = page.transcript.toPlainText()
    assert "Hello there" in text and "16 tokens ·" in text and "tokens/s" in text and "first token after" in text
    assert page.conversation_titles() == ["Hello there"]  # titled by the first message
    assert page.send_button.text() == "Send" and page.composer.toPlainText() == ""
    qtbot.waitUntil(lambda: "is loaded" in page.load_label.text(), timeout=10_000)  # from /api/ps


def test_shift_enter_is_a_new_line_and_enter_sends(qtbot, desktop) -> None:
    page = open_chat(qtbot, desktop, "tiny-chat:latest")
    page.composer.setPlainText("first line")
    page.composer.moveCursor(page.composer.textCursor().MoveOperation.End)
    qtbot.keyClick(page.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(page.composer, "second")
    assert page.composer.toPlainText() == "first line\nsecond" and not page.session.busy
    with qtbot.waitSignal(page.session.answer_finished, timeout=60_000):
        qtbot.keyClick(page.composer, Qt.Key.Key_Return)
    user = page.session.messages()[0]
    assert user.role == "user" and user.content == "first line\nsecond"


def test_stop_aborts_the_request_and_frees_the_slot(qtbot, desktop, server: LiveServer) -> None:
    page = open_chat(qtbot, desktop, "tiny-long:latest")
    page.composer.setPlainText("Go on forever")
    pieces: list[object] = []
    page.session.piece.connect(lambda *args: pieces.append(args))
    page.send_typed()
    qtbot.waitUntil(lambda: len(pieces) >= 2, timeout=60_000)  # it arrives piece by piece, not at once
    assert page.session.busy and "Go on forever" in page.transcript.toPlainText()
    cancels_before = server.log().count("cancelled after")
    with qtbot.waitSignal(page.session.answer_finished, timeout=10_000) as done:
        qtbot.keyClick(page.composer, Qt.Key.Key_Escape)  # Esc stops
    assert done.args[1] == "stopped"
    answer = page.store.message(done.args[0])
    assert answer.state is MessageState.STOPPED and answer.content  # what arrived is kept
    # The server saw its client go away and cancelled the generation in the runner ...
    qtbot.waitUntil(lambda: server.log().count("cancelled after") > cancels_before, timeout=30_000)
    # ... so the only slot is free: a new request is answered (it would queue behind 100,000 tokens otherwise).
    r = httpx.post(
        server.url + "/api/chat",
        json={
            "model": "tiny-long",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": False,
            "options": {"num_predict": 3},
        },
        timeout=60,
        trust_env=False,
    )
    assert r.status_code == 200 and r.json()["done_reason"] == "length"
    assert "Stopped." in page.transcript.toPlainText()


def test_the_conversation_survives_closing_and_reopening_the_app(qtbot, server, prompter, tmp_path) -> None:
    first = make_app(server, prompter, tmp_path)
    try:
        page = open_chat(qtbot, first, "tiny-chat:latest")
        page.options_panel.system_edit.setPlainText("You are a llama.")
        page.options_panel.seed_spin.setValue(42)
        answer = send(qtbot, page, "Remember me")
        conversation = page.session.conversation
    finally:
        first.shutdown()
    second = make_app(server, prompter, tmp_path)  # same home, so the same data folder
    try:
        page2 = second.show_chat()
        assert page2.session.conversation is not None and page2.session.conversation.id == conversation.id
        assert page2.conversation_titles() == ["Remember me"]
        messages = page2.session.messages()
        assert [(m.role, m.content) for m in messages] == [("user", "Remember me"), ("assistant", answer.content)]
        assert page2.session.conversation.system == "You are a llama." and page2.options_panel.seed_spin.value() == 42
        assert page2.session.conversation.options.seed == 42
        assert "Remember me" in page2.transcript.toPlainText()
        assert page2.model_combo.currentText() == "tiny-chat:latest"
    finally:
        second.shutdown()


def test_an_image_reaches_a_vision_model(qtbot, desktop, prompter, tmp_path: Path) -> None:
    page = open_chat(qtbot, desktop, "tiny-chat:latest")
    assert not page.attach_button.isEnabled()  # not a vision model
    page.composer.insertFromMimeData(mime_with_image(QImage.fromData(gradient())))
    assert page.pending_images == [] and "does not take images" in page.status.text()

    with qtbot.waitSignal(page.facts_shown, timeout=20_000):
        page.pick_model("seer:latest")
    assert page.facts.vision and page.attach_button.isEnabled()
    picture = tmp_path / "board.png"
    picture.write_bytes(checkerboard())
    prompter.files = [picture]
    page.attach_button.click()  # the file dialog
    page.composer.insertFromMimeData(mime_with_image(QImage.fromData(gradient())))  # a paste
    assert len(page.pending_images) == 2 and page.pending_images[0] == checkerboard()
    assert "2 images attached" in page.attach_label.text()
    with_images = send(qtbot, page, "what is in these pictures?")
    assert with_images.state is MessageState.COMPLETE, with_images.error
    user = page.session.messages()[0]
    assert len(user.images) == 2 and page.pending_images == []
    assert "<img" in page.transcript.toHtml()  # thumbnails from our own resources

    page.new_chat()
    without = send(qtbot, page, "what is in these pictures?")
    assert with_images.stats and without.stats
    # the model evaluated 16 positions per image more: the pictures reached it
    extra = with_images.stats.prompt_eval_count - without.stats.prompt_eval_count
    assert abs(extra - 2 * IMAGE_POSITIONS) <= 4, extra


def test_dropped_image_files(qtbot, desktop, tmp_path: Path) -> None:
    page = open_chat(qtbot, desktop, "seer:latest")
    good, bad = tmp_path / "a.png", tmp_path / "b.jpg"
    good.write_bytes(gradient())
    bad.write_bytes(b"not a picture")
    mime = mime_with_files([good])  # kept referenced: the event does not own it
    event = QDropEvent(
        QPoint(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    page.dropEvent(event)
    assert page.pending_images == [gradient()]
    page.composer.insertFromMimeData(mime_with_files([bad]))
    assert page.pending_images == [gradient()] and "b.jpg is not an image" in page.status.text()


def test_thinking_renders_folded_and_opens(qtbot, desktop) -> None:
    page = open_chat(qtbot, desktop, "tiny-chat:latest")
    assert not page.options_panel.think_combo.isEnabled()  # this model cannot think
    with qtbot.waitSignal(page.facts_shown, timeout=20_000):
        page.pick_model("tiny-think:latest")
    assert "thinking" in page.facts.capabilities and page.options_panel.think_combo.isEnabled()
    page.new_chat()
    combo = page.options_panel.think_combo
    combo.setCurrentIndex(combo.findData(Think.ON.value))
    assert page.session.conversation.options.think is Think.ON
    answer = send(qtbot, page, "Think about it")
    assert answer.state is MessageState.COMPLETE, answer.error
    assert answer.thinking  # the template opened <think>: the pieces arrived as `thinking`
    words = len(answer.thinking.split())
    text = page.transcript.toPlainText()
    assert f"Thought for {words} word" in text and answer.thinking.strip()[:20] not in text  # folded
    page.handle_link(QUrl(f"pollama:think/{answer.id}"))
    assert answer.thinking.split()[0] in page.transcript.toPlainText()  # opened
    page.handle_link(QUrl(f"pollama:think/{answer.id}"))
    assert "▸ Thought for" in page.transcript.toPlainText()


def test_tool_calls_render(qtbot, desktop, server) -> None:
    """A tool call recorded from the real server (tools + a schema that forces a call), fed through the store."""
    lines = []
    body = {
        "model": "tiny-tools",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "format": CALL_SCHEMA,
        "options": {"temperature": 0, "num_predict": 200},
    }
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=120, trust_env=False) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
    chunks = [ChatChunk.from_json(obj) for obj in lines]
    assert any(c.tool_calls for c in chunks)
    page = desktop.show_chat()
    store = page.store
    conv = page.new_chat()
    store.add_message(conv.id, "user", "Weather in Paris?")
    answer = store.add_message(conv.id, "assistant", model="tiny-tools:latest", state=MessageState.STREAMING)
    for c in chunks:
        if c.has_piece:
            store.append_piece(answer.id, c.content, c.thinking, c.tool_calls)
    final = chunks[-1]
    store.finish_message(answer.id, MessageState.COMPLETE, stats=final.stats)
    page.open_conversation(conv.id)
    call = store.message(answer.id).tool_calls[0]
    text = page.transcript.toPlainText()
    assert "Tool call" in text and "get_weather" in text and json.loads(call.arguments)["city"] in text


def test_truncation_shows_in_the_conversation(qtbot, desktop) -> None:
    page = open_chat(qtbot, desktop, "tiny-chat:latest")
    conv = page.new_chat()
    page.options_panel.context_spin.setValue(256)
    assert page.session.conversation.options == ChatOptions(num_ctx=256)
    filler = " ".join(["the llama and the alpaca walk in the field of the valley"] * 6)
    for i in range(8):
        page.store.add_message(conv.id, "user", f"{i}: {filler}")
        page.store.add_message(conv.id, "assistant", f"{i}: {filler}", model="tiny-chat:latest")
    answer = send(qtbot, page, "And now?")
    assert answer.state is MessageState.COMPLETE, answer.error
    assert answer.truncated_messages > 0
    assert (
        f"the oldest {answer.truncated_messages} messages were left out of this answer" in page.transcript.toPlainText()
    )


def test_regenerate_and_edit_and_resend(qtbot, desktop) -> None:
    page = open_chat(qtbot, desktop, "tiny-chat:latest")
    first = send(qtbot, page, "One")
    page.options_panel.seed_spin.setValue(9)  # a different seed, so a different answer
    page.options_panel.temperature_spin.setValue(1.0)
    with qtbot.waitSignal(page.session.answer_finished, timeout=60_000) as again:
        page.handle_link(QUrl(f"pollama:regenerate/{first.id}"))
    messages = page.session.messages()
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].id == again.args[0] != first.id and page.store.message(first.id) is None
    user = messages[0]
    page.handle_link(QUrl(f"pollama:edit/{user.id}"))
    assert page.editing_id == user.id and page.composer.toPlainText() == "One" and page.edit_banner.isVisibleTo(page)
    page.composer.setPlainText("Two")
    with qtbot.waitSignal(page.session.answer_finished, timeout=60_000):
        qtbot.keyClick(page.composer, Qt.Key.Key_Return)
    messages = page.session.messages()
    assert [(m.role, m.content) for m in messages][0] == ("user", "Two") and len(messages) == 2
    assert page.editing_id is None and not page.edit_banner.isVisibleTo(page)


def test_conversation_list_new_rename_delete_search_export(qtbot, desktop, prompter, server, tmp_path) -> None:
    page = open_chat(qtbot, desktop, "tiny-chat:latest")
    send(qtbot, page, "About llamas")
    qtbot.waitUntil(desktop.window.isActiveWindow, timeout=5000)
    qtbot.keyClick(desktop.window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert page.session.conversation is not None and page.session.messages() == []
    send(qtbot, page, "About alpacas")
    assert page.conversation_titles() == ["About alpacas", "About llamas"]
    prompter.texts = ["Alpaca facts"]
    page.rename_button.click()
    assert page.conversation_titles() == ["Alpaca facts", "About llamas"]
    page.search_edit.setText("llama")
    assert page.conversation_titles() == ["About llamas"]
    page.search_edit.clear()

    md, js = tmp_path / "chat.md", tmp_path / "chat.json"
    prompter.files = [md, js]
    page.export("markdown")
    page.export("json")
    assert md.read_text().startswith("# Alpaca facts\n") and "About alpacas" in md.read_text()
    data = json.loads(js.read_text())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    # the exported messages are Ollama's shape: another client can post them as they are
    r = httpx.post(
        server.url + "/api/chat",
        json={"model": data["model"], "messages": data["messages"], "stream": False},
        timeout=60,
        trust_env=False,
    )
    assert r.status_code == 200, r.text

    prompter.confirms = [False]
    page.delete_button.click()
    assert len(page.conversation_titles()) == 2
    prompter.confirms = [True]
    page.delete_button.click()
    assert page.conversation_titles() == ["About llamas"]
    assert page.session.conversation is not None and page.session.conversation.title == "About llamas"
    assert len(ChatStore(page.store.path, recover=False).conversations()) == 1


def test_quitting_mid_answer_keeps_what_arrived(qtbot, server, prompter, tmp_path) -> None:
    app = make_app(server, prompter, tmp_path)
    try:
        page = open_chat(qtbot, app, "tiny-long:latest")
        page.composer.setPlainText("Tell me everything")
        with qtbot.waitSignal(page.session.piece, timeout=60_000):
            page.send_typed()
        qtbot.waitUntil(lambda: len(page.session.live.content) > 20, timeout=30_000)
        path = page.store.path
    finally:
        app.shutdown()
    store = ChatStore(path)
    try:
        assert store.recovered == 0  # it ended cleanly, as a stopped answer, not a crash
        answer = store.messages(store.conversations()[0].id)[-1]
        assert answer.state is MessageState.STOPPED and len(answer.content) > 20
    finally:
        store.close()
