"""Anthropic-compatible routes: POST /v1/messages (Ollama's `middleware/anthropic.go` `AnthropicMessagesMiddleware`) and /v1/messages/count_tokens.

Translates to a native chat (thinking is dropped silently for models that
cannot think, as Ollama's Anthropic layer does, hence `strict_think=False`),
and builds from the service's events a `message` or the event stream
message_start → content_block_start/delta/stop… → message_delta → message_stop.
Errors use Anthropic's envelope, so the SDK raises its typed exceptions.
`count_tokens` (which Anthropic's SDK calls as `messages.count_tokens`; Ollama
has the types but no route) counts the prompt the messages route would render.
"""

from __future__ import annotations

import logging

from quart import Blueprint, Response
from werkzeug.exceptions import HTTPException

from server.api.compat import anthropic as an
from server.api.compat.common import truncation_headers
from server.api.context import services
from server.api.http import json_response, read_json
from server.api.inference import fold
from server.api.sse import first_event, named_event_stream
from server.errors import PollamaError
from server.inference.events import collect

log = logging.getLogger(__name__)

bp = Blueprint("anthropic", __name__)


def _error(status: int, message: str) -> Response:
    body = an.error_body(status, message)
    return json_response(body, status, headers={"request-id": body["request_id"]})


@bp.errorhandler(PollamaError)
async def _pollama_error(exc: PollamaError) -> Response:
    return _error(exc.status, exc.message)


@bp.errorhandler(Exception)
async def _unexpected(exc: Exception) -> Response | HTTPException:
    if isinstance(exc, HTTPException):
        return exc
    log.exception("anthropic handler failed")
    return _error(500, f"internal error: {exc}")


@bp.route("/v1/messages", methods=["POST"])
async def messages() -> Response:
    call = an.messages_request(await read_json())
    req = call.request
    events = services().inference.chat(req, strict_think=False, report_stop=True)
    if req.debug_render_only:
        return json_response(await fold(events, "message", req.model))
    if not req.stream:
        final = await collect(events)
        return json_response(
            an.message_response(final, id=an.message_id(), model=req.model), headers=truncation_headers(final)
        )
    first = await first_event(events)
    stream = an.MessagesStream(id=an.message_id(), model=req.model, estimated_input_tokens=call.estimated_input_tokens)
    return named_event_stream(first, events, start=stream.start, feed=stream.feed, fail=stream.error)


@bp.route("/v1/messages/count_tokens", methods=["POST"])
async def count_tokens() -> Response:
    call = an.messages_request(await read_json(), counting=True)
    count = await services().inference.count_chat(call.request, strict_think=False)
    return json_response({"input_tokens": count.tokens})
