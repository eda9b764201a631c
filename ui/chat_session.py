"""One conversation's traffic: send, stream into the store, stop, regenerate, edit and resend. No widgets.

The Chat page draws what this holds. An answer streams from `/api/chat`
through `ApiClient` (Qt's network stack, never blocking the event loop);
every piece goes to the store the moment it arrives (see `chat_store` for
what that costs), and Stop aborts the HTTP request itself: the server
notices its client went away and cancels the generation in the runner,
which frees the slot for the next request.

One answer at a time for the whole app: a local server has few slots, and
a second answer would only queue behind the first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, Signal

from ui.chat_api import ChatChunk, ChatRequest, WireMessage
from ui.chat_store import DEFAULT_TITLE, ChatStore, Conversation, Message, MessageState, StoreError
from ui.client import ApiClient, Call
from ui.errors import ApiError, friendly

log = logging.getLogger("pollama.ui.chat")

TITLE_CHARS = 48


def title_from(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "") or "Image"
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def history(conversation: Conversation, messages: Sequence[Message]) -> tuple[WireMessage, ...]:
    """What the model sees: the chat's system prompt, then every message a person saw (partial answers too)."""
    out: list[WireMessage] = []
    if conversation.system.strip():
        out.append(WireMessage("system", conversation.system))
    for m in messages:
        if m.role == "assistant" and not (m.content or m.tool_calls):
            continue  # a failed or empty answer says nothing the model should build on
        out.append(WireMessage(m.role, m.content, thinking=m.thinking, images=m.images, tool_calls=m.tool_calls))
    return tuple(out)


