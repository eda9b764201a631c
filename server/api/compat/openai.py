"""OpenAI chat completions, completions, embeddings and models ⇄ Ollama native (Ollama's `openai/openai.go` and `middleware/openai.go`).

Request translators raise `BadRequest` with Ollama's wording, so a client of
either server reads the same error. Response builders take the inference
service's events (`server.inference.events`: a collected `Final`, or one event
at a time for the stream converters) and return OpenAI's JSON shapes.
"""

from __future__ import annotations

import base64
import random
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from server.api.compat.common import (
    arguments_json,
    decode_base64,
    decode_image_url,
    deferred_options,
    go_type,
    json_type,
    opt_bool,
    opt_int,
    opt_list,
    opt_number,
    opt_object,
    opt_str,
    parse_arguments,
    parse_stop,
    require_model,
    truncation,
    with_native_options,
)
from server.api.compat.tool_choice import openai_tool_choice
from server.api.http import dumps
from server.api.sse import frame
from server.errors import BadRequest
from server.inference.events import Embeddings, Event, Final, Logprob, Stats, output
from server.inference.requests import ChatRequest, EmbedRequest, GenerateRequest, parse_format, parse_options
from server.jsontypes import JSONObject
from server.options import Options
from server.prompt import ToolCall

SYSTEM_FINGERPRINT = "fp_ollama"

# reasoning_effort → native think (Ollama's `openai/openai.go` `thinkFromReasoningEffort`).
REASONING_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}


def chat_id() -> str:
    """`chatcmpl-<0..998>`, as Ollama: ids carry no meaning, clients only echo them."""
    return f"chatcmpl-{random.randrange(999)}"


def completion_id() -> str:
    return f"cmpl-{random.randrange(999)}"


def usage(stats: Stats) -> dict[str, int]:
    prompt, completion = stats.prompt_eval_count, stats.eval_count
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# ---------------------------------------------------------------------------- shared request bits


def sampling_options(body: Mapping[str, Any], *, completions: bool = False) -> Options:
    """OpenAI sampling fields → native options, with OpenAI's defaults (temperature/top_p 1.0)."""
    options: Options = {}
    stop = parse_stop(body.get("stop"), strict=completions)
    if stop is not None:
        options["stop"] = stop
    max_tokens = opt_int(body, "max_tokens")
    key = "max_tokens"
    if max_tokens is None and not completions:
        # Newer SDKs send max_completion_tokens instead of the deprecated max_tokens;
        # Ollama ignores it, which silently lifts the caller's limit.
        key = "max_completion_tokens"
        max_tokens = opt_int(body, key)
    if max_tokens is not None:
        if max_tokens < -2:  # num_predict's least meaningful value, in the client's words
            raise BadRequest(f"invalid value for '{key}': {max_tokens} (expected a number of tokens)")
        options["num_predict"] = max_tokens
    temperature = opt_number(body, "temperature")
    options["temperature"] = 1.0 if temperature is None else temperature
    seed = opt_int(body, "seed")
    if seed is not None:
        options["seed"] = seed
    for key in ("frequency_penalty", "presence_penalty"):
        value = opt_number(body, key)
        if value is not None:
            options[key] = value
        elif completions:
            options[key] = 0.0
    top_p = opt_number(body, "top_p")
    if top_p is None or (completions and top_p == 0):
        top_p = 1.0  # completions treats 0 as unset (Go's zero value)
    options["top_p"] = top_p
    return parse_options(options)


