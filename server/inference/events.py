"""What a generation yields: typed events from the runner to every API.

`Inference.generate` and `Inference.chat` yield `Piece`s (text, thinking, tool
calls and logprobs as the output parsers split them), then one `Final` (the
parsers' tail, why generation ended, the counts and durations, what was cut to
fit the context). A render-only debug request yields one `Rendered`, a load or
unload request one `Final` with `done_reason` "load"/"unload" and no stats.
`Inference.embed` returns `Embeddings`.

The API layers read these and nothing else: the native blueprint
(`server/api/inference.py`) is the only place that turns them into Ollama's
JSON (Ollama's `api/types.go` `GenerateResponse`, `ChatResponse`, `Metrics`),
and the OpenAI and Anthropic translators build their own shapes from the same
fields, so a field a translator needs is one attribute here, not a key it hopes
the native layer wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from server.jsontypes import JSONObject
from server.prompt import ToolCall

#: One token's logprob object as the runner computes it (`server/runner/sampling.py`
#: `logprob_entry`: token, logprob, bytes, top_logprobs), passed to clients unchanged.
Logprob = JSONObject


@dataclass(frozen=True, slots=True)
class Piece:
    """New output of a running generation; any part may be empty, not all of them at once
    (a piece with only logprobs is one whose tokens the parsers are still holding back)."""

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[Logprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Stats:
    """Ollama's `api.Metrics`, durations in nanoseconds; a zero is a metric Ollama omits.

    `prompt_eval_count` is the prompt's size, cached or not, as Ollama documents it.
    `draft_count`/`draft_accepted_count` are pollama's: how speculative decoding went
    (zero when nothing was drafted)."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    draft_count: int = 0
    draft_accepted_count: int = 0


@dataclass(frozen=True, slots=True)
class Final:
    """The last event of a generation.

    `tail` is what the parsers still held when the runner finished (for a whole answer
    folded by `collect`, the whole answer). `done_reason` is "stop", "length", or "load" /
    "unload" for a request that only loads or unloads the model (then `stats` is all zero).
    `truncated_messages` (old messages dropped to fit the context) and `truncated_tokens`
    (prompt tokens the runner cut) are pollama's; `context` is generate's token context
    (None: not reported); `stop_sequence` is the request's own stop string that ended the
    reply, set only when the caller asked for it (`report_stop`)."""

    done_reason: str
    tail: Piece = Piece()
    stats: Stats = Stats()
    truncated_messages: int = 0
    truncated_tokens: int = 0
    context: tuple[int, ...] | None = None
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """A render-only debug request's answer: the prompt the template made, and its images."""

    prompt: str
    image_count: int


Event = Piece | Final | Rendered


@dataclass(frozen=True, slots=True)
class Embeddings:
    """`Inference.embed`'s answer. No inputs: no vectors and no stats (`timed` false), as
    Ollama answers an empty `input` without touching the runner's counters."""

    vectors: list[list[float]] = field(default_factory=list)
    prompt_eval_count: int = 0
    total_duration: int = 0
    load_duration: int = 0
    timed: bool = False


@dataclass(frozen=True, slots=True)
class TokenPiece:
    """One token of `/api/tokenize` with `with_pieces`: its id and its text."""

    id: int
    piece: str


def output(event: Event) -> tuple[Piece, Final | None]:
    """What an event shows (a piece, or a final's tail) and the final it is, if it is one:
    the two questions every translator asks of each event. A `Rendered` has no output; the
    routes answer a render-only request natively, so one here is a caller's bug."""
    if isinstance(event, Final):
        return event.tail, event
    if isinstance(event, Piece):
        return event, None
    raise TypeError("a render-only answer has no output to translate")


async def collect(events: AsyncIterator[Event]) -> Final:
    """A whole answer: every piece joined into the final's `tail` (text, thinking, tool calls
    and logprobs in order), the rest of the final as it came. `events` is closed however
    this ends."""
    content: list[str] = []
    thinking: list[str] = []
    calls: list[ToolCall] = []
    logprobs: list[Logprob] = []
    try:
        async for event in events:
            piece, final = output(event)
            content.append(piece.content)
            thinking.append(piece.thinking)
            calls.extend(piece.tool_calls)
            logprobs.extend(piece.logprobs)
            if final is not None:
                whole = Piece("".join(content), "".join(thinking), tuple(calls), tuple(logprobs))
                return replace(final, tail=whole)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    raise RuntimeError("a generation ended without its final event")
