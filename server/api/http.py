"""Request parsing and response shapes shared by every native handler.

Errors are raised as `server.errors` classes anywhere below a handler and
turned into `{"error": "..."}` here, once. A stream that fails before its
first line becomes an ordinary error response with the right status; one
that fails later ends with an `{"error": ...}` line, as Ollama does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from quart import Response, current_app, request

from server import strictjson
from server.errors import BadRequest, PollamaError
from server.jsontypes import JSONObject, typed_field

log = logging.getLogger(__name__)

JSON_MIMETYPE = "application/json; charset=utf-8"
NDJSON_MIMETYPE = "application/x-ndjson"


class PayloadTooLarge(PollamaError):
    status = 413


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(obj), status=status, content_type=JSON_MIMETYPE, headers=dict(headers or {}))


def error_response(exc: PollamaError) -> Response:
    return json_response({"error": exc.message}, exc.status)


def empty_ok() -> Response:
    return Response("", status=200, content_type=JSON_MIMETYPE)


async def read_body(limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body too large: {length} bytes (limit {limit})")
    chunks = bytearray()
    async for chunk in request.body:
        chunks += chunk
        if len(chunks) > limit:
            raise PayloadTooLarge(f"request body too large (limit {limit} bytes)")
    return bytes(chunks)


async def read_json(*, allow_empty: bool = False) -> JSONObject:
    """The request's JSON object. Empty → 400 `missing request body`; bad JSON → 400 with why."""
    limit = current_app.config["POLLAMA_MAX_JSON_BODY"]
    return parse_json_object(await read_body(limit), allow_empty=allow_empty)


def parse_json_object(raw: bytes, *, allow_empty: bool = False) -> JSONObject:
    """`raw` as a JSON object, or the 400 `read_json` answers (also for decoded bodies).

    Every route's JSON comes through here, read by `server.strictjson` as Go reads it
    (no NaN or Infinity, numbers within a float64) and at most `MAX_DEPTH` levels deep,
    so nothing after the parse ever walks a value it cannot hold on its stack."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest("missing request body")
    try:
        data = strictjson.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8") from None
    except strictjson.JSONError as exc:
        raise BadRequest(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


#: A typed optional field of a request body (400 naming the field on a wrong type).
field = typed_field


async def stream_or_last(events: AsyncIterator[JSONObject], *, stream: bool) -> Response:
    """Progress endpoints (create, pull, push): NDJSON, or only the last object."""
    if not stream:
        last: JSONObject = {}
        try:
            async for event in events:
                last = event
        except PollamaError as exc:
            return error_response(exc)
        return json_response(last)
    return await ndjson(events)


async def ndjson(events: AsyncIterator[JSONObject]) -> Response:
    """Stream events as NDJSON; an error before the first event is an ordinary error response."""
    try:
        first = await events.__anext__()
    except StopAsyncIteration:
        first = None
    except PollamaError as exc:
        await _close(events)
        return error_response(exc)

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield (dumps(first) + "\n").encode()
            async for event in events:
                yield (dumps(event) + "\n").encode()
        except PollamaError as exc:
            yield (dumps({"error": exc.message}) + "\n").encode()
        except Exception as exc:  # never leave a client hanging on a half stream
            log.exception("stream failed")
            yield (dumps({"error": f"internal error: {exc}"}) + "\n").encode()
        finally:
            await _close(events)

    response = Response(body(), status=200, content_type=NDJSON_MIMETYPE)
    response.timeout = None
    return response


async def _close(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("error closing stream", exc_info=True)