class ChatSession(QObject):
    changed = Signal()  # messages added, removed or finished in the open conversation
    piece = Signal(int)  # the streaming message (id) grew
    busy_changed = Signal(bool)
    answer_finished = Signal(int, str)  # message id, final state value
    conversations_changed = Signal()  # titles, order, list membership
    problem = Signal(str)  # something a person should read (in words)

    def __init__(self, client: ApiClient, store: ChatStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.store = store
        self.conversation: Conversation | None = None
        self.live: Message | None = None  # the answer arriving now, as far as it got
        self._call: Call | None = None
        self._stopping = False
        self._started = 0.0
        self._first_piece: float | None = None
        self.loading_model = False

    # -- conversations ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._call is not None

    def open(self, conversation_id: int) -> Conversation | None:
        self.conversation = self.store.conversation(conversation_id)
        self.changed.emit()
        return self.conversation

    def new_conversation(self, model: str = "") -> Conversation:
        self.conversation = self.store.create_conversation(model=model)
        self.conversations_changed.emit()
        self.changed.emit()
        return self.conversation

    def close_conversation(self) -> None:
        self.conversation = None
        self.changed.emit()

    def update(self, **fields: Any) -> Conversation | None:
        """Change the open conversation's title, model, system prompt or options."""
        if self.conversation is None:
            return None
        self.conversation = self.store.update_conversation(self.conversation.id, **fields)
        if "title" in fields:
            self.conversations_changed.emit()
        return self.conversation

    def messages(self) -> list[Message]:
        """The open conversation as it stands, the arriving answer included."""
        if self.conversation is None:
            return []
        stored = self.store.messages(self.conversation.id)
        if self.live is not None and self.live.conversation_id == self.conversation.id:
            stored = [self.live if m.id == self.live.id else m for m in stored]
        return stored

    # -- sending ---------------------------------------------------------------------------
    def send(self, text: str, images: Sequence[bytes] = ()) -> bool:
        """Add the person's message and ask for an answer; False (and `problem`) when it cannot."""
        text = text.strip()
        if not text and not images:
            return False
        if not self._can_send():
            return False
        conv = self.conversation
        assert conv is not None
        try:
            self.store.add_message(conv.id, "user", text, images=list(images))
            if conv.title == DEFAULT_TITLE:
                self.update(title=title_from(text))
        except StoreError as exc:
            self.problem.emit(str(exc))
            return False
        self._ask()
        return True

    def regenerate(self) -> bool:
        """Drop the last answer and ask again with the same history."""
        if not self._can_send():
            return False
        assert self.conversation is not None
        messages = self.store.messages(self.conversation.id)
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        if last_user is None:
            return False
        if last_user + 1 < len(messages):
            self.store.delete_from(self.conversation.id, messages[last_user + 1].id)
        self._ask()
        return True

    def edit_and_resend(self, message_id: int, text: str, images: Sequence[bytes] | None = None) -> bool:
        """Replace one of the person's messages (and forget everything after it), then ask again."""
        if not self._can_send():
            return False
        assert self.conversation is not None
        old = self.store.message(message_id)
        if old is None or old.conversation_id != self.conversation.id or old.role != "user":
            return False
        if not text.strip() and not (images if images is not None else old.images):
            return False
        self.store.delete_from(self.conversation.id, message_id)
        self.store.add_message(
            self.conversation.id, "user", text.strip(), images=images if images is not None else old.images
        )
        self._ask()
        return True

    def _can_send(self) -> bool:
        if self.busy:
            self.problem.emit("An answer is still arriving. Wait for it, or press Stop.")
            return False
        if self.conversation is None:
            self.problem.emit("Open or start a chat first.")
            return False
        if not self.conversation.model:
            self.problem.emit("Pick a model first (Ctrl+K).")
            return False
        return True

    def _ask(self) -> None:
        conv = self.conversation
        assert conv is not None
        request = ChatRequest(conv.model, history(conv, self.store.messages(conv.id)), conv.options)
        answer = self.store.add_message(conv.id, "assistant", model=conv.model, state=MessageState.STREAMING)
        self.live = answer
        self._stopping = False
        self._started = time.monotonic()
        self._first_piece = None
        self._call = call = self.client.chat(request.body())
        call.received.connect(lambda obj, mid=answer.id: self._received(mid, obj))
        call.succeeded.connect(lambda last, mid=answer.id: self._ended(mid, last))
        call.failed.connect(lambda error, mid=answer.id: self._failed(mid, error))
        self.changed.emit()
        self.conversations_changed.emit()
        self.busy_changed.emit(True)

    def stop(self) -> bool:
        """Abort the request: the server cancels the generation when its client goes away."""
        if self._call is None:
            return False
        self._stopping = True
        self._call.abort()
        return True

    # -- the stream ------------------------------------------------------------------------
    def _received(self, message_id: int, obj: Any) -> None:
        live = self.live
        if live is None or live.id != message_id:
            return
        if self._first_piece is None:
            self._first_piece = time.monotonic() - self._started
        chunk = ChatChunk.from_json(obj, first_piece_s=self._first_piece)
        if chunk.has_piece:
            try:
                self.store.append_piece(message_id, chunk.content, chunk.thinking, chunk.tool_calls)
            except StoreError as exc:
                self.problem.emit(str(exc))
            self.live = replace(
                live,
                content=live.content + chunk.content,
                thinking=live.thinking + chunk.thinking,
                tool_calls=live.tool_calls + chunk.tool_calls,
            )
            self.piece.emit(message_id)
        if chunk.done:
            self._finish(
                message_id, MessageState.COMPLETE, stats=chunk.stats, truncated_messages=chunk.truncated_messages
            )

    def _ended(self, message_id: int, last: Any) -> None:
        if self.live is not None and self.live.id == message_id:
            # the stream closed without its final line: the server went away mid-answer
            self._finish(message_id, MessageState.FAILED, error="The server ended the answer early.")

    def _failed(self, message_id: int, error: ApiError) -> None:
        if self.live is None or self.live.id != message_id:
            return
        if self._stopping and error.network == "cancelled":
            self._finish(message_id, MessageState.STOPPED)
        else:
            self._finish(message_id, MessageState.FAILED, error=friendly(error))

    def _finish(self, message_id: int, state: MessageState, **extra: Any) -> None:
        self.live = None
        self._call = None
        try:
            done = self.store.finish_message(message_id, state, **extra)
        except StoreError as exc:
            self.problem.emit(str(exc))
            done = None
        log.info("answer %d: %s", message_id, state.value)
        self.busy_changed.emit(False)
        self.changed.emit()
        self.answer_finished.emit(message_id, state.value)
        if done is not None and done.error:
            self.problem.emit(done.error)

    def shutdown(self) -> None:
        """Quitting: stop the answer; what arrived is kept as a stopped answer."""
        self.stop()
