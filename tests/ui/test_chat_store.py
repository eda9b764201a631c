"""The chat store on its own: conversations and messages in SQLite, pieces written as they arrive, crash recovery, export."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.images import gradient
from ui.chat_api import AnswerStats, ChatOptions, Think, ToolCall
from ui.chat_export import to_json, to_markdown
from ui.chat_store import ChatStore, MessageState, StoreError, default_path

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def test_default_path_is_the_platform_data_folder(temp_home: Path) -> None:
    assert default_path() == temp_home / ".local" / "share" / "pollama" / "chats.sqlite3"
    s = ChatStore()
    try:
        assert s.path.exists()
        mode = sqlite3.connect(s.path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        s.close()


def test_conversations_list_search_rename_delete(store: ChatStore) -> None:
    a = store.create_conversation(model="tiny", system="Be brief.", options=ChatOptions(temperature=0.2, seed=7))
    b = store.create_conversation(title="Holiday plans")
    store.add_message(a.id, "user", "What is 100% of a_b?")
    store.add_message(b.id, "user", "Pack sunscreen")
    assert [c.id for c in store.conversations()] == [b.id, a.id]  # newest activity first
    store.add_message(a.id, "assistant", "All of it.")
    assert [c.id for c in store.conversations()] == [a.id, b.id]
    assert [c.id for c in store.conversations("holiday")] == [b.id]  # title, any case
    assert [c.id for c in store.conversations("SUNSCREEN")] == [b.id]  # message text
    assert [c.id for c in store.conversations("100%")] == [a.id]  # LIKE wildcards are literal
    assert store.conversations("a_b") and store.conversations("x_y") == []
    got = store.conversation(a.id)
    assert got is not None and got.system == "Be brief." and got.options == ChatOptions(temperature=0.2, seed=7)
    renamed = store.update_conversation(a.id, title="Percentages", options=ChatOptions(think=Think.HIGH, num_ctx=4096))
    assert renamed.title == "Percentages" and renamed.options.think is Think.HIGH and renamed.options.num_ctx == 4096
    store.delete_conversation(a.id)
    assert store.conversation(a.id) is None and store.messages(a.id) == []
    assert store._db.execute("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (a.id,)).fetchone()[0] == 0


def test_pieces_are_on_disk_as_they_arrive_and_fold_when_done(store: ChatStore, tmp_path: Path) -> None:
    conv = store.create_conversation(model="tiny")
    store.add_message(conv.id, "user", "hi", images=[gradient()])
    answer = store.add_message(conv.id, "assistant", model="tiny", state=MessageState.STREAMING)
    store.append_piece(answer.id, thinking="Let me ")
    store.append_piece(answer.id, thinking="think.")
    store.append_piece(answer.id, "Hel")
    store.append_piece(answer.id, "lo", tool_calls=[ToolCall("get_weather", '{"city": "Paris"}')])
    # another connection (another process) already sees every piece
    other = ChatStore(tmp_path / "chats.sqlite3", recover=False)
    seen = other.message(answer.id)
    assert seen is not None and seen.content == "Hello" and seen.thinking == "Let me think."
    assert seen.state is MessageState.STREAMING and seen.tool_calls[0].name == "get_weather"
    other.close()
    stats = AnswerStats(eval_count=2, eval_duration_ns=20_000_000, first_piece_s=0.25, done_reason="stop")
    done = store.finish_message(answer.id, MessageState.COMPLETE, stats=stats, truncated_messages=3)
    assert (done.content, done.thinking, done.state, done.truncated_messages) == (
        "Hello",
        "Let me think.",
        MessageState.COMPLETE,
        3,
    )
    assert done.stats == stats and done.stats.tokens_per_second == pytest.approx(100.0)
    assert store._db.execute("SELECT COUNT(*) FROM pieces").fetchone()[0] == 0
    assert store.messages(conv.id)[0].images == (gradient(),)


def test_a_crash_loses_nothing_that_arrived(tmp_path: Path) -> None:
    """A real process appends pieces and is SIGKILLed mid-answer; the next open keeps them, marked interrupted."""
    db = tmp_path / "chats.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from ui.chat_store import ChatStore, MessageState
        s = ChatStore(__import__("pathlib").Path({str(db)!r}))
        c = s.create_conversation(model="tiny")
        s.add_message(c.id, "user", "count")
        a = s.add_message(c.id, "assistant", model="tiny", state=MessageState.STREAMING)
        for i in range(50):
            s.append_piece(a.id, f"{{i}} ")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    again = ChatStore(db)
    try:
        assert again.recovered == 1
        conv = again.conversations()[0]
        user, answer = again.messages(conv.id)
        assert user.content == "count"
        assert answer.state is MessageState.INTERRUPTED
        assert answer.content == "".join(f"{i} " for i in range(50))
    finally:
        again.close()


def test_delete_from_drops_the_message_and_everything_after(store: ChatStore) -> None:
    conv = store.create_conversation()
    ids = [
        store.add_message(conv.id, role, text).id
        for role, text in (("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))
    ]
    store.delete_from(conv.id, ids[2])
    assert [m.content for m in store.messages(conv.id)] == ["a", "b"]


def test_bad_files_are_refused_in_words(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the chat history"):
        ChatStore(junk)
    newer = tmp_path / "newer.sqlite3"
    sqlite3.connect(newer).execute("PRAGMA user_version=99").connection.close()
    with pytest.raises(StoreError, match="newer pollama"):
        ChatStore(newer)


def test_export_markdown_and_json(store: ChatStore) -> None:
    conv = store.create_conversation(title="Weather", model="tiny", system="Be brief.", options=ChatOptions(seed=3))
    store.add_message(conv.id, "user", "Weather in Paris?", images=[gradient()])
    answer = store.add_message(conv.id, "assistant", model="tiny", state=MessageState.STREAMING)
    store.append_piece(answer.id, "Sunny, use ```code```.", "hmm", [ToolCall("get_weather", '{"city": "Paris"}')])
    store.finish_message(answer.id, MessageState.STOPPED, stats=AnswerStats(eval_count=5), truncated_messages=2)
    saved = store.conversation(conv.id)
    assert saved is not None
    conv = saved
    md = to_markdown(conv, store.messages(conv.id))
    assert md.startswith("# Weather\n")
    assert "> Be brief." in md and "## You" in md and "## tiny" in md
    assert "<summary>Thinking</summary>" in md and "Tool call: `get_weather`" in md
    assert "2 earlier message(s) were left out" in md and "*Stopped.*" in md and "(1 image attached)" in md
    data = json.loads(to_json(conv, store.messages(conv.id)))
    assert data["model"] == "tiny" and data["system"] == "Be brief." and data["options"] == {"seed": 3}
    user, assistant = data["messages"]
    assert user["role"] == "user" and isinstance(user["images"][0], str)
    assert assistant["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert assistant["thinking"] == "hmm" and assistant["state"] == "stopped" and assistant["truncated_messages"] == 2
    assert assistant["stats"]["eval_count"] == 5