def response_format(value: Any) -> str | JSONObject | None:
    """`response_format` → native `format`: json_object → "json", json_schema → its schema."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"invalid type for 'response_format': expected object, got {json_type(value)}")
    kind = value.get("type")
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = opt_object(value, "json_schema") or {}
        schema = spec.get("schema")
        return parse_format(schema) if schema is not None else None
    raise BadRequest(f"invalid response_format type: {kind!r} (expected 'text', 'json_object' or 'json_schema')")


def reasoning_think(body: Mapping[str, Any]) -> bool | str | None:
    """`reasoning.effort` or `reasoning_effort` → native think."""
    reasoning = body.get("reasoning")
    effort: Any = None
    if isinstance(reasoning, dict):
        effort = reasoning.get("effort")
    elif reasoning is not None:
        raise BadRequest(f"invalid type for 'reasoning': expected object, got {json_type(reasoning)}")
    if effort is None:
        effort = body.get("reasoning_effort")
    if effort is None or effort == "":
        return None
    if not isinstance(effort, str) or effort not in REASONING_EFFORTS:
        raise BadRequest(
            f'invalid reasoning value: \'{effort}\' (must be "none", "minimal", "low", "medium", "high", "xhigh" or "max")'
        )
    return REASONING_EFFORTS[effort]


def logprob_fields(body: Mapping[str, Any]) -> tuple[bool, int]:
    logprobs = bool(opt_bool(body, "logprobs"))
    top = opt_int(body, "top_logprobs") or 0
    if not 0 <= top <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    return logprobs, top


# ---------------------------------------------------------------------------- chat: request


@dataclass
class ChatCall:
    """A translated chat request plus the stream options only the OpenAI layer uses."""

    request: ChatRequest
    include_usage: bool = False


def tool_calls_from_openai(raw: Any) -> list[JSONObject]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest(f"invalid type for 'tool_calls': expected array, got {json_type(raw)}")
    calls = []
    for i, call in enumerate(raw):
        if not isinstance(call, dict):
            raise BadRequest("invalid tool call: expected an object")
        function = call.get("function") or {}
        if not isinstance(function, dict):
            raise BadRequest("invalid tool call: function must be an object")
        name = function.get("name") or ""
        if not isinstance(name, str):
            raise BadRequest("invalid tool call: function.name must be a string")
        native: JSONObject = {
            "function": {"index": i, "name": name, "arguments": parse_arguments(function.get("arguments"))}
        }
        if isinstance(call.get("id"), str) and call["id"]:
            native["id"] = call["id"]
        calls.append(native)
    return calls


def _name_from_tool_call_id(messages: list[Any], call_id: str) -> str:
    """The function name of the assistant tool call a `tool` message answers (latest first)."""
    for msg in reversed(messages):
        if not isinstance(msg, dict):
            continue
        for call in msg.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("id") == call_id:
                function = call.get("function") or {}
                name = function.get("name") if isinstance(function, dict) else None
                return name if isinstance(name, str) else ""
    return ""


def chat_messages(raw: Any) -> list[JSONObject]:
    """OpenAI messages → native messages (Ollama's `openai/openai.go` `FromChatRequest`)."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise BadRequest(f"invalid type for 'messages': expected array, got {json_type(raw)}")
    if not raw:
        raise BadRequest("[] is too short - 'messages'")
    out: list[JSONObject] = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise BadRequest("invalid message format")
        role = msg.get("role")
        if not isinstance(role, str):
            raise BadRequest(f"invalid message at index {i}: role must be a string")
        role = role.lower()
        if role == "developer":  # OpenAI's newer name for system instructions
            role = "system"
        extras: JSONObject = {}
        if role == "tool":
            name = msg.get("name")
            call_id = msg.get("tool_call_id")
            if isinstance(call_id, str) and call_id:
                extras["tool_call_id"] = call_id
            if not (isinstance(name, str) and name) and isinstance(call_id, str) and call_id:
                name = _name_from_tool_call_id(raw[:i], call_id)
            if isinstance(name, str) and name:
                extras["tool_name"] = name
        reasoning = msg.get("reasoning")
        if reasoning is None:
            reasoning = msg.get("reasoning_content")
        if reasoning is not None and not isinstance(reasoning, str):
            raise BadRequest(f"invalid message at index {i}: reasoning must be a string")
        has_calls = msg.get("tool_calls") is not None
        calls = tool_calls_from_openai(msg.get("tool_calls"))
        content = msg.get("content")
        tail: JSONObject = {}
        if reasoning:
            tail["thinking"] = reasoning
        if calls:
            tail["tool_calls"] = calls
        tail.update(extras)
        if isinstance(content, str):
            out.append({"role": role, "content": content, **tail})
        elif isinstance(content, list):
            parts = [_content_part(role, part) for part in content]
            if not parts:
                parts = [{"role": role, "content": ""}]
            parts[-1].update(tail)  # tool calls etc. ride on the last part's message
            out.extend(parts)
        elif content is None and has_calls:
            out.append({"role": role, "content": "", **tail})
        else:
            raise BadRequest(f"invalid message content type: {go_type(content)}")
    return out


def _content_part(role: str, part: Any) -> JSONObject:
    """One content part → one native message of the same role, as Ollama does."""
    if not isinstance(part, dict):
        raise BadRequest("invalid message format")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise BadRequest("invalid message format")
        return {"role": role, "content": text}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise BadRequest("invalid message format")
        return {"role": role, "content": "", "images": [decode_image_url(url)]}
    if kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        return {"role": role, "content": "", "images": [decode_base64(data, "audio input")]}
    raise BadRequest("invalid message format")


def chat_request(body: Mapping[str, Any]) -> ChatCall:
    """A `/v1/chat/completions` body → native ChatRequest (+ include_usage)."""
    messages = chat_messages(body.get("messages"))
    stream = bool(opt_bool(body, "stream"))
    stream_options = opt_object(body, "stream_options") or {}
    include_usage = bool(opt_bool(stream_options, "include_usage"))
    tools = opt_list(body, "tools")
    logprobs, top = logprob_fields(body)
    options, option_error = deferred_options(lambda: with_native_options(body, sampling_options(body)))
    request = ChatRequest(
        model=require_model(body),
        messages=messages,
        tools=tools or None,
        tool_choice=openai_tool_choice(body.get("tool_choice"), tools),
        stream=stream,
        format=response_format(body.get("response_format")),
        options=options,
        option_error=option_error,
        think=reasoning_think(body),
        logprobs=logprobs,
        top_logprobs=top,
        debug_render_only=bool(opt_bool(body, "_debug_render_only")),
    )
    return ChatCall(request, include_usage)


# ---------------------------------------------------------------------------- chat: response


def tool_calls_to_openai(calls: Iterable[ToolCall]) -> list[JSONObject]:
    return [
        {
            "id": call.id,
            "index": call.function.index,
            "type": "function",
            "function": {"name": call.function.name, "arguments": arguments_json(dict(call.function.arguments))},
        }
        for call in calls
    ]


def finish_reason(done_reason: str | None, had_tool_calls: bool) -> str | None:
    reason = done_reason or None
    if had_tool_calls and reason in (None, "stop"):
        return "tool_calls"
    return reason


def chat_completion(final: Final, *, id: str, model: str, created: int | None = None) -> JSONObject:
    """A collected chat answer → `chat.completion`."""
    whole = final.tail
    calls = tool_calls_to_openai(whole.tool_calls)
    message: JSONObject = {"role": "assistant", "content": whole.content}
    if whole.thinking:
        message["reasoning"] = whole.thinking
    if calls:
        message["tool_calls"] = calls
    choice: JSONObject = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(final.done_reason, bool(calls)),
    }
    if whole.logprobs:
        choice["logprobs"] = {"content": list(whole.logprobs)}
    return {
        "id": id,
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [choice],
        "usage": usage(final.stats),
    }


