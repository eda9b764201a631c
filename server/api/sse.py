"""Server-sent events: the framing the OpenAI and Anthropic APIs stream in.

A frame is `data: <compact json>\\n\\n`, optionally preceded by an
`event: <name>\\n` line (Anthropic, OpenAI Responses). OpenAI chat and
completion streams end with `data: [DONE]\\n\\n`. No library is used: the
framing is three lines of code, and the SSE packages on PyPI target Starlette.

The stream helpers here mirror `server.api.http.ndjson`: the service's first
event is awaited before any byte is sent, so a failure that happens before
generation starts (unknown model, bad option, no capability) is answered as
an ordinary error response with its real status; a failure after that can
only be reported in-band, as a final error frame in the API's own shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

from quart import Response

from server.api.http import dumps
from server.errors import PollamaError

log = logging.getLogger(__name__)

SSE_MIMETYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"

T = TypeVar("T")


def frame(data: Any, event: str | None = None) -> bytes:
    """One SSE frame; `data` is JSON-encoded compactly (never contains a newline)."""
    text = dumps(data)
    if event is None:
        return b"data: " + text.encode() + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + text.encode() + b"\n\n"


async def aclose(events: Any) -> None:
    """Close an async generator, swallowing what it raises while closing.

    Closing the service's generator is what cancels the runner request and
    frees its slot, so it must happen even when the client went away.
    """
    close = getattr(events, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        log.debug("error closing stream", exc_info=True)


async def first_event(events: AsyncIterator[T]) -> T | None:
    """Await the first event now, before any byte of the response is sent.

    Raises what the first step raises (after closing `events`), so the caller
    can still answer with a plain error response and the right status. None
    means the stream was empty (and is closed).
    """
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        await aclose(events)
        return None
    except BaseException:
        await aclose(events)
        raise


def sse_stream(
    first: T | None,
    events: AsyncIterator[T],
    convert: Callable[[T], bytes],
    error_frame: Callable[[PollamaError], bytes],
    *,
    head: bytes = b"",
    tail: bytes = b"",
) -> Response:
    """Stream `head`, `convert(event)` for `first` and every later event, then `tail`.

    One generator does it all, as `ndjson` does for the native routes: the
    per-token path is the same depth on both, so SSE costs only its own
    framing. A failure mid-stream ends the stream with `error_frame(exc)`
    (no `tail`); unexpected exceptions are logged and reported the same way,
    so a client never waits on a stream that silently stopped. `events` is
    closed however the stream ends, the client going away included: that is
    what cancels the runner request and frees its slot.
    """

    async def body() -> AsyncIterator[bytes]:
        try:
            if head:
                yield head
            if first is not None:
                data = convert(first)
                if data:
                    yield data
                async for event in events:
                    data = convert(event)
                    if data:  # an empty chunk would read as the end of a chunked body
                        yield data
            if tail:
                yield tail
        except PollamaError as exc:
            yield error_frame(exc)
        except Exception as exc:
            log.exception("event stream failed")
            yield error_frame(PollamaError(f"internal error: {exc}"))
        finally:
            await aclose(events)

    response = Response(body(), status=200, content_type=SSE_MIMETYPE, headers={"Cache-Control": "no-cache"})
    response.timeout = None
    return response


NamedEvents = Iterable[tuple[str, Any]]


def named_event_stream(
    first: T | None,
    events: AsyncIterator[T],
    *,
    start: Callable[[], NamedEvents],
    feed: Callable[[T], NamedEvents],
    fail: Callable[[PollamaError], tuple[str, Any]],
) -> Response:
    """An `event: <type>` stream (Anthropic Messages, OpenAI Responses) from a translator.

    The translator says which named events open the stream, which each of the
    service's events becomes, and which event reports a failure; this does the framing.
    """

    def convert(event: T) -> bytes:
        return b"".join(frame(data, kind) for kind, data in feed(event))

    def error_frame(exc: PollamaError) -> bytes:
        kind, data = fail(exc)
        return frame(data, kind)

    head = b"".join(frame(data, kind) for kind, data in start())
    return sse_stream(first, events, convert, error_frame, head=head)
