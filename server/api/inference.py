"""Ollama's generation routes: /api/generate, /api/chat, /api/embed, /api/embeddings, and
the model's tokenizer: /api/tokenize, /api/detokenize (as llama-server's `/tokenize`,
`/detokenize`; Ollama has none), and /api/rerank for reranker models.

Handlers parse into typed requests, call the inference service, and either
stream its objects as NDJSON or fold them into one response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response

from server.api.context import services
from server.api.http import error_response, json_response, ndjson, read_json
from server.errors import BadRequest, PollamaError
from server.inference.requests import ChatRequest, EmbedRequest, GenerateRequest, parse_keep_alive_field, parse_options
from server.inference.rerank import RerankRequest
from server.inference.token_requests import DetokenizeRequest, TokenizeRequest

bp = Blueprint("inference", __name__)


@bp.errorhandler(PollamaError)
async def _pollama_error(exc: PollamaError) -> Response:
    return error_response(exc)


def streams(req: GenerateRequest | ChatRequest) -> bool:
    """Whether the answer is NDJSON: a load or unload is one plain JSON object even when
    `stream` is on, as Ollama answers it, and so is a render-only debug request."""
    return req.stream and not req.debug_render_only and not req.only_loads


@bp.route("/api/generate", methods=["POST"])
async def generate() -> Response:
    req = GenerateRequest.from_json(await read_json())
    events = services().inference.generate(req)
    if streams(req):
        return await ndjson(events)
    return json_response(await fold(events, "response"))


@bp.route("/api/chat", methods=["POST"])
async def chat() -> Response:
    body = await read_json(allow_empty=True)
    if not body.get("model"):
        raise BadRequest("model is required")
    req = ChatRequest.from_json(body)
    events = services().inference.chat(req)
    if streams(req):
        return await ndjson(events)
    return json_response(await fold(events, "message"))


@bp.route("/api/embed", methods=["POST"])
async def embed() -> Response:
    req = EmbedRequest.from_json(await read_json())
    return json_response(await services().inference.embed(req))


@bp.route("/api/embeddings", methods=["POST"])
async def embeddings() -> Response:
    body = await read_json()
    model = body.get("model")
    prompt = body.get("prompt", "")
    if not isinstance(model, str) or not isinstance(prompt, str):
        raise BadRequest("model and prompt must be strings")
    keep_alive = parse_keep_alive_field(body)
    options = parse_options(body.get("options"))
    return json_response(await services().inference.embeddings(model, prompt, options, keep_alive))


@bp.route("/api/rerank", methods=["POST"])
async def rerank() -> Response:
    req = RerankRequest.from_json(await read_json())
    ranked, _ = await services().inference.rerank(req)
    results = []
    for r in ranked:
        entry: dict[str, Any] = {"index": r.index, "relevance_score": r.relevance_score}
        if req.return_documents:
            entry["document"] = r.document
        results.append(entry)
    return json_response({"model": req.model, "results": results})


@bp.route("/api/tokenize", methods=["POST"])
async def tokenize() -> Response:
    req = TokenizeRequest.from_json(await read_json())
    return json_response(await services().inference.tokenize(req))


@bp.route("/api/detokenize", methods=["POST"])
async def detokenize() -> Response:
    req = DetokenizeRequest.from_json(await read_json())
    return json_response(await services().inference.detokenize(req))


async def fold(events: AsyncIterator[dict[str, Any]], kind: str) -> dict[str, Any]:
    """A non-streamed answer: text, thinking, tool calls and logprobs joined; stats from the end."""
    text: list[str] = []
    thinking: list[str] = []
    tool_calls: list[Any] = []
    logprobs: list[Any] = []
    last: dict[str, Any] = {}
    try:
        async for event in events:
            last = event
            piece = event.get("message", {}) if kind == "message" else event
            text.append(piece.get("content" if kind == "message" else "response", ""))
            if piece.get("thinking"):
                thinking.append(piece["thinking"])
            tool_calls.extend(piece.get("tool_calls") or [])
            logprobs.extend(event.get("logprobs") or [])
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    result = dict(last)
    if "_debug_info" in last:
        return result
    if kind == "message":
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
        if thinking:
            message["thinking"] = "".join(thinking)
        if tool_calls:
            message["tool_calls"] = tool_calls
        result["message"] = message
    else:
        result["response"] = "".join(text)
        if thinking:
            result["thinking"] = "".join(thinking)
    if logprobs:
        result["logprobs"] = logprobs
    return result
