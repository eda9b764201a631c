"""OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/embeddings,
/v1/models, /v1/models/{model}, /v1/responses (Ollama's `middleware/openai.go`), and /v1/rerank
(not OpenAI's: the Jina/Cohere shape that llama-server serves).

Each handler translates the body into a native request (`server.api.compat`),
calls the same inference service the native routes call, and builds its answer
from the service's events: collected for `stream: false`, converted event by
event into SSE frames otherwise (a render-only debug request is answered in
the native shape, `server.api.inference.fold`). Errors keep the native status and take OpenAI's shape, so the
official SDKs raise their typed exceptions (NotFoundError, BadRequestError…).
A prompt cut to fit the context is never silent: a whole answer carries
`X-Pollama-Truncated-Messages` / `X-Pollama-Truncated-Tokens`, a stream the
same counts on its finishing chunk.
"""

from __future__ import annotations

import asyncio
import logging

from quart import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from server.api.compat import openai as oa
from server.api.compat.common import truncation_headers
from server.api.compat.responses import ResponseBuilder, ResponsesStream, responses_request
from server.api.context import services
from server.api.http import json_response, parse_json_object, read_body, read_json
from server.api.inference import fold
from server.api.sse import DONE, first_event, frame, named_event_stream, sse_stream
from server.errors import BadRequest, NotFound, PollamaError
from server.inference.events import collect
from server.inference.rerank import RerankRequest
from server.jsontypes import JSONObject
from server.store.names import Name

log = logging.getLogger(__name__)

bp = Blueprint("openai", __name__)

ZSTD_LIMIT = 20 * 1024 * 1024  # Ollama's cap on a decompressed /v1/responses body


def error_type(status: int) -> str:
    return {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")


def error_object(status: int, message: str) -> JSONObject:
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": None}}


def error_frame(exc: PollamaError) -> bytes:
    """A failure after the stream began: the SDKs raise APIError on a `data` frame with `error`."""
    return frame(error_object(exc.status, exc.message))


@bp.errorhandler(PollamaError)
async def _pollama_error(exc: PollamaError) -> Response:
    return json_response(error_object(exc.status, exc.message), exc.status)


@bp.errorhandler(Exception)
async def _unexpected(exc: Exception) -> Response | HTTPException:
    if isinstance(exc, HTTPException):
        return exc
    log.exception("openai handler failed")
    return json_response(error_object(500, f"internal error: {exc}"), 500)


# ---------------------------------------------------------------------------- chat


@bp.route("/v1/chat/completions", methods=["POST"])
async def chat_completions() -> Response:
    call = oa.chat_request(await read_json())
    req = call.request
    events = services().inference.chat(req)
    if req.debug_render_only:
        return json_response(await fold(events, "message", req.model))
    if not req.stream:
        final = await collect(events)
        return json_response(
            oa.chat_completion(final, id=oa.chat_id(), model=req.model), headers=truncation_headers(final)
        )
    first = await first_event(events)
    stream = oa.ChatStream(id=oa.chat_id(), model=req.model, include_usage=call.include_usage)
    return sse_stream(first, events, stream.frames, error_frame, tail=DONE)


# ---------------------------------------------------------------------------- completions


@bp.route("/v1/completions", methods=["POST"])
async def completions() -> Response:
    call = oa.completion_request(await read_json())
    req = call.request
    events = services().inference.generate(req)
    echo = req.prompt if call.echo else None
    if req.debug_render_only:
        return json_response(await fold(events, "response", req.model))
    if not req.stream:
        final = await collect(events)
        return json_response(
            oa.text_completion(final, id=oa.completion_id(), model=req.model, echo_prompt=echo),
            headers=truncation_headers(final),
        )
    first = await first_event(events)
    stream = oa.CompletionStream(
        id=oa.completion_id(), model=req.model, include_usage=call.include_usage, echo_prompt=echo
    )
    return sse_stream(first, events, lambda ev: b"".join(frame(c) for c in stream.feed(ev)), error_frame, tail=DONE)


# ---------------------------------------------------------------------------- embeddings


@bp.route("/v1/embeddings", methods=["POST"])
async def embeddings() -> Response:
    req, encoding = oa.embed_request(await read_json())
    native = await services().inference.embed(req)
    return json_response(oa.embedding_list(native, model=req.model, encoding=encoding))


# ---------------------------------------------------------------------------- rerank


@bp.route("/v1/rerank", methods=["POST"])
async def rerank() -> Response:
    """The Jina/Cohere shape llama-server serves and LiteLLM's `rerank()` speaks."""
    req = RerankRequest.from_json(await read_json(), return_documents=False)
    ranked, tokens = await services().inference.rerank(req)
    results = []
    for r in ranked:
        entry: JSONObject = {"index": r.index, "relevance_score": r.relevance_score}
        if req.return_documents:
            entry["document"] = {"text": r.document}
        results.append(entry)
    return json_response(
        {
            "model": req.model,
            "object": "list",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "results": results,
        }
    )


# ---------------------------------------------------------------------------- models


@bp.route("/v1/models", methods=["GET"])
async def list_models() -> Response:
    store = services().store
    models = await asyncio.to_thread(store.list)
    return json_response(oa.model_list([oa.model_entry(m.name.display, m.modified, m.name.namespace) for m in models]))


@bp.route("/v1/models/<path:model>", methods=["GET"])
async def retrieve_model(model: str) -> Response:
    """`id` echoes the name as given; names with a namespace (`me/m:tag`) work too."""
    name = Name.parse_lenient(model)
    if not name.is_valid:
        raise BadRequest(f"invalid model name: {model!r}")
    found = await asyncio.to_thread(services().store.get, name)
    if found is None:
        raise NotFound(f"model '{model}' not found")
    return json_response(oa.model_entry(model, found.modified, found.name.namespace))


# ---------------------------------------------------------------------------- responses


async def _responses_body() -> JSONObject:
    """The JSON body, zstd-decompressed when sent so (Codex-style clients compress)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return await read_json()
    if encoding != "zstd":
        raise PollamaError(f"unsupported Content-Encoding: {encoding}", 415)
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise PollamaError("zstd request bodies need the 'zstandard' package, which is not installed", 415) from None
    raw = await read_body(current_app.config["POLLAMA_MAX_JSON_BODY"])
    try:
        with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            data = reader.read(ZSTD_LIMIT + 1)
    except zstandard.ZstdError as exc:
        raise BadRequest(f"invalid zstd body: {exc}") from None
    if len(data) > ZSTD_LIMIT:
        raise PollamaError("decompressed request body too large", 413)
    return parse_json_object(data)


@bp.route("/v1/responses", methods=["POST"])
async def responses() -> Response:
    call = responses_request(await _responses_body())
    req = call.request
    events = services().inference.chat(req)
    if not req.stream:
        final = await collect(events)
        return json_response(ResponseBuilder(call, model=req.model).complete(final), headers=truncation_headers(final))
    first = await first_event(events)
    stream = ResponsesStream(call, model=req.model)
    return named_event_stream(first, events, start=stream.start, feed=stream.feed, fail=stream.failed)
