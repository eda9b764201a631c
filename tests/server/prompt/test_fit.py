"""Context fitting: drop the oldest messages, keep system and the last one."""

from __future__ import annotations

from functools import partial
from typing import Any

from server.prompt import Message, fit_messages, render_chat

TEMPLATE = "{{ range .Messages }}{{ .Role }}:{{ .Content }}\n{{ end }}"
render = partial(render_chat, TEMPLATE)


def words(text: str) -> int:
    return len(text.split())


def conversation() -> list[dict]:
    return [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "one two three"},
        {"role": "assistant", "content": "four five"},
        {"role": "user", "content": "six seven"},
        {"role": "assistant", "content": "eight"},
        {"role": "user", "content": "nine ten"},
    ]


def test_everything_fits() -> None:
    result = fit_messages(conversation(), render, words, 100)
    assert result.dropped == 0 and len(result.messages) == 6
    assert result.prompt == render(conversation())


def test_drops_oldest_keeps_system() -> None:
    result = fit_messages(conversation(), render, words, 8)
    assert result.dropped == 2
    assert [m.content for m in result.messages] == ["be nice", "six seven", "eight", "nine ten"]
    assert result.token_count is not None and result.token_count <= 8


def test_last_message_always_kept() -> None:
    result = fit_messages(conversation(), render, words, 1)
    assert [m.content for m in result.messages] == ["be nice", "nine ten"]
    assert result.dropped == 4


def test_tool_results_stay_with_their_call() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "a b c d e f"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "r1"},
        {"role": "tool", "content": "r2"},
        {"role": "user", "content": "ok"},
    ]
    result = fit_messages(messages, render, words, 4)
    assert [m.role for m in result.messages] == ["assistant", "tool", "tool", "user"]
    assert result.dropped == 1


def test_images_cost_tokens_and_truncate_false() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "look", "images": [b"x"]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "and now?"},
    ]
    assert fit_messages(messages, render, words, 100, image_tokens=768).dropped == 1
    assert fit_messages(messages, render, words, 100, image_tokens=None).dropped == 0
    kept = fit_messages(messages, render, words, 1, truncate=False)
    assert kept.dropped == 0 and kept.images == [b"x"]
    assert isinstance(kept.messages[0], Message)
