"""Rendering a GGUF's own Jinja chat template (`tokenizer.chat_template`).

Used when a model has no Go template and its Jinja template matched none of
the bundled ones. The environment is the one Hugging Face's
`apply_chat_template` gives a template (the de-facto contract these
templates are written against): a sandbox (a template is untrusted model
data), `trim_blocks`/`lstrip_blocks`, loop controls, `raise_exception`,
`strftime_now`, and a `tojson` that does not HTML-escape and keeps key order.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from server.prompt.errors import TemplateParseError, TemplateRenderError
from server.prompt.types import Message, Tool, to_messages, to_tools


class _TemplateRaised(Exception):
    """`raise_exception(...)` called by the template itself."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return _dt.datetime.now().strftime(fmt)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=64)
def _compile(text: str) -> jinja2.Template:
    try:
        return _environment().from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateParseError(f"jinja template: line {exc.lineno}: {exc.message}", line=exc.lineno) from exc
    except Exception as exc:
        raise TemplateParseError(f"jinja template: {exc}") from exc


def jinja_capabilities(chat_template: str) -> frozenset[str]:
    """Ollama's `server/images.go` `chatTemplateCapabilities` for native Jinja templates: mentions of tools / think tags."""
    caps = set()
    if "tools" in chat_template or "tool_call" in chat_template:
        caps.add("tools")
    if "<think>" in chat_template and "</think>" in chat_template:
        caps.add("thinking")
    return frozenset(caps)


def _message_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.thinking:
        out["reasoning_content"] = message.thinking
        out["thinking"] = message.thinking
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": dict(call.function.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_name:
        out["name"] = message.tool_name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def _tool_dict(tool: Tool) -> dict[str, Any]:
    params = tool.function.parameters
    parameters: dict[str, Any] = {"type": params.type or "object"}
    if params.properties is not None:
        parameters["properties"] = {k: _property_dict(v) for k, v in params.properties.items()}
    if params.required is not None:
        parameters["required"] = list(params.required)
    if params.defs is not None:
        parameters["$defs"] = params.defs
    function: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description:
        function["description"] = tool.function.description
    function["parameters"] = parameters
    return {"type": tool.type or "function", "function": function}


def _property_dict(prop: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if prop.any_of:
        out["anyOf"] = [_property_dict(p) for p in prop.any_of]
    if prop.type:
        out["type"] = prop.type[0] if len(prop.type) == 1 else list(prop.type)
    if prop.items is not None:
        out["items"] = prop.items
    if prop.description:
        out["description"] = prop.description
    if prop.enum is not None:
        out["enum"] = list(prop.enum)
    if prop.properties is not None:
        out["properties"] = {k: _property_dict(v) for k, v in prop.properties.items()}
    if prop.required is not None:
        out["required"] = list(prop.required)
    return out


def render_jinja(
    chat_template: str,
    messages: Iterable[Message | Mapping[str, Any]],
    *,
    tools: Sequence[Tool | Mapping[str, Any]] | None = None,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    think: bool | str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render a GGUF Jinja chat template the way `apply_chat_template` does.

    Messages arrive in OpenAI shape (tool calls with `type: function`,
    `tool_call_id`). Any failure, including the template's own
    `raise_exception`, is a `TemplateRenderError`.
    """
    template = _compile(chat_template)
    msgs = [_message_dict(m) for m in to_messages(messages)]
    typed_tools = to_tools(tools)
    context: dict[str, Any] = {
        "messages": msgs,
        "tools": [_tool_dict(t) for t in typed_tools] if typed_tools else None,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
    }
    if think is not None:
        context["enable_thinking"] = bool(think)
        if isinstance(think, str):
            context["reasoning_effort"] = think
    if extra:
        context.update(extra)
    try:
        return template.render(context)
    except _TemplateRaised as exc:
        raise TemplateRenderError(f"jinja template: {exc}") from exc
    except RecursionError as exc:
        raise TemplateRenderError("jinja template: execution too deeply nested") from exc
    except Exception as exc:
        raise TemplateRenderError(f"jinja template: {exc}") from exc


class JinjaTemplate:
    """A GGUF Jinja chat template used as a model's template (Ollama's `server/images.go` `selectedTemplateSource`: last resort
    before `{{ .Prompt }}`), with the same facts a `ChatTemplate` offers."""

    __slots__ = ("text", "bos_token", "eos_token")

    def __init__(self, text: str, *, bos_token: str = "", eos_token: str = "") -> None:
        _compile(text)  # refuse a template that does not parse, early
        self.text = text
        self.bos_token = bos_token
        self.eos_token = eos_token

    @property
    def uses_messages(self) -> bool:
        return True

    @property
    def capabilities(self) -> frozenset[str]:
        return jinja_capabilities(self.text)

    @property
    def tool_call_tag(self) -> str:
        return "<tool_call>" if "<tool_call>" in self.text else "{"

    @property
    def thinking_tags(self) -> tuple[str, str] | None:
        return ("<think>", "</think>") if "thinking" in self.capabilities else None

    def render(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        *,
        tools: Sequence[Tool | Mapping[str, Any]] | None = None,
        think: bool | str | None = None,
    ) -> str:
        return render_jinja(
            self.text,
            messages,
            tools=tools,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            think=think,
        )
