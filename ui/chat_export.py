"""A conversation as a file a person keeps: Markdown to read, JSON to feed back to a program.

The JSON keeps Ollama's message shape (`role`, `content`, `thinking`,
`images` in base64, `tool_calls`), so its `messages` can be posted to any
Ollama-compatible `/api/chat` as they are; the conversation's model, system
prompt and options ride along, plus each answer's stats.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from ui.chat_api import WireMessage
from ui.chat_store import Conversation, Message, MessageState

FORMAT = "pollama.chat.v1"


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_json(conversation: Conversation, messages: Sequence[Message]) -> str:
    opts = conversation.options
    out: dict[str, Any] = {
        "format": FORMAT,
        "title": conversation.title,
        "model": conversation.model,
        "system": conversation.system,
        "options": {
            **opts.wire_options(),
            **({"think": opts.think.wire()} if opts.think.wire() is not None else {}),
        },
        "created_at": _when(conversation.created_at),
        "messages": [],
    }
    for m in messages:
        item = WireMessage(m.role, m.content, m.thinking, m.images, m.tool_calls).wire()
        if m.role == "assistant":
            item["model"] = m.model
            if m.state is not MessageState.COMPLETE:
                item["state"] = m.state.value
            if m.error:
                item["error"] = m.error
            if m.stats is not None:
                item["stats"] = m.stats.wire()
            if m.truncated_messages:
                item["truncated_messages"] = m.truncated_messages
        item["created_at"] = _when(m.created_at)
        out["messages"].append(item)
    return json.dumps(out, ensure_ascii=False, indent=2) + "\n"


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside the text."""
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def to_markdown(conversation: Conversation, messages: Sequence[Message]) -> str:
    lines = [f"# {conversation.title}", ""]
    meta = [f"Model: `{conversation.model}`" if conversation.model else "", f"Started {_when(conversation.created_at)}"]
    lines += [" · ".join(m for m in meta if m), ""]
    if conversation.system:
        lines += ["**System prompt:**", "", *("> " + line for line in conversation.system.splitlines()), ""]
    for m in messages:
        who = "You" if m.role == "user" else (m.model or "Assistant")
        lines += [f"## {who}", ""]
        if m.truncated_messages:
            lines += [f"> ⚠ {m.truncated_messages} earlier message(s) were left out to fit the context.", ""]
        if m.thinking:
            lines += ["<details><summary>Thinking</summary>", "", m.thinking.strip(), "", "</details>", ""]
        for call in m.tool_calls:
            fence = _fence(call.arguments)
            lines += [f"Tool call: `{call.name}`", "", f"{fence}json", call.arguments, fence, ""]
        if m.images:
            lines += [f"*({len(m.images)} image{'s' if len(m.images) != 1 else ''} attached)*", ""]
        if m.content:
            lines += [m.content.rstrip(), ""]
        if m.state in (MessageState.STOPPED, MessageState.INTERRUPTED, MessageState.FAILED):
            note = {"stopped": "Stopped.", "interrupted": "Interrupted.", "failed": f"Failed: {m.error}"}[m.state.value]
            lines += [f"*{note}*", ""]
        if m.stats is not None:
            lines += [f"*{m.stats.line()}*", ""]
    return "\n".join(lines).rstrip() + "\n"