class ChatStream:
    """Chat events → `chat.completion.chunk`s (Ollama's `openai/openai.go` `ToStreamChunks` and `FinishChunk`).

    `feed` returns the chunks for one event; the final event yields its own
    content (if any), then the finish chunk, then the usage chunk when asked
    for. The caller adds `data: [DONE]`.
    """

    def __init__(self, *, id: str, model: str, include_usage: bool = False, created: int | None = None) -> None:
        self.id = id
        self.model = model
        self.include_usage = include_usage
        self.created = created if created is not None else int(time.time())
        self._sent_role = False
        self._tool_calls = False
        self.final: Final | None = None
        # The bytes around a plain content delta, serialized once: most chunks of a
        # stream are exactly that, and the server's per-token cost is what the
        # stream's speed is measured against (benchmarks/bench_sse.py).
        self._content_head = (
            f'data: {{"id":{dumps(self.id)},"object":"chat.completion.chunk","created":{self.created},'
            f'"model":{dumps(self.model)},"system_fingerprint":"{SYSTEM_FINGERPRINT}",'
            '"choices":[{"index":0,"delta":{"content":'
        ).encode()
        self._content_tail = b'},"finish_reason":null}]}\n\n'

    def frames(self, event: Event) -> bytes:
        """`feed` as SSE bytes; a plain content piece takes the pre-serialized path."""
        piece, final = output(event)
        if (
            self._sent_role
            and final is None
            and not piece.logprobs
            and not piece.thinking
            and not piece.tool_calls
            and piece.content
        ):
            return self._content_head + dumps(piece.content).encode() + self._content_tail
        return b"".join(frame(c) for c in self.feed(event))

    def _chunk(self, delta: JSONObject, logprobs: tuple[Logprob, ...] = (), finish: str | None = None) -> JSONObject:
        if not self._sent_role:
            delta = {"role": "assistant", **delta}
            self._sent_role = True
        choice: JSONObject = {"index": 0, "delta": delta, "finish_reason": finish}
        if logprobs:
            choice["logprobs"] = {"content": list(logprobs)}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [choice],
        }

    def feed(self, event: Event) -> list[JSONObject]:
        piece, final = output(event)
        content, thinking, logprobs = piece.content, piece.thinking, piece.logprobs
        calls = tool_calls_to_openai(piece.tool_calls)
        out: list[JSONObject] = []
        if calls:
            self._tool_calls = True
        if thinking and (content or calls):
            out.append(self._chunk({"reasoning": thinking}, logprobs))
            delta: JSONObject = {"content": content}
            if calls:
                delta["tool_calls"] = calls
            out.append(self._chunk(delta))
        elif content or thinking or calls or logprobs or (final is not None and not self._sent_role):
            delta = {"content": content}
            if thinking:
                delta["reasoning"] = thinking
            if calls:
                delta["tool_calls"] = calls
            out.append(self._chunk(delta, logprobs))
        if final is not None:
            self.final = final
            finish = self._chunk({}, finish=finish_reason(final.done_reason, self._tool_calls))
            out.append({**finish, **truncation(final)})
            if self.include_usage:
                out.append(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "system_fingerprint": SYSTEM_FINGERPRINT,
                        "choices": [],
                        "usage": usage(final.stats),
                    }
                )
        return out


