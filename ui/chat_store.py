"""Conversations on disk: one SQLite database (stdlib `sqlite3`, WAL) in the platform's data folder.

Why SQLite: a chat is written while it streams and read back whole, often
searched, and must survive a crash; one file with transactions does all of
that without a server. Why this shape:

- An answer is written *as it arrives*: every streamed piece is one small
  `INSERT` into `pieces` (autocommit, WAL, `synchronous=NORMAL`), and when
  the answer ends the pieces are folded into the message row and deleted.
  A crash of the app therefore loses at most the piece in flight; on the
  next open, an answer left half-written is folded and marked interrupted.
  The cost per piece is one WAL append of a page or so and no fsync (WAL
  with NORMAL syncs at checkpoints), tens of microseconds here, against a
  model's tens of milliseconds per token; rewriting the whole message row
  per piece instead would write O(n²) bytes over a long answer. (A power
  cut, unlike a crash, may lose the last commits before the next
  checkpoint: that is what NORMAL trades for not syncing per token.)
- Images are BLOBs in their own table, so listing conversations never reads them.
- Ids are never reused (AUTOINCREMENT): a link in the transcript ("regenerate
  answer 12") can never reach a message that later took a deleted one's id.
- Search is `LIKE` over titles and message text: a person's chat history is
  small enough, and it needs no FTS5 build option.

Everything the store hands out is a frozen dataclass; nothing above it sees SQL.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from ui.chat_api import AnswerStats, ChatOptions, ToolCall, parse_tool_calls

SCHEMA_VERSION = 1
DEFAULT_TITLE = "New chat"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    system TEXT NOT NULL DEFAULT '',
    options TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL DEFAULT '',
    thinking TEXT NOT NULL DEFAULT '',
    tool_calls TEXT NOT NULL DEFAULT '[]',
    model TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'complete',
    error TEXT NOT NULL DEFAULT '',
    stats TEXT,
    truncated INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
CREATE TABLE IF NOT EXISTS images (
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE TABLE IF NOT EXISTS pieces (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    content TEXT NOT NULL DEFAULT '',
    thinking TEXT NOT NULL DEFAULT '',
    tool_calls TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS pieces_by_message ON pieces(message_id, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def default_path() -> Path:
    return Path(platformdirs.user_data_dir("pollama")) / "chats.sqlite3"


class MessageState(enum.Enum):
    COMPLETE = "complete"
    STREAMING = "streaming"  # on disk only while an answer arrives (or after a crash, until the next open)
    STOPPED = "stopped"  # the person pressed Stop: what arrived is kept
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the app ended while it was answering


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str = ""
    system: str = ""
    options: ChatOptions = field(default_factory=ChatOptions)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str  # "user" or "assistant"
    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    images: tuple[bytes, ...] = ()
    model: str = ""
    state: MessageState = MessageState.COMPLETE
    error: str = ""
    stats: AnswerStats | None = None
    truncated_messages: int = 0
    created_at: float = 0.0


class StoreError(Exception):
    """The database cannot be opened or written (disk full, not a database, newer schema)."""


def _tool_json(calls: Iterable[ToolCall]) -> str:
    return json.dumps([c.wire() for c in calls], ensure_ascii=False)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class ChatStore:
    """`recover`: fold answers a crash left streaming. Only the app's one instance (see
    `single_instance`) may do that; a reader alongside it (a test, a tool) passes False, or it would
    take an answer arriving in the app for a dead one."""

    def __init__(self, path: Path | None = None, *, recover: bool = True) -> None:
        self.path = path or default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer pollama (schema {version})")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the chat history {self.path}: {exc}") from exc
        self.recovered = self._recover() if recover else 0

    def close(self) -> None:
        self._db.close()

    # -- conversations -----------------------------------------------------------------------
    @staticmethod
    def _conversation(row: Sequence[object]) -> Conversation:
        cid, title, model, system, options, created, updated = row
        return Conversation(
            id=int(cid),  # type: ignore[call-overload]
            title=str(title),
            model=str(model),
            system=str(system),
            options=ChatOptions.from_json(str(options)),
            created_at=float(created),  # type: ignore[arg-type]
            updated_at=float(updated),  # type: ignore[arg-type]
        )

    _CONV_COLUMNS = "id, title, model, system, options, created_at, updated_at"

    def conversations(self, search: str = "") -> list[Conversation]:
        """Newest first; `search` matches the title or any message's text, case-insensitively."""
        sql = f"SELECT {self._CONV_COLUMNS} FROM conversations"
        args: tuple[str, ...] = ()
        if search.strip():
            pattern = _like(search.strip())
            sql += (
                " WHERE title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m"
                " WHERE m.conversation_id = conversations.id AND m.content LIKE ? ESCAPE '\\')"
            )
            args = (pattern, pattern)
        rows = self._db.execute(sql + " ORDER BY updated_at DESC, id DESC", args).fetchall()
        return [self._conversation(r) for r in rows]

    def conversation(self, conversation_id: int) -> Conversation | None:
        row = self._db.execute(
            f"SELECT {self._CONV_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        return self._conversation(row) if row else None

    def create_conversation(
        self, *, title: str = DEFAULT_TITLE, model: str = "", system: str = "", options: ChatOptions | None = None
    ) -> Conversation:
        now = time.time()
        cur = self._write(
            "INSERT INTO conversations (title, model, system, options, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (title, model, system, (options or ChatOptions()).to_json(), now, now),
        )
        made = self.conversation(int(cur.lastrowid or 0))
        assert made is not None
        return made

    def update_conversation(
        self,
        conversation_id: int,
        *,
        title: str | None = None,
        model: str | None = None,
        system: str | None = None,
        options: ChatOptions | None = None,
    ) -> Conversation:
        sets, args = [], []
        for column, value in (
            ("title", title),
            ("model", model),
            ("system", system),
            ("options", options.to_json() if options is not None else None),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if sets:
            self._write(f"UPDATE conversations SET {', '.join(sets)} WHERE id = ?", (*args, conversation_id))
        found = self.conversation(conversation_id)
        if found is None:
            raise StoreError(f"no conversation {conversation_id}")
        return found

    def touch(self, conversation_id: int) -> None:
        self._write("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        self._write("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # -- messages --------------------------------------------------------------------------
    _MSG_COLUMNS = (
        "id, conversation_id, role, content, thinking, tool_calls, model, state, error, stats, truncated, created_at"
    )

    def _message(self, row: Sequence[object]) -> Message:
        mid, cid, role, content, thinking, tools, model, state, error, stats, truncated, created = row
        images = tuple(
            bytes(r[0])
            for r in self._db.execute("SELECT data FROM images WHERE message_id = ? ORDER BY position", (mid,))
        )
        content, thinking, calls = str(content), str(thinking), parse_tool_calls(json.loads(str(tools) or "[]"))
        if state == MessageState.STREAMING.value:
            extra_content, extra_thinking, extra_calls = self._pieces(int(mid))  # type: ignore[call-overload]
            content, thinking, calls = content + extra_content, thinking + extra_thinking, calls + extra_calls
        try:
            message_state = MessageState(state)
        except ValueError:
            message_state = MessageState.COMPLETE
        return Message(
            id=int(mid),  # type: ignore[call-overload]
            conversation_id=int(cid),  # type: ignore[call-overload]
            role=str(role),
            content=content,
            thinking=thinking,
            tool_calls=calls,
            images=images,
            model=str(model),
            state=message_state,
            error=str(error),
            stats=AnswerStats.from_json(stats if isinstance(stats, str) else None),
            truncated_messages=int(truncated),  # type: ignore[call-overload]
            created_at=float(created),  # type: ignore[arg-type]
        )

    def messages(self, conversation_id: int) -> list[Message]:
        rows = self._db.execute(
            f"SELECT {self._MSG_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        ).fetchall()
        return [self._message(r) for r in rows]

    def message(self, message_id: int) -> Message | None:
        row = self._db.execute(f"SELECT {self._MSG_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return self._message(row) if row else None

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str = "",
        *,
        images: Sequence[bytes] = (),
        model: str = "",
        state: MessageState = MessageState.COMPLETE,
    ) -> Message:
        now = time.time()
        try:
            with self._db:
                self._db.execute("BEGIN")
                cur = self._db.execute(
                    "INSERT INTO messages (conversation_id, role, content, model, state, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (conversation_id, role, content, model, state.value, now),
                )
                mid = int(cur.lastrowid or 0)
                self._db.executemany(
                    "INSERT INTO images (message_id, position, data) VALUES (?, ?, ?)",
                    [(mid, i, sqlite3.Binary(data)) for i, data in enumerate(images)],
                )
                self._db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save the message: {exc}") from exc
        made = self.message(mid)
        assert made is not None
        return made

    def append_piece(
        self, message_id: int, content: str = "", thinking: str = "", tool_calls: Sequence[ToolCall] = ()
    ) -> None:
        """One streamed piece, on disk before this returns (see the module docstring for the cost)."""
        self._write(
            "INSERT INTO pieces (message_id, content, thinking, tool_calls) VALUES (?, ?, ?, ?)",
            (message_id, content, thinking, _tool_json(tool_calls)),
        )

    def _pieces(self, message_id: int) -> tuple[str, str, tuple[ToolCall, ...]]:
        content: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        for c, t, tools in self._db.execute(
            "SELECT content, thinking, tool_calls FROM pieces WHERE message_id = ? ORDER BY id", (message_id,)
        ):
            content.append(c)
            thinking.append(t)
            calls.extend(parse_tool_calls(json.loads(tools or "[]")))
        return "".join(content), "".join(thinking), tuple(calls)

    def finish_message(
        self,
        message_id: int,
        state: MessageState,
        *,
        stats: AnswerStats | None = None,
        truncated_messages: int = 0,
        error: str = "",
    ) -> Message:
        """Fold the streamed pieces into the message and give it its final state, in one transaction."""
        current = self.message(message_id)
        if current is None:
            raise StoreError(f"no message {message_id}")
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute(
                    "UPDATE messages SET content = ?, thinking = ?, tool_calls = ?, state = ?, error = ?, stats = ?,"
                    " truncated = ? WHERE id = ?",
                    (
                        current.content,
                        current.thinking,
                        _tool_json(current.tool_calls),
                        state.value,
                        error,
                        stats.to_json() if stats else None,
                        truncated_messages,
                        message_id,
                    ),
                )
                self._db.execute("DELETE FROM pieces WHERE message_id = ?", (message_id,))
                self._db.execute(
                    "UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), current.conversation_id)
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save the answer: {exc}") from exc
        done = self.message(message_id)
        assert done is not None
        return done

    def delete_from(self, conversation_id: int, message_id: int) -> None:
        """Delete a message and every later one in its conversation (regenerate, edit and resend)."""
        self._write("DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (conversation_id, message_id))

    def _recover(self) -> int:
        """Answers a crash left streaming: fold what reached the disk and mark them interrupted."""
        rows = self._db.execute("SELECT id FROM messages WHERE state = ?", (MessageState.STREAMING.value,)).fetchall()
        for (mid,) in rows:
            self.finish_message(int(mid), MessageState.INTERRUPTED)
        return len(rows)

    # -- small settings kept with the chats (the last model picked) -----------------------
    def get_meta(self, key: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?", (key, value, value)
        )

    def _write(self, sql: str, args: Sequence[object]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save to the chat history: {exc}") from exc
