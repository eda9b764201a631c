"""Ollama's generation routes: /api/generate, /api/chat, /api/embed, /api/embeddings, and
the model's tokenizer: /api/tokenize, /api/detokenize (as llama-server's `/tokenize`,
`/detokenize`; Ollama has none), and /api/rerank for reranker models.

Handlers parse into typed requests, call the inference service, and either
stream its events as NDJSON or fold them into one response. This is the one
place that writes Ollama's response JSON for a generation (Ollama's
`api/types.go` `GenerateResponse`, `ChatResponse`, `Metrics`, `EmbedResponse`):
the service yields typed events (`server.inference.events`), and the compat
APIs build their own shapes from the same events. The OpenAI and Anthropic
routes use `fold` only for a render-only debug request, which answers in the
native shape on every route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from quart import Blueprint, Response

from server.api.context import services
from server.api.http import error_response, json_response, ndjson, read_json
from server.errors import BadRequest, PollamaError
from server.inference.events import Embeddings, Event, Final, Piece, Rendered, Stats
from server.inference.requests import ChatRequest, EmbedRequest, GenerateRequest, parse_keep_alive_field, parse_options
from server.inference.rerank import RerankRequest
from server.inference.token_requests import DetokenizeRequest, TokenizeRequest
from server.jsontypes import JSONObject
from server.timefmt import utc_now

#: Which native shape a generation's events take: `/api/generate`'s (`response`) or `/api/chat`'s (`message`).
Kind = Literal["response", "message"]

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
        return await ndjson(native_stream(events, "response", req.model))
    return json_response(await fold(events, "response", req.model))


@bp.route("/api/chat", methods=["POST"])
async def chat() -> Response:
    body = await read_json(allow_empty=True)
    if not body.get("model"):
        raise BadRequest("model is required")
    req = ChatRequest.from_json(body)
    events = services().inference.chat(req)
    if streams(req):
        return await ndjson(native_stream(events, "message", req.model))
    return json_response(await fold(events, "message", req.model))


@bp.route("/api/embed", methods=["POST"])
async def embed() -> Response:
    req = EmbedRequest.from_json(await read_json())
    return json_response(embed_json(await services().inference.embed(req), req.model))


@bp.route("/api/embeddings", methods=["POST"])
async def embeddings() -> Response:
    body = await read_json()
    model = body.get("model")
    prompt = body.get("prompt", "")
    if not isinstance(model, str) or not isinstance(prompt, str):
        raise BadRequest("model and prompt must be strings")
    keep_alive = parse_keep_alive_field(body)
    options = parse_options(body.get("options"))
    return json_response({"embedding": await services().inference.embeddings(model, prompt, options, keep_alive)})


@bp.route("/api/rerank", methods=["POST"])
async def rerank() -> Response:
    req = RerankRequest.from_json(await read_json())
    ranked, _ = await services().inference.rerank(req)
    results = []
    for r in ranked:
        entry: JSONObject = {"index": r.index, "relevance_score": r.relevance_score}
        if req.return_documents:
            entry["document"] = r.document
        results.append(entry)
    return json_response({"model": req.model, "results": results})


@bp.route("/api/tokenize", methods=["POST"])
async def tokenize() -> Response:
    req = TokenizeRequest.from_json(await read_json())
    tokens = await services().inference.tokenize(req)
    listed = [t if isinstance(t, int) else {"id": t.id, "piece": t.piece} for t in tokens]
    return json_response({"model": req.model, "tokens": listed})


@bp.route("/api/detokenize", methods=["POST"])
async def detokenize() -> Response:
    req = DetokenizeRequest.from_json(await read_json())
    return json_response({"model": req.model, "content": await services().inference.detokenize(req)})


# ---------------------------------------------------------------------------- events → Ollama's JSON


def embed_json(result: Embeddings, model: str) -> JSONObject:
    """`/api/embed`'s answer; an empty `input` has no durations or count, as Ollama's."""
    out: JSONObject = {"model": model, "embeddings": result.vectors}
    if result.timed:
        out["total_duration"] = result.total_duration
        out["load_duration"] = result.load_duration
        out["prompt_eval_count"] = result.prompt_eval_count
    return out


def _message(piece: Piece) -> JSONObject:
    message: JSONObject = {"role": "assistant", "content": piece.content}
    if piece.thinking:
        message["thinking"] = piece.thinking
    if piece.tool_calls:
        message["tool_calls"] = [call.to_dict() for call in piece.tool_calls]
    return message


def stats_json(stats: Stats) -> JSONObject:
    """Ollama's `api.Metrics` as it writes them (a zero metric omitted), then pollama's
    speculative-decoding counts when anything was drafted."""
    values = {
        "total_duration": stats.total_duration,
        "load_duration": stats.load_duration,
        "prompt_eval_count": stats.prompt_eval_count,
        "prompt_eval_duration": stats.prompt_eval_duration,
        "eval_count": stats.eval_count,
        "eval_duration": stats.eval_duration,
    }
    out: JSONObject = {k: v for k, v in values.items() if v}
    if stats.draft_count:
        out["draft_count"] = stats.draft_count
        out["draft_accepted_count"] = stats.draft_accepted_count
    return out


def event_json(event: Event, kind: Kind, model: str) -> JSONObject:
    """One event as the native chunk Ollama streams for it."""
    out: JSONObject = {"model": model, "created_at": utc_now()}
    if isinstance(event, Rendered):
        out[kind] = "" if kind == "response" else {"role": "", "content": ""}
        out["done"] = False
        out["_debug_info"] = {"rendered_template": event.prompt, "image_count": event.image_count}
        return out
    piece = event.tail if isinstance(event, Final) else event
    if kind == "message":
        out["message"] = _message(piece)
        out["done"] = isinstance(event, Final)
    else:
        out["response"] = piece.content
        out["done"] = isinstance(event, Final)
        if piece.thinking:
            out["thinking"] = piece.thinking
    if not isinstance(event, Final):
        if piece.logprobs:
            out["logprobs"] = list(piece.logprobs)
        return out
    out["done_reason"] = event.done_reason
    out.update(stats_json(event.stats))
    if event.truncated_messages:
        out["truncated_messages"] = event.truncated_messages
    if event.truncated_tokens:
        out["truncated_tokens"] = event.truncated_tokens
    if event.context is not None:
        out["context"] = list(event.context)
    if event.stop_sequence is not None:
        out["stop_sequence"] = event.stop_sequence
    return out


async def native_stream(events: AsyncIterator[Event], kind: Kind, model: str) -> AsyncIterator[JSONObject]:
    """The events as native chunks, for `ndjson`; closing this closes `events` (which is what
    cancels the runner request when the client goes away)."""
    try:
        async for event in events:
            yield event_json(event, kind, model)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def fold(events: AsyncIterator[Event], kind: Kind, model: str) -> JSONObject:
    """A non-streamed answer: text, thinking, tool calls and logprobs joined; stats from the end.

    The final chunk's own JSON with the joined parts put in, so the keys stay where a
    streamed final has them (thinking that came only in earlier pieces goes last, then
    logprobs)."""
    text: list[str] = []
    thinking: list[str] = []
    tool_calls: list[JSONObject] = []
    logprobs: list[JSONObject] = []
    last: Event | None = None
    try:
        async for event in events:
            last = event
            if isinstance(event, Rendered):
                break
            piece = event.tail if isinstance(event, Final) else event
            text.append(piece.content)
            if piece.thinking:
                thinking.append(piece.thinking)
            tool_calls.extend(call.to_dict() for call in piece.tool_calls)
            logprobs.extend(piece.logprobs)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    if last is None:
        return {}
    result = event_json(last, kind, model)
    if isinstance(last, Rendered):
        return result
    if kind == "message":
        message: JSONObject = {"role": "assistant", "content": "".join(text)}
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