# ---------------------------------------------------------------------------- completions


@dataclass
class CompletionCall:
    request: GenerateRequest
    include_usage: bool = False
    echo: bool = False


def completion_request(body: Mapping[str, Any]) -> CompletionCall:
    """A `/v1/completions` body → native GenerateRequest (Ollama's `openai/openai.go` `FromCompleteRequest`)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # the SDK's single-prompt list form
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise BadRequest(f"invalid type for 'prompt': expected string, got {json_type(prompt)}")
    logprobs_n = opt_int(body, "logprobs") or 0
    if not 0 <= logprobs_n <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    stream_options = opt_object(body, "stream_options") or {}
    suffix = opt_str(body, "suffix") or ""
    options, option_error = deferred_options(
        lambda: with_native_options(body, sampling_options(body, completions=True))
    )
    request = GenerateRequest(
        model=require_model(body),
        prompt=prompt,
        suffix=suffix,
        stream=bool(opt_bool(body, "stream")),
        options=options,
        option_error=option_error,
        logprobs=logprobs_n > 0,
        top_logprobs=logprobs_n,
        debug_render_only=bool(opt_bool(body, "_debug_render_only")),
    )
    echo = bool(opt_bool(body, "echo")) and not suffix
    return CompletionCall(request, bool(opt_bool(stream_options, "include_usage")), echo)


class LegacyLogprobs:
    """Native logprobs → the completions API's parallel arrays (tokens, token_logprobs…)."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def convert(self, items: Iterable[Logprob]) -> JSONObject | None:
        items = list(items)
        if not items:
            return None
        out: JSONObject = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for item in items:
            token = str(item.get("token", ""))
            out["tokens"].append(token)
            out["token_logprobs"].append(item.get("logprob"))
            out["top_logprobs"].append(
                {str(t.get("token", "")): t.get("logprob") for t in item.get("top_logprobs") or []}
            )
            out["text_offset"].append(self.offset)
            self.offset += len(token)
        return out


