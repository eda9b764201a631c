"""OpenAI Responses API (stateless subset of Ollama's `openai/responses.go`) ⇄ native chat.

No state is kept between requests: `previous_response_id` and `conversation`
are refused, so a client that relies on them learns it at once instead of
getting answers without their history. Output item ids are fixed when an item
is first announced and reused in every later event and in the final
response, because the SDKs' stream accumulators check that identity.
A reasoning summary's text events are framed by
`response.reasoning_summary_part.added`/`.done`, as in OpenAI's own
stream (Ollama sends only the text events); a client that does not know
them skips them. Text that comes with tool calls is kept as a `message`
item in the whole Response as well (Ollama drops it there, though its
stream sends it), so streamed and whole answers hold the same items.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.api.compat.common import (
    arguments_json,
    decode_image_url,
    deferred_options,
    json_type,
    opt_bool,
    opt_int,
    opt_list,
    opt_number,
    opt_object,
    opt_str,
    parse_arguments,
    require_model,
    truncation,
    with_native_options,
)
from server.api.compat.openai import REASONING_EFFORTS
from server.api.compat.tool_choice import responses_tool_choice
from server.errors import BadRequest, PollamaError
from server.inference.events import Event, Final, output
from server.inference.requests import ChatRequest, parse_format
from server.jsontypes import JSONObject
from server.options import Options
from server.prompt import ToolCall

log = logging.getLogger(__name__)


@dataclass
class ResponsesCall:
    request: ChatRequest
    echo: JSONObject = field(default_factory=dict)  # request fields the response repeats


def _text_of(parts: Any, allowed: tuple[str, ...]) -> tuple[str, list[bytes]]:
    """Concatenated text and images of a content-part list."""
    if isinstance(parts, str):
        return parts, []
    if parts is None:
        return "", []
    if not isinstance(parts, list):
        raise BadRequest(f"invalid message content type: {json_type(parts)}")
    text: list[str] = []
    images: list[bytes] = []
    for part in parts:
        if not isinstance(part, dict):
            raise BadRequest("invalid content part: expected an object")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            value = part.get("text")
            if not isinstance(value, str):
                raise BadRequest(f"invalid {kind} part: text must be a string")
            text.append(value)
        elif kind == "input_image" and "input_image" in allowed:
            url = part.get("image_url")
            if not isinstance(url, str):
                raise BadRequest("input_image parts need an image_url with a base64 data URL")
            images.append(decode_image_url(url))
        elif kind == "input_file":
            raise BadRequest("file inputs are not currently supported")
        elif kind == "refusal":
            value = part.get("refusal")
            text.append(value if isinstance(value, str) else "")
        else:
            raise BadRequest(f"unsupported content part type: {kind!r}")
    return "".join(text), images


def input_messages(raw: Any, instructions: str | None) -> list[JSONObject]:
    """`instructions` + `input` (a string or a list of items) → native messages."""
    out: list[JSONObject] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    if isinstance(raw, str):
        out.append({"role": "user", "content": raw})
        return out
    if raw is None:
        return out
    if not isinstance(raw, list):
        raise BadRequest(f"invalid type for 'input': expected string or array, got {json_type(raw)}")
    names: dict[str, str] = {}
    pending_thinking = ""
    last_was_call = False
    for item in raw:
        if not isinstance(item, dict):
            raise BadRequest("invalid input item: expected an object")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise BadRequest(f"invalid message role: {role!r}")
            text, images = _text_of(item.get("content"), ("input_image",))
            message: JSONObject = {"role": "system" if role == "developer" else role, "content": text}
            if images:
                message["images"] = images
            if role == "assistant" and pending_thinking:
                message["thinking"], pending_thinking = pending_thinking, ""
            out.append(message)
            last_was_call = False
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(name, str) or not name:
                raise BadRequest("function_call items need a name")
            call: JSONObject = {"function": {"name": name, "arguments": parse_arguments(item.get("arguments"))}}
            if isinstance(call_id, str) and call_id:
                call["id"] = call_id
                names[call_id] = name
            if last_was_call or (
                out and out[-1]["role"] == "assistant" and not out[-1].get("tool_calls") and not pending_thinking
            ):
                target = out[-1]
            else:
                target = {"role": "assistant", "content": ""}
                out.append(target)
            if pending_thinking:
                target["thinking"], pending_thinking = pending_thinking, ""
            calls = target.setdefault("tool_calls", [])
            call["function"]["index"] = len(calls)
            calls.append(call)
            last_was_call = True
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            output = item.get("output")
            text, images = _text_of(output, ("input_image",))
            message = {"role": "tool", "content": text}
            if images:
                message["images"] = images
            if isinstance(call_id, str) and call_id:
                message["tool_call_id"] = call_id
                if call_id in names:
                    message["tool_name"] = names[call_id]
            out.append(message)
            last_was_call = False
        elif kind == "reasoning":
            summary, _ = _text_of(item.get("summary"), ())
            encrypted = item.get("encrypted_content")
            pending_thinking += encrypted if isinstance(encrypted, str) and encrypted else summary
        else:
            raise BadRequest(f"unsupported input item type: {kind!r}")
    return out


def _tools(raw: list[Any] | None) -> list[JSONObject] | None:
    if not raw:
        return None
    tools: list[JSONObject] = []
    for tool in raw:
        if not isinstance(tool, dict):
            raise BadRequest("invalid tool: expected an object")
        kind = tool.get("type")
        if kind == "function":
            function = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
            tools.append({"type": "function", "function": function})
        elif kind == "namespace":
            prefix = tool.get("name") or ""
            for inner in _tools(opt_list(tool, "tools")) or []:  # `ns.fn` names
                inner["function"]["name"] = f"{prefix}.{inner['function']['name']}"
                tools.append(inner)
        elif isinstance(kind, str) and kind.startswith("web_search"):
            # Ollama runs web search through ollama.com; a local server cannot, so the
            # model answers without it rather than the whole request failing.
            log.warning("dropping server-side tool %r: not available on this server", kind)
        else:
            raise BadRequest(f"tool type {kind!r} is not supported")
    return tools or None


def _text_format(text: JSONObject | None) -> str | JSONObject | None:
    fmt = (text or {}).get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise BadRequest("invalid text.format: expected an object")
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        return parse_format(fmt.get("schema"))
    raise BadRequest(f"invalid text.format type: {kind!r}")


def _sampling_options(body: Mapping[str, Any]) -> Options:
    """`temperature` (1.0 when absent, as OpenAI), `top_p`, `max_output_tokens` → native options."""
    temperature = opt_number(body, "temperature")
    options: Options = {"temperature": 1.0 if temperature is None else temperature}
    top_p = opt_number(body, "top_p")
    if top_p is not None:
        options["top_p"] = top_p
    max_output = opt_int(body, "max_output_tokens")
    if max_output is not None:
        if max_output < -2:
            raise BadRequest(f"invalid value for 'max_output_tokens': {max_output} (expected a number of tokens)")
        options["num_predict"] = max_output
    return options


def responses_request(body: Mapping[str, Any]) -> ResponsesCall:
    for key in ("previous_response_id", "conversation"):
        if body.get(key):
            raise BadRequest(
                f"'{key}' is not supported: this server keeps no response state; send the whole conversation in 'input'"
            )
    instructions = opt_str(body, "instructions")
    messages = input_messages(body.get("input"), instructions)
    options, option_error = deferred_options(lambda: with_native_options(body, _sampling_options(body)))
    reasoning = opt_object(body, "reasoning") or {}
    effort = reasoning.get("effort")
    think: bool | str | None = None
    if effort is not None:
        if not isinstance(effort, str):  # a dict or list once reached the dict lookup: a 500
            raise BadRequest(f"invalid type for 'reasoning.effort': expected string, got {json_type(effort)}")
        if effort not in REASONING_EFFORTS:
            raise BadRequest(f"invalid reasoning value: '{effort}'")
        think = REASONING_EFFORTS[effort]
    text = opt_object(body, "text")
    tools_raw = opt_list(body, "tools")
    tools = _tools(tools_raw)
    request = ChatRequest(
        model=require_model(body),
        messages=messages,
        tools=tools,
        tool_choice=responses_tool_choice(body.get("tool_choice"), tools),
        stream=bool(opt_bool(body, "stream")),
        format=_text_format(text),
        options=options,
        option_error=option_error,
        think=think,
    )
    echo = {
        "instructions": instructions,
        "max_output_tokens": options.get("num_predict"),
        "temperature": options.get("temperature", 1.0),
        "top_p": options.get("top_p", 1.0),
        "tools": tools_raw or [],
        "text": text if text and text.get("format") else {"format": {"type": "text"}},
        "reasoning": {"effort": effort, "summary": None} if effort is not None else None,
    }
    return ResponsesCall(request, echo)


# ---------------------------------------------------------------------------- output


def response_id() -> str:
    return f"resp_{random.randrange(10**9)}"


def _usage(final: Final | None) -> JSONObject | None:
    if final is None:
        return None
    prompt, completion = final.stats.prompt_eval_count, final.stats.eval_count
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


class ResponseBuilder:
    """Builds the Response object and its output items, stream or not, with stable ids."""

    def __init__(self, call: ResponsesCall, *, model: str, id: str | None = None) -> None:
        self.call = call
        self.model = model
        self.id = id or response_id()
        self.created_at = int(time.time())
        self.output: list[JSONObject] = []
        self._seq = 0

    def response(self, status: str, final: Final | None = None, error: JSONObject | None = None) -> JSONObject:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": None,
            "model": self.model,
            "output": [dict(item) for item in self.output],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "tool_choice": "auto",
            "truncation": "disabled",
            "metadata": {},
            "store": False,
            **self.call.echo,
            "usage": _usage(final),
        }

    # item factories --------------------------------------------------------

    def reasoning_item(self, text: str) -> JSONObject:
        return {
            "id": f"rs_{self.id[5:]}_{len(self.output)}",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}] if text else [],
            "encrypted_content": text,
        }

    def message_item(self, text: str, status: str = "completed") -> JSONObject:
        return {
            "id": f"msg_{self.id[5:]}_{len(self.output)}",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [_output_text(text)] if status == "completed" else [],
        }

    def call_item(self, call: ToolCall, status: str = "completed") -> JSONObject:
        return {
            "id": f"fc_{self.id[5:]}_{len(self.output)}",
            "type": "function_call",
            "status": status,
            "call_id": call.id,
            "name": call.function.name,
            "arguments": _arguments(call) if status == "completed" else "",
        }

    def complete(self, final: Final) -> JSONObject:
        """A collected chat answer → the whole Response (non-stream)."""
        whole = final.tail
        if whole.thinking:
            self.output.append(self.reasoning_item(whole.thinking))
        calls = whole.tool_calls
        if whole.content or not calls:
            self.output.append(self.message_item(whole.content))
        for call in calls:
            self.output.append(self.call_item(call))
        return self.response("completed", final)


def _arguments(call: ToolCall) -> str:
    return arguments_json(dict(call.function.arguments))


def _output_text(text: str) -> JSONObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class ResponsesStream(ResponseBuilder):
    """Chat events → Responses streaming events `(type, data)` (Ollama's `openai/responses.go` `ResponsesStreamConverter.Process`)."""

    def __init__(self, call: ResponsesCall, *, model: str, id: str | None = None) -> None:
        super().__init__(call, model=model, id=id)
        self._reasoning: int | None = None  # output index of the open reasoning item
        self._message: int | None = None  # output index of the open message item
        self._thinking: list[str] = []
        self._text: list[str] = []

    def _event(self, kind: str, **data: Any) -> tuple[str, JSONObject]:
        event = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        return kind, event

    def start(self) -> list[tuple[str, JSONObject]]:
        snapshot = self.response("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, event: Event) -> list[tuple[str, JSONObject]]:
        out: list[tuple[str, JSONObject]] = []
        piece, final = output(event)
        thinking, content, calls = piece.thinking, piece.content, piece.tool_calls
        if thinking:
            if self._reasoning is None:
                self._reasoning = len(self.output)
                item = self.reasoning_item("")
                self.output.append(item)
                out.append(self._event("response.output_item.added", output_index=self._reasoning, item=dict(item)))
                out.append(
                    self._event(
                        "response.reasoning_summary_part.added",
                        item_id=item["id"],
                        output_index=self._reasoning,
                        summary_index=0,
                        part={"type": "summary_text", "text": ""},
                    )
                )
            self._thinking.append(thinking)
            out.append(
                self._event(
                    "response.reasoning_summary_text.delta",
                    item_id=self.output[self._reasoning]["id"],
                    output_index=self._reasoning,
                    summary_index=0,
                    delta=thinking,
                )
            )
        if content or calls:
            out += self._close_reasoning()
        if content:
            if self._message is None:
                self._message = len(self.output)
                item = self.message_item("", status="in_progress")
                self.output.append(item)
                out.append(
                    self._event("response.output_item.added", output_index=self._message, item=dict(item, content=[]))
                )
                out.append(
                    self._event(
                        "response.content_part.added",
                        item_id=item["id"],
                        output_index=self._message,
                        content_index=0,
                        part=_output_text(""),
                    )
                )
            self._text.append(content)
            out.append(
                self._event(
                    "response.output_text.delta",
                    item_id=self.output[self._message]["id"],
                    output_index=self._message,
                    content_index=0,
                    delta=content,
                    logprobs=[],
                )
            )
        for call in calls:
            index = len(self.output)
            item = self.call_item(call, status="in_progress")
            self.output.append(item)
            out.append(self._event("response.output_item.added", output_index=index, item=dict(item)))
            arguments = _arguments(call)
            out.append(
                self._event(
                    "response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=arguments
                )
            )
            out.append(
                self._event(
                    "response.function_call_arguments.done", item_id=item["id"], output_index=index, arguments=arguments
                )
            )
            item.update(status="completed", arguments=arguments)
            out.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        if final is not None:
            out += self._close_reasoning()
            out += self._close_message()
            if not self.output:  # an empty answer is still one (empty) message
                self.output.append(self.message_item(""))
            # how much of the prompt did not fit, beside the response (as a chat stream's finishing chunk)
            out.append(
                self._event("response.completed", response=self.response("completed", final), **truncation(final))
            )
        return out

    def _close_reasoning(self) -> list[tuple[str, JSONObject]]:
        if self._reasoning is None:
            return []
        index, self._reasoning = self._reasoning, None
        text = "".join(self._thinking)
        item = self.output[index]
        item.update(summary=[{"type": "summary_text", "text": text}], encrypted_content=text)
        return [
            self._event(
                "response.reasoning_summary_text.done",
                item_id=item["id"],
                output_index=index,
                summary_index=0,
                text=text,
            ),
            self._event(
                "response.reasoning_summary_part.done",
                item_id=item["id"],
                output_index=index,
                summary_index=0,
                part={"type": "summary_text", "text": text},
            ),
            self._event("response.output_item.done", output_index=index, item=dict(item)),
        ]

    def _close_message(self) -> list[tuple[str, JSONObject]]:
        if self._message is None:
            return []
        index, self._message = self._message, None
        text = "".join(self._text)
        item = self.output[index]
        item.update(status="completed", content=[_output_text(text)])
        return [
            self._event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._event(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=_output_text(text),
            ),
            self._event("response.output_item.done", output_index=index, item=dict(item)),
        ]

    def failed(self, exc: PollamaError) -> tuple[str, JSONObject]:
        error = {"code": "server_error" if exc.status >= 500 else "invalid_request", "message": exc.message}
        return self._event("response.failed", response=self.response("failed", error=error))
