"""`/api/pull` and `/api/push`: parse, hand to the registry service, stream its progress.

The registry service is `Services.registry`, made and started by `server/app.py`.
"""

from __future__ import annotations

from quart import Blueprint, Response

from server.api.context import services
from server.api.http import error_response, field, read_json, stream_or_last
from server.errors import BadRequest, InvalidModelName, PollamaError
from server.store.names import Name

bp = Blueprint("transfer", __name__)


@bp.errorhandler(PollamaError)
async def _pollama_error(exc: PollamaError) -> Response:
    return error_response(exc)


def _request_name(body: dict[str, object]) -> Name:
    raw = body.get("model") or body.get("name")
    if raw is not None and not isinstance(raw, str):
        raise BadRequest("invalid value for field 'model': expected string")
    name = Name.parse_lenient(raw or "")
    if not raw or not name.is_valid:
        raise InvalidModelName()
    return name


@bp.route("/api/pull", methods=["POST"])
async def pull() -> Response:
    body = await read_json()
    name = _request_name(body)
    insecure = bool(field(body, "insecure", bool, False))
    stream = bool(field(body, "stream", bool, True))
    return await stream_or_last(services().registry.pull(name, insecure=insecure), stream=stream)


@bp.route("/api/push", methods=["POST"])
async def push() -> Response:
    body = await read_json()
    name = _request_name(body)
    insecure = bool(field(body, "insecure", bool, False))
    stream = bool(field(body, "stream", bool, True))
    return await stream_or_last(services().registry.push(name, insecure=insecure), stream=stream)
