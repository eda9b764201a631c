"""Prompts that hold images, as position lists the slot bookkeeping already understands.

An image occupies a run of KV positions filled by the projector's embeddings rather than by
tokens. In a slot's `tokens` mirror those positions hold one *sentinel*: a negative number
derived from the image's content hash, the same for every position of that image. Prefix
reuse then needs no special case (the same image at the same place matches; a different
image differs at its first position) as long as nothing ever keeps or cuts *part* of an
image, which is what the helpers here guarantee. No llama.cpp in this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.runner.slots import PromptTooLong

#: Ollama's image marker in a rendered prompt: `[img-<n>]`, n indexing the request's images.
IMAGE_MARKER = re.compile(r"\[img-(\d+)\]")


def sentinel(image_id: str) -> int:
    """The negative stand-in for every position of one image (stable for equal content)."""
    digest = int(image_id[:15], 16) if image_id else 0
    return -1 - (digest & 0x3FFF_FFFF)


def is_sentinel(token: int) -> bool:
    return token < 0


@dataclass(frozen=True)
class ImageSpan:
    """One image of a prompt: where its embeddings start, how many positions they take, and
    the native chunk that produces them (owned by the prompt's `VisionPrompt`)."""

    start: int
    length: int
    chunk: Any = None

    @property
    def end(self) -> int:
        return self.start + self.length


def split_markers(prompt: str, n_images: int) -> tuple[list[str], list[int]]:
    """Cut a rendered prompt at its `[img-n]` markers: the text pieces around them and the
    image index of each marker, in order. An index with no image is the client's mistake."""
    texts: list[str] = []
    order: list[int] = []
    last = 0
    for match in IMAGE_MARKER.finditer(prompt):
        index = int(match.group(1))
        if index >= n_images:
            raise ValueError(f"invalid image index: {index}")
        texts.append(prompt[last : match.start()])
        order.append(index)
        last = match.end()
    texts.append(prompt[last:])
    return texts, order


def safe_prefix(keep: int, spans: Sequence[ImageSpan]) -> int:
    """`keep` moved back to the start of any image it would cut: an image's embeddings are
    produced all at once, so a cache may hold all of an image or none of it."""
    for span in spans:
        if span.start < keep < span.end:
            return span.start
    return keep


def truncate_with_images(
    tokens: list[int], spans: list[ImageSpan], n_ctx: int, num_keep: int, truncate: bool
) -> tuple[list[int], list[ImageSpan]]:
    """Ollama's truncation of a prompt longer than the slot's context (keep num_keep positions
    and the tail; refused when truncation is off), without splitting an image: the kept head
    stops before an image it would cut, the dropped middle grows to swallow an image it would
    cut. Spans after the cut move left with their positions."""
    if len(tokens) <= n_ctx:
        return tokens, spans
    if not truncate:
        raise PromptTooLong("the input length exceeds the context length")
    head = safe_prefix(num_keep, spans)
    tail = head + (len(tokens) - n_ctx)
    for span in spans:
        if span.start < tail < span.end:
            tail = span.end
    if len(tokens) - tail + head <= 0:
        raise PromptTooLong("the input length exceeds the context length")
    removed = tail - head
    kept = [s for s in spans if s.end <= head] + [
        ImageSpan(s.start - removed, s.length, s.chunk) for s in spans if s.start >= tail
    ]
    return tokens[:head] + tokens[tail:], kept
