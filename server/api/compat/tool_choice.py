"""`tool_choice` of the OpenAI, Responses and Anthropic APIs → `ToolChoice`.

Each API's own shapes and error wording; what they mean is decided in
`server/inference/tool_choice.py`. A forced choice without tools, or one
naming a function the request does not define, is a 400 here rather than a
grammar that can never be satisfied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from server.api.http import dumps
from server.errors import BadRequest
from server.inference.tool_choice import AUTO, NONE, REQUIRED, ToolChoice


def _tool_names(tools: Sequence[Any] | None) -> list[str]:
    names = []
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def _checked(choice: ToolChoice, tools: Sequence[Any] | None, field: str) -> ToolChoice:
    if not choice.forces_call:
        return choice
    names = _tool_names(tools)
    if not names:
        raise BadRequest(f"Invalid value for '{field}': a required tool call needs 'tools' to be specified.")
    if choice.name is not None and choice.name not in names:
        raise BadRequest(
            f"Invalid value for '{field}': function '{choice.name}' is not among the request's tools ({', '.join(names)})."
        )
    return choice


def _shown(value: Any) -> str:
    try:
        return dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _named(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Invalid value for '{field}': the function name must be a non-empty string.")
    return value


def _openai_family(
    value: Any, tools: Sequence[Any] | None, named: Callable[[Mapping[str, Any]], str], shape: str
) -> ToolChoice:
    """The OpenAI APIs' "auto" | "none" | "required" | a named function (`named` reads its name)."""
    field = "tool_choice"
    if value is None or value == "auto":
        return AUTO
    if value == "none":
        return NONE
    if value == "required":
        return _checked(REQUIRED, tools, field)
    if isinstance(value, Mapping) and value.get("type") == "function":
        return _checked(ToolChoice("required", named(value)), tools, field)
    raise BadRequest(
        f"Invalid value for '{field}': {_shown(value)}. Supported values: 'none', 'auto', 'required' or {shape}."
    )


def _chat_function_name(value: Mapping[str, Any]) -> str:
    function = value.get("function")
    if not isinstance(function, Mapping):
        raise BadRequest("Invalid value for 'tool_choice': 'function' must be an object with a 'name'.")
    return _named(function.get("name"), "tool_choice")


def openai_tool_choice(value: Any, tools: Sequence[Any] | None) -> ToolChoice:
    """Chat Completions: "auto" | "none" | "required" | {"type": "function", "function": {"name": …}}."""
    return _openai_family(value, tools, _chat_function_name, '{"type": "function", "function": {"name": ...}}')


def responses_tool_choice(value: Any, tools: Sequence[Any] | None) -> ToolChoice:
    """Responses API: "auto" | "none" | "required" | {"type": "function", "name": …}."""
    return _openai_family(
        value, tools, lambda v: _named(v.get("name"), "tool_choice"), '{"type": "function", "name": ...}'
    )


def anthropic_tool_choice(value: Any, tools: Sequence[Any] | None) -> ToolChoice:
    """Messages API: {"type": "auto" | "any" | "none"} or {"type": "tool", "name": …}."""
    field = "tool_choice"
    if value is None:
        return AUTO
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "auto":
        return AUTO
    if kind == "none":
        return NONE
    if kind == "any":
        return _checked(REQUIRED, tools, field)
    if kind == "tool":
        return _checked(ToolChoice("required", _named(value.get("name"), field)), tools, field)
    raise BadRequest(
        f"{field}: Input tag {_shown(kind if kind is not None else value)} found using 'type' does not match "
        "any of the expected tags: 'auto', 'any', 'tool', 'none'"
    )
