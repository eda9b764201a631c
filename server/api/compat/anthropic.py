"""Anthropic Messages API ⇄ native chat (Ollama's `anthropic/anthropic.go`).

Differences from Ollama, each a superset that an Anthropic client expects:
`output_config.format` (Anthropic's structured outputs) maps to the native
`format`; a failure after the stream started is sent as an `error` event
(the SDKs raise it as a typed error) instead of silently ending the stream;
`stop_sequence` is present in responses as in Anthropic's own, and names the
request's stop sequence that ended the reply (`stop_reason: "stop_sequence"`;
Ollama reports `end_turn` and `null`); a thinking block carries an empty
`signature`, a field Anthropic's block types require and that clients such
as Claude Code send back with the block in the next turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.api.compat.common import (
    decode_base64,
    deferred_options,
    json_type,
    opt_int,
    opt_list,
    opt_number,
    opt_object,
    opt_str,
    random_hex,
    truncation,
)
from server.api.compat.tool_choice import anthropic_tool_choice
from server.errors import BadRequest, PollamaError
from server.inference.events import Event, Final, output
from server.inference.requests import ChatRequest, parse_format
from server.jsontypes import JSONObject
from server.options import Options
from server.prompt import ToolCall

log = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

EFFORTS: dict[str, str] = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "max"}


def error_body(status: int, message: str) -> JSONObject:
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": "req_" + random_hex(24),
    }


def message_id() -> str:
    return "msg_" + random_hex(24)


@dataclass
class MessagesCall:
    request: ChatRequest
    estimated_input_tokens: int = 0


# ---------------------------------------------------------------------------- request


def _system(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        text = []
        for block in value:
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                raise BadRequest('invalid system block: expected {"type": "text", "text": ...}')
            text.append(block["text"])
        return "".join(text)
    raise BadRequest(f"invalid type for 'system': expected string or array, got {json_type(value)}")


def _image(block: Mapping[str, Any]) -> bytes:
    source = block.get("source")
    if not isinstance(source, dict):
        raise BadRequest("invalid image source")
    kind = source.get("type")
    if kind != "base64":
        raise BadRequest(f"invalid image source type: {kind}. Only base64 images are supported.")
    return decode_base64(source.get("data"), "image data")


def _tool_result(block: Mapping[str, Any], names: dict[str, str]) -> JSONObject:
    call_id = block.get("tool_use_id")
    content = block.get("content")
    text: list[str] = []
    images: list[bytes] = []
    if isinstance(content, str):
        text.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                text.append(part["text"])
            elif part.get("type") == "image":
                images.append(_image(part))
    elif content is not None:
        raise BadRequest(f"invalid tool_result content: expected string or array, got {json_type(content)}")
    message: JSONObject = {"role": "tool", "content": "".join(text)}
    if images:
        message["images"] = images
    if isinstance(call_id, str) and call_id:
        message["tool_call_id"] = call_id
        if call_id in names:
            message["tool_name"] = names[call_id]
    return message


def convert_message(msg: Any, names: dict[str, str]) -> list[JSONObject]:
    """One Anthropic message → native messages; tool results come first, as their own `tool` turns."""
    if not isinstance(msg, dict):
        raise BadRequest("invalid message: expected an object")
    role = msg.get("role")
    if not isinstance(role, str):
        raise BadRequest("invalid message: role must be a string")
    role = role.lower()
    content = msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise BadRequest(f"invalid message content type: {json_type(content)}")
    text: list[str] = []
    images: list[bytes] = []
    calls: list[JSONObject] = []
    thinking = ""
    results: list[JSONObject] = []
    for block in content:
        if not isinstance(block, dict):
            raise BadRequest("invalid content block format")
        kind = block.get("type")
        if kind == "text":
            if isinstance(block.get("text"), str):
                text.append(block["text"])
        elif kind == "image":
            images.append(_image(block))
        elif kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not call_id:
                raise BadRequest("tool_use block missing required 'id' field")
            if not isinstance(name, str) or not name:
                raise BadRequest("tool_use block missing required 'name' field")
            arguments = block.get("input")
            names[call_id] = name
            calls.append(
                {
                    "id": call_id,
                    "function": {
                        "index": len(calls),
                        "name": name,
                        "arguments": arguments if isinstance(arguments, dict) else {},
                    },
                }
            )
        elif kind == "tool_result":
            results.append(_tool_result(block, names))
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str):
                thinking = block["thinking"]
        # redacted_thinking, documents, server tool blocks…: ignored, as Ollama ignores unknown blocks
    out = list(results)
    if text or images or calls or thinking:
        message: JSONObject = {"role": role, "content": "".join(text)}
        if images:
            message["images"] = images
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["thinking"] = thinking
        out.append(message)
    return out


def _tools(raw: list[Any] | None) -> list[JSONObject] | None:
    if not raw:
        return None
    tools: list[JSONObject] = []
    for tool in raw:
        if not isinstance(tool, dict):
            raise BadRequest("invalid tool: expected an object")
        kind = tool.get("type")
        if isinstance(kind, str) and kind.startswith("web_search"):
            # Ollama runs Anthropic's server-side web search through ollama.com; a
            # local server has nothing to run it with, so the model answers without it.
            log.warning("dropping server-side tool %r: not available on this server", kind)
            continue
        # Any other type (custom, or a client-side built-in such as bash_…) is a
        # function the client executes, converted by name and schema as Ollama does.
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("tool is missing required 'name' field")
        function: JSONObject = {
            "name": name,
            "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        }
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        tools.append({"type": "function", "function": function})
    return tools or None


def _think(body: Mapping[str, Any]) -> bool | str | None:
    thinking = opt_object(body, "thinking")
    if thinking is not None:
        kind = thinking.get("type")
        if kind in ("enabled", "adaptive"):
            return True
        if kind == "disabled":
            return False
    effort = (opt_object(body, "output_config") or {}).get("effort")
    if effort is None:
        return None
    if not isinstance(effort, str):  # a list or object once reached the dict lookup: a 500
        raise BadRequest(f"invalid type for 'output_config.effort': expected string, got {json_type(effort)}")
    if effort not in EFFORTS:
        raise BadRequest(f"invalid effort: {effort!r}")
    return EFFORTS[effort]


def _format(body: Mapping[str, Any]) -> str | JSONObject | None:
    fmt = (opt_object(body, "output_config") or {}).get("format")
    if fmt is None:
        fmt = body.get("output_format")  # the beta spelling
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise BadRequest('invalid output format: expected {"type": "json_schema", "schema": {...}}')
    return parse_format(fmt.get("schema"))


def _sampling_options(body: Mapping[str, Any], max_tokens: int) -> Options:
    """`max_tokens`, `temperature`, `top_p`, `top_k` (only when sent) and `stop_sequences`."""
    options: Options = {"num_predict": max_tokens}
    for key in ("temperature", "top_p"):
        value = opt_number(body, key)
        if value is not None:
            options[key] = value
    top_k = opt_int(body, "top_k")
    if top_k is not None:
        options["top_k"] = top_k
    stops = opt_list(body, "stop_sequences")
    if stops is not None:
        if not all(isinstance(s, str) for s in stops):
            raise BadRequest("invalid type for 'stop_sequences': expected an array of strings")
        options["stop"] = stops
    return options


def messages_request(body: Mapping[str, Any], *, counting: bool = False) -> MessagesCall:
    """A `/v1/messages` body → native ChatRequest; validation messages as Ollama's (`anthropic/anthropic.go` `FromMessagesRequest`).

    `counting`: the body of `/v1/messages/count_tokens`, which is a messages request
    without `max_tokens` (Anthropic's `MessageCountTokensParams`): nothing is generated."""
    model = opt_str(body, "model")
    if not model:
        raise BadRequest("model is required")
    max_tokens = opt_int(body, "max_tokens")
    if counting and max_tokens is None:
        max_tokens = 1
    if max_tokens is None or max_tokens <= 0:
        raise BadRequest("max_tokens is required and must be positive")
    raw_messages = opt_list(body, "messages")
    if not raw_messages:
        raise BadRequest("messages is required")
    messages: list[JSONObject] = []
    system = _system(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    names: dict[str, str] = {}
    for msg in raw_messages:
        messages.extend(convert_message(msg, names))
    options, option_error = deferred_options(lambda: _sampling_options(body, max_tokens))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest(f"invalid type for 'stream': expected boolean, got {json_type(stream)}")
    tools = _tools(opt_list(body, "tools"))
    request = ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=anthropic_tool_choice(body.get("tool_choice"), tools),
        stream=bool(stream),
        format=_format(body),
        options=options,
        option_error=option_error,
        think=_think(body),
        debug_render_only=body.get("_debug_render_only") is True,
    )
    return MessagesCall(request, estimate_tokens(messages))


def estimate_tokens(messages: list[JSONObject]) -> int:
    """About four characters a token: message_start must carry a count before the prompt is evaluated."""
    chars = sum(len(m.get("content") or "") + len(m.get("thinking") or "") for m in messages)
    return max(1, chars // 4) if messages else 0


# ---------------------------------------------------------------------------- response


def stop_reason(done_reason: str | None, had_tool_calls: bool, stop_sequence: str | None = None) -> str | None:
    if had_tool_calls:
        return "tool_use"
    if stop_sequence:
        return "stop_sequence"
    if done_reason == "stop":
        return "end_turn"
    if done_reason == "length":
        return "max_tokens"
    return "stop_sequence" if done_reason else None


def _tool_use(call: ToolCall) -> JSONObject:
    return {"type": "tool_use", "id": call.id, "name": call.function.name, "input": dict(call.function.arguments)}


def _usage(final: Final) -> dict[str, int]:
    return {"input_tokens": final.stats.prompt_eval_count, "output_tokens": final.stats.eval_count}


def message_response(final: Final, *, id: str, model: str) -> JSONObject:
    """A collected chat answer → an Anthropic `message`."""
    whole = final.tail
    content: list[JSONObject] = []
    if whole.thinking:
        content.append({"type": "thinking", "thinking": whole.thinking, "signature": ""})
    if whole.content:
        content.append({"type": "text", "text": whole.content})
    content.extend(_tool_use(c) for c in whole.tool_calls)
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(final.done_reason, bool(whole.tool_calls), final.stop_sequence),
        "stop_sequence": final.stop_sequence,
        "usage": _usage(final),
    }


class MessagesStream:
    """Chat events → Anthropic stream events `(event, data)` (Ollama's `anthropic/anthropic.go` `StreamConverter.Process`).

    Blocks open lazily in the order the model produces them (thinking, text,
    tool_use…); switching kind closes the open block, so indices are dense
    and increasing, which the SDKs' accumulators index by.
    """

    def __init__(self, *, id: str, model: str, estimated_input_tokens: int = 0) -> None:
        self.id = id
        self.model = model
        self.estimate = estimated_input_tokens
        self._index = -1
        self._open: str | None = None
        self._tool_calls = False
        self._started = False
        self._finished = False

    def start(self) -> list[tuple[str, JSONObject]]:
        self._started = True
        message: JSONObject = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.estimate, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[tuple[str, JSONObject]]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _open_block(self, kind: str, block: JSONObject) -> list[tuple[str, JSONObject]]:
        out = self._close()
        self._index += 1
        self._open = kind
        out.append(
            ("content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block})
        )
        return out

    def _delta(self, delta: JSONObject) -> tuple[str, JSONObject]:
        return "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}

    def feed(self, event: Event) -> list[tuple[str, JSONObject]]:
        out: list[tuple[str, JSONObject]] = []
        piece, final = output(event)
        thinking, content = piece.thinking, piece.content
        if thinking:
            if self._open != "thinking":
                out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
        if content:
            if self._open != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": content}))
        for call in piece.tool_calls:
            self._tool_calls = True
            use = _tool_use(call)
            out += self._open_block("tool_use", {**use, "input": {}})
            out.append(
                self._delta(
                    {
                        "type": "input_json_delta",
                        "partial_json": json.dumps(use["input"], ensure_ascii=False, separators=(",", ":")),
                    }
                )
            )
            out += self._close()
        if final is not None:
            out += self._close()
            self._finished = True
            out.append(
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {
                            "stop_reason": stop_reason(final.done_reason, self._tool_calls, final.stop_sequence),
                            "stop_sequence": final.stop_sequence,
                        },
                        "usage": _usage(final),
                        **truncation(final),  # how much of the prompt did not fit (pollama's)
                    },
                )
            )
            out.append(("message_stop", {"type": "message_stop"}))
        return out

    def error(self, exc: PollamaError) -> tuple[str, JSONObject]:
        return "error", error_body(exc.status, exc.message)
