"""What one request used (its model, its prompt and generated tokens), noted where it is known.

The developer view lists the last requests with their model and token
counts, as LM Studio's developer tab does. Those are known deep inside the
inference service, not in the HTTP layer that records the request, and the
request's body is never kept. So the request log (`server/api/developer.py`)
puts a fresh `Usage` in a context variable as a request starts, and the
inference service notes into it. The object is shared, not the variable: a
streamed body is sent from a task whose context is a copy (Quart's
`asgi.py` `handle_request` wraps the send in `asyncio.wait_for`), and what is
noted there still lands in the same `Usage`. Outside a request (tests, the
CLI) there is none and noting does nothing.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Usage:
    """Mutable on purpose: filled in while the request runs, read once when it ends."""

    model: str = ""
    prompt_tokens: int | None = None
    eval_tokens: int | None = None


current: ContextVar[Usage | None] = ContextVar("pollama_usage", default=None)


def begin() -> Usage:
    """A new request starts: its own `Usage` (for this task and the tasks it starts)."""
    usage = Usage()
    current.set(usage)
    return usage


def note_model(model: str) -> None:
    usage = current.get()
    if usage is not None:
        usage.model = model


def note_tokens(prompt_tokens: int, eval_tokens: int | None = None) -> None:
    """Add a generation's counts (a request that runs several, as `/v1/completions` with `n`, adds up)."""
    usage = current.get()
    if usage is None:
        return
    usage.prompt_tokens = (usage.prompt_tokens or 0) + int(prompt_tokens)
    if eval_tokens is not None:
        usage.eval_tokens = (usage.eval_tokens or 0) + int(eval_tokens)
