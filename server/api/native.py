"""Ollama's native API: model management routes.

Handlers parse, call a service, format. Generation routes live in
`server/api/inference.py` on the same blueprint.
"""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response, request

from server import OLLAMA_API_VERSION
from server.api.context import services
from server.api.http import empty_ok, error_response, field, json_response, read_json, stream_or_last
from server.errors import BadRequest, NotFound, PollamaError
from server.jsontypes import JSONObject
from server.options import coerce_options
from server.store.blobs import parse_digest
from server.store.create import create_model, parse_create_request
from server.store.names import Name
from server.store.show import show as show_model
from server.store.show import tag_entry

bp = Blueprint("native", __name__)


@bp.errorhandler(PollamaError)
async def _pollama_error(exc: PollamaError) -> Response:
    return error_response(exc)


@bp.route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    return Response("Ollama is running", content_type="text/plain; charset=utf-8")


@bp.route("/api/version", methods=["GET", "HEAD"])
async def version() -> Response:
    return json_response({"version": OLLAMA_API_VERSION})


@bp.route("/api/status", methods=["GET"])
async def status() -> Response:
    """Ollama's cloud status, which its apps read to offer cloud models or not.

    pollama runs models locally only (it has no `:cloud` passthrough), so
    cloud is always disabled; `source` says what disabled it as Ollama
    does, `env` where `OLLAMA_NO_CLOUD` is set.
    """
    source = "env" if services().config.no_cloud else "none"
    return json_response({"cloud": {"disabled": True, "source": source}})


@bp.route("/api/tags", methods=["GET", "HEAD"])
async def tags() -> Response:
    store = services().store
    models = await asyncio.to_thread(lambda: [tag_entry(m) for m in store.list()])
    return json_response({"models": models})


def model_field(body: JSONObject) -> str:
    value = body.get("model") or body.get("name")
    if value is not None and not isinstance(value, str):
        raise BadRequest("invalid value for field 'model': expected string")
    return value or ""


@bp.route("/api/show", methods=["POST"])
async def show() -> Response:
    body = await read_json()
    raw = model_field(body)
    if not raw:
        raise BadRequest("model is required")
    name = Name.parse(raw)
    verbose = bool(field(body, "verbose", bool, False))
    system = field(body, "system", str)
    options = coerce_options(body.get("options"), BadRequest)
    store = services().store
    model = store.require(name, f"model '{raw}' not found")
    result = await asyncio.to_thread(show_model, model, verbose=verbose, system=system, options=options)
    return json_response(result)


@bp.route("/api/create", methods=["POST"])
async def create() -> Response:
    body = await read_json()
    req = parse_create_request(body)
    svc = services()
    stream = field(body, "stream", bool, True)
    return await stream_or_last(create_model(svc.store, req, pull=svc.registry.pull_progress), stream=stream)


@bp.route("/api/blobs/<digest>", methods=["HEAD"])
async def blob_exists(digest: str) -> Response:
    canonical = parse_digest(digest)
    if not services().store.blobs.exists(canonical):
        raise NotFound(f'blob "{digest}" not found')
    return Response("", status=200)


@bp.route("/api/blobs/<digest>", methods=["POST"])
async def blob_upload(digest: str) -> Response:
    canonical = parse_digest(digest)
    blobs = services().store.blobs
    if blobs.exists(canonical):
        # Don't read gigabytes we already have: answer now and close the connection,
        # so the unread body cannot be mistaken for the client's next request.
        return Response("", status=200, content_type="text/plain; charset=utf-8", headers={"Connection": "close"})
    await blobs.write_stream(canonical, request.body, length=request.content_length)
    return Response("", status=201, content_type="text/plain; charset=utf-8")


@bp.route("/api/copy", methods=["POST"])
async def copy() -> Response:
    body = await read_json()
    source_raw = field(body, "source", str, "")
    dest_raw = field(body, "destination", str, "")
    source = Name.parse_lenient(source_raw)
    if not source_raw or not source.is_valid:
        raise BadRequest(f'source "{source_raw}" is invalid')
    dest = Name.parse_lenient(dest_raw)
    if not dest_raw or not dest.is_valid:
        raise BadRequest(f'destination "{dest_raw}" is invalid')
    store = services().store
    store.require(source, f'model "{source_raw}" not found')
    if not store.resolve(source).same_as(store.resolve(dest)):  # onto itself (any casing): nothing to write
        await asyncio.to_thread(store.copy, source, dest)
    return empty_ok()


@bp.route("/api/delete", methods=["DELETE"])
async def delete() -> Response:
    body = await read_json()
    raw = model_field(body)
    name = Name.parse_lenient(raw)
    if not raw or not name.is_valid:
        raise BadRequest(f'name "{raw}" is invalid')
    svc = services()
    model = svc.store.require(name, f"model '{raw}' not found")
    await svc.scheduler.unload_model(model)
    await asyncio.to_thread(svc.store.delete, model.name)
    return empty_ok()


@bp.route("/api/ps", methods=["GET"])
async def ps() -> Response:
    return json_response({"models": services().scheduler.ps()})
