"""Fitting a conversation into the context window (Ollama's `server/prompt.go` `chatPrompt`).

Ollama's chatPrompt: try the whole conversation, then drop messages from the
front one at a time until the rendered prompt's token count (plus a fixed
cost per image when the model has a projector) fits `num_ctx`. System
messages from the dropped part are kept, the last message always is, and a
tool result is never separated from the assistant turn that called the tool
(the cut moves back to that assistant message). The caller learns how many
messages were dropped so a response can say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.prompt.types import Message, to_messages

IMAGE_TOKENS = 768


@dataclass(frozen=True, slots=True)
class FitResult:
    """The prompt that fits, what it was rendered from, and what was left out."""

    prompt: str
    messages: list[Message]
    dropped: int
    token_count: int | None = None

    @property
    def images(self) -> list[bytes | str]:
        """The images of the kept messages, in `[img-n]` order."""
        return [image for message in self.messages for image in message.images]


def _tool_block_start(msgs: Sequence[Message], idx: int) -> int:
    if idx <= 0 or idx >= len(msgs) or msgs[idx].role != "tool":
        return idx
    start = idx
    while start > 0 and msgs[start - 1].role == "tool":
        start -= 1
    assistant = start - 1
    if assistant >= 0 and msgs[assistant].role == "assistant" and msgs[assistant].tool_calls:
        return assistant
    return idx


def fit_messages(
    messages: Iterable[Message | Mapping[str, Any]],
    render: Callable[[list[Message]], str],
    count_tokens: Callable[[str], int],
    num_ctx: int,
    *,
    image_tokens: int | None = IMAGE_TOKENS,
    truncate: bool = True,
) -> FitResult:
    """Drop the oldest messages until `render(kept)` fits in `num_ctx` tokens.

    `render` turns a message list into prompt text (e.g. a partial of
    `render_chat`); `count_tokens` is the model's tokenizer. `image_tokens`
    is the cost of one image, or None when the model has no projector
    (images then cost nothing, as in Ollama). With `truncate=False` nothing
    is dropped and nothing is counted.
    """
    msgs = to_messages(messages)
    if not truncate or not msgs:
        return FitResult(render(msgs), msgs, 0)
    last = len(msgs) - 1
    for i in range(len(msgs)):
        start = _tool_block_start(msgs, i)
        system = [m for m in msgs[:start] if m.role == "system"]
        kept = system + msgs[start:]
        prompt = render(kept)
        count = count_tokens(prompt)
        if image_tokens:
            count += image_tokens * sum(len(m.images) for m in msgs[start:])
        if count <= num_ctx or i == last:
            return FitResult(prompt, kept, start - len(system), count)
    raise AssertionError("unreachable")  # pragma: no cover