def _completion_choice(text: str, finish: str | None, logprobs: JSONObject | None) -> JSONObject:
    choice: JSONObject = {"text": text, "index": 0, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return choice


def text_completion(final: Final, *, id: str, model: str, echo_prompt: str | None = None) -> JSONObject:
    """A collected generate answer → `text_completion`."""
    text = final.tail.content
    prefix = echo_prompt or ""
    logprobs = LegacyLogprobs(len(prefix)).convert(final.tail.logprobs)
    return {
        "id": id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [_completion_choice(prefix + text, final.done_reason or None, logprobs)],
        "usage": usage(final.stats),
    }


class CompletionStream:
    """Generate events → `text_completion` chunks, one per event (Ollama's `openai/openai.go` `ToCompleteChunk`)."""

    def __init__(self, *, id: str, model: str, include_usage: bool = False, echo_prompt: str | None = None) -> None:
        self.id = id
        self.model = model
        self.include_usage = include_usage
        self.echo_prompt = echo_prompt
        self._logprobs = LegacyLogprobs(len(echo_prompt or ""))

    def _chunk(self, text: str, finish: str | None, logprobs: JSONObject | None = None) -> JSONObject:
        """One text chunk; with `include_usage` it carries a zeroed `usage`, as Ollama's do (the real counts follow at the end)."""
        chunk: JSONObject = {
            "id": self.id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [_completion_choice(text, finish, logprobs)],
        }
        if self.include_usage:
            chunk["usage"] = usage(Stats())
        return chunk

    def feed(self, event: Event) -> list[JSONObject]:
        piece, final = output(event)
        out = []
        if self.echo_prompt is not None:
            out.append(self._chunk(self.echo_prompt, None))
            self.echo_prompt = None
        logprobs = self._logprobs.convert(piece.logprobs)
        chunk = self._chunk(piece.content, (final.done_reason or None) if final is not None else None, logprobs)
        out.append({**chunk, **truncation(final)} if final is not None else chunk)
        if final is not None and self.include_usage:
            out.append(
                {
                    "id": self.id,
                    "object": "text_completion",
                    "created": int(time.time()),
                    "model": self.model,
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [],
                    "usage": usage(final.stats),
                }
            )
        return out


# ---------------------------------------------------------------------------- embeddings


def embed_request(body: Mapping[str, Any]) -> tuple[EmbedRequest, str]:
    """A `/v1/embeddings` body → (native EmbedRequest, encoding format) (Ollama's `middleware/openai.go` `EmbeddingsMiddleware`)."""
    raw = body.get("input")
    if raw == "":
        inputs = [""]
    elif isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        inputs = list(raw)
    else:
        raise BadRequest("invalid input")
    encoding = body.get("encoding_format")
    if encoding is None or encoding == "":
        encoding = "float"
    if not isinstance(encoding, str) or encoding.lower() not in ("float", "base64"):
        raise BadRequest(f"Invalid value for 'encoding_format' = {encoding}. Supported values: ['float', 'base64'].")
    dimensions = opt_int(body, "dimensions")
    if dimensions is not None and dimensions <= 0:
        raise BadRequest("dimensions must be a positive integer")
    return EmbedRequest(model=require_model(body), inputs=inputs, dimensions=dimensions), encoding.lower()


def encode_base64(vector: list[float]) -> str:
    """Little-endian float32 bytes, base64 — what OpenAI's SDKs decode with numpy.frombuffer."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_list(result: Embeddings, *, model: str, encoding: str) -> JSONObject:
    data = []
    for i, vector in enumerate(result.vectors):
        data.append(
            {"object": "embedding", "embedding": encode_base64(vector) if encoding == "base64" else vector, "index": i}
        )
    tokens = result.prompt_eval_count
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# ---------------------------------------------------------------------------- models


def model_entry(id: str, modified: float, namespace: str) -> JSONObject:
    return {"id": id, "object": "model", "created": int(modified), "owned_by": namespace}


def model_list(entries: list[JSONObject]) -> JSONObject:
    """`data` is null for an empty store, as Ollama's Go nil slice (Ollama's `openai/openai.go` `ToListCompletion`, tested upstream)."""
    return {"object": "list", "data": entries or None}
