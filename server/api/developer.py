"""The Developer view's data: `GET /api/pollama/requests` and `GET /api/pollama/logs`.

`record_requests` hooks every request: as it starts it gets a fresh
`server.usage.Usage` (the inference service notes its model and tokens there),
and as it ends it goes into the app's `RequestRing` (`Services.requests`). A
streamed answer ends when its last byte is sent, not when the handler returns,
so its body is wrapped and it is recorded then; the wrapper passes every chunk
through untouched and costs one generator step per chunk, nothing else. A `LogRing` (`Services.logs`) is
attached to the root logger while the app serves.

The Developer view's own polling is left out of both (it would fill them with
itself). Nothing of a request's body or headers is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from quart import Blueprint, Quart, Response, g, request
from quart.wrappers.response import IterableBody

from server import usage
from server.activity import LEVELS, LogRing, RequestRing
from server.api.context import services
from server.api.http import json_response
from server.errors import BadRequest

bp = Blueprint("developer", __name__)

REQUESTS_PATH = "/api/pollama/requests"
LOGS_PATH = "/api/pollama/logs"
UNRECORDED = frozenset({REQUESTS_PATH, LOGS_PATH})
#: `server/app.py` logs every request to this logger as "METHOD PATH STATUS …".
REQUEST_LOGGER = "pollama.request"


def is_own_poll(record: logging.LogRecord) -> bool:
    """The request log's line for a poll of these endpoints (its args are method, path, …)."""
    args = record.args
    return record.name == REQUEST_LOGGER and isinstance(args, tuple) and len(args) > 1 and args[1] in UNRECORDED


def new_log_ring() -> LogRing:
    """The ring the app keeps log records in (`Services.logs`), without this view's own polls."""
    return LogRing(skip=is_own_poll)


def record_requests(app: Quart, requests: RequestRing) -> None:
    """Record every request into `requests` as it ends; to be installed before any hook that may refuse.

    The routes are `bp`, registered by `create_app`; the log ring is attached to the root
    logger by the app's serving lifetime.
    """

    @app.before_request
    async def begin() -> None:
        g.pollama_usage = usage.begin()
        g.pollama_started = (time.time(), time.perf_counter())

    @app.after_request
    async def record(response: Response) -> Response:
        if request.path in UNRECORDED:
            return response
        state = g.get("pollama_usage") or usage.Usage()
        started_wall, started = g.get("pollama_started") or (time.time(), time.perf_counter())
        method, route, status = request.method, request.path, response.status_code

        def done() -> None:
            requests.add(
                started=started_wall,
                method=method,
                route=route,
                model=state.model,
                status=status,
                prompt_tokens=state.prompt_tokens,
                eval_tokens=state.eval_tokens,
                duration_ms=(time.perf_counter() - started) * 1000,
            )

        body = response.response
        if isinstance(body, IterableBody):
            response.response = IterableBody(_then(body, done))
        else:
            done()
        return response


async def _then(body: IterableBody, done: Callable[[], None]) -> AsyncIterator[Any]:
    """`body`'s chunks as they come, then `done()` once it ended (finished, failed or cancelled)."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        try:
            await body.__aexit__(None, None, None)  # type: ignore[arg-type]
        finally:
            done()


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise BadRequest(f"{name} must be 0 or more, got {value}")
    return value


@bp.route(REQUESTS_PATH, methods=["GET"])
async def recent_requests() -> Response:
    """The last requests, oldest first; `since` (a `seq`) gives only those after it."""
    entries, last = services().requests.since(_int_arg("since", 0))
    return json_response({"requests": [e.to_json() for e in entries], "last": last})


@bp.route(LOGS_PATH, methods=["GET"])
async def recent_logs() -> Response:
    """The last log records at `level` or above (debug, info, warning, error), oldest first, after `since`."""
    level_name = (request.args.get("level") or "debug").lower()
    if level_name not in LEVELS:
        raise BadRequest(f"level must be one of {', '.join(LEVELS)}, got {level_name!r}")
    entries, last = services().logs.since(_int_arg("since", 0), LEVELS[level_name])
    return json_response({"logs": [e.to_json() for e in entries], "last": last})
