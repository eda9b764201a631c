"""The prompt layer's vocabulary: messages, tool calls and tool definitions.

Requests arrive as JSON; `Message.from_dict` and `Tool.from_dict` decode them
with the same tolerance and the same refusals as Ollama's Go structs (role
lower-cased, unknown keys ignored, a tool schema that is not an object
refused with 400), so everything after this point works on typed values.
Frozen dataclasses: a message is never edited in place, a new one is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from server import strictjson
from server.jsontypes import JSONObject
from server.prompt.errors import InvalidMessage, InvalidTool
from server.prompt.gojson import clean_text


@dataclass(frozen=True, slots=True)
class ToolCallFunction:
    """The function half of a tool call; `arguments` keeps the model's key order."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    index: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call a model asked for (`id` is `call_…` in chat, "" when unknown)."""

    function: ToolCallFunction
    id: str = ""
    # The exact model text this call was parsed from (tag, JSON, closing
    # markup). Empty for calls that came in a request. Lets a caller account
    # for every character the model wrote.
    raw: str = field(default="", compare=False)

    def to_dict(self) -> JSONObject:
        """The wire shape of Ollama's `api/types.go` `ToolCall`: `index` always present, `id` only when set."""
        out: JSONObject = {}
        if self.id:
            out["id"] = self.id
        out["function"] = {
            "index": self.function.index,
            "name": self.function.name,
            "arguments": dict(self.function.arguments),
        }
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ToolCall:
        if not isinstance(data, Mapping):
            raise InvalidMessage("invalid tool call: expected an object")
        function = data.get("function") or {}
        if not isinstance(function, Mapping):
            raise InvalidMessage("invalid tool call: function must be an object")
        name = function.get("name", "")
        if not isinstance(name, str):
            raise InvalidMessage("invalid tool call: name must be a string")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = {}
        if isinstance(arguments, str):
            # OpenAI sends arguments as a JSON string; Ollama's compat layer
            # decodes it before the template ever sees it.
            try:
                arguments = strictjson.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                raise InvalidMessage(f"invalid tool call arguments: {exc}") from exc
        if not isinstance(arguments, Mapping):
            raise InvalidMessage("invalid tool call: arguments must be an object")
        index = function.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, (int, float)):
            index = 0
        call_id = data.get("id") or ""
        if not isinstance(call_id, str):
            raise InvalidMessage("invalid tool call: id must be a string")
        return cls(
            function=ToolCallFunction(name=name, arguments=dict(arguments), index=int(index)),
            id=call_id,
        )


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message as the template sees it (Ollama's `api/types.go` `Message`)."""

    role: str
    content: str = ""
    thinking: str = ""
    images: tuple[bytes | str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_name: str = ""
    tool_call_id: str = ""

    def with_content(self, content: str) -> Message:
        return replace(self, content=content)

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"role": self.role, "content": self.content}
        if self.thinking:
            out["thinking"] = self.thinking
        if self.images:
            out["images"] = list(self.images)
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_name:
            out["tool_name"] = self.tool_name
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Message:
        """Decode a request message; any role is accepted and lower-cased."""
        if isinstance(data, Message):
            return data
        if not isinstance(data, Mapping):
            raise InvalidMessage("invalid message: expected an object")
        role = _text(data.get("role"), "role")
        content = _text(data.get("content"), "content")
        thinking = _text(data.get("thinking"), "thinking")
        images_raw = data.get("images") or ()
        if not isinstance(images_raw, (list, tuple)):
            raise InvalidMessage("invalid message: images must be an array")
        images: list[bytes | str] = []
        for image in images_raw:
            if not isinstance(image, (bytes, bytearray, str)):
                raise InvalidMessage("invalid message: images must be base64 strings")
            images.append(bytes(image) if isinstance(image, bytearray) else image)
        calls_raw = data.get("tool_calls") or ()
        if not isinstance(calls_raw, (list, tuple)):
            raise InvalidMessage("invalid message: tool_calls must be an array")
        return cls(
            role=role.lower(),
            content=content,
            thinking=thinking,
            images=tuple(images),
            tool_calls=tuple(ToolCall.from_dict(c) for c in calls_raw),
            tool_name=_text(data.get("tool_name"), "tool_name"),
            tool_call_id=_text(data.get("tool_call_id"), "tool_call_id"),
        )


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise InvalidMessage(f"invalid message: {name} must be a string, not {type(value).__name__}")
    return clean_text(value)


def to_messages(messages: Iterable[Message | Mapping[str, Any]]) -> list[Message]:
    """Accept typed messages or request dicts alike."""
    return [m if isinstance(m, Message) else Message.from_dict(m) for m in messages]


# --------------------------------------------------------------------- tools


@dataclass(frozen=True, slots=True)
class ToolProperty:
    """One JSON-schema property as Ollama's `api.ToolProperty` keeps it.

    Only the keys Go decodes survive (anyOf, type, items, description, enum,
    properties, required); others (`default`, `minimum`…) are dropped, and so
    never reach the prompt, exactly as in Ollama.
    """

    any_of: tuple[ToolProperty, ...] = ()
    type: tuple[str, ...] = ()
    items: Any = None
    description: str = ""
    enum: tuple[Any, ...] | None = None
    properties: dict[str, ToolProperty] | None = None
    required: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ToolProperty:
        if not isinstance(data, Mapping):
            raise InvalidTool(f"invalid tool: property {where} must be an object")
        raw_type = data.get("type")
        if raw_type is None:
            types: tuple[str, ...] = ()
        elif isinstance(raw_type, str):
            types = (raw_type,)
        elif isinstance(raw_type, (list, tuple)) and all(isinstance(t, str) for t in raw_type):
            types = tuple(raw_type)
        else:
            raise InvalidTool(f"invalid tool: type of property {where} must be a string or array of strings")
        any_of_raw = data.get("anyOf") or ()
        if not isinstance(any_of_raw, (list, tuple)):
            raise InvalidTool(f"invalid tool: anyOf of property {where} must be an array")
        description = data.get("description") or ""
        if not isinstance(description, str):
            raise InvalidTool(f"invalid tool: description of property {where} must be a string")
        enum = data.get("enum")
        if enum is not None and not isinstance(enum, (list, tuple)):
            raise InvalidTool(f"invalid tool: enum of property {where} must be an array")
        return cls(
            any_of=tuple(cls.from_dict(p, where) for p in any_of_raw),
            type=types,
            items=data.get("items"),
            description=description,
            enum=tuple(enum) if enum is not None else None,
            properties=_properties(data.get("properties"), where) if data.get("properties") is not None else None,
            required=_strings(data.get("required"), f"required of property {where}"),
        )


def _properties(data: Any, where: str) -> dict[str, ToolProperty]:
    if not isinstance(data, Mapping):
        raise InvalidTool(f"invalid tool: properties of {where} must be an object")
    return {str(k): ToolProperty.from_dict(v, str(k)) for k, v in data.items()}


def _strings(data: Any, what: str) -> tuple[str, ...] | None:
    if data is None:
        return None
    if not isinstance(data, (list, tuple)) or not all(isinstance(s, str) for s in data):
        raise InvalidTool(f"invalid tool: {what} must be an array of strings")
    return tuple(data)


@dataclass(frozen=True, slots=True)
class ToolParameters:
    type: str = ""
    defs: Any = None
    items: Any = None
    required: tuple[str, ...] | None = None
    properties: dict[str, ToolProperty] | None = None


@dataclass(frozen=True, slots=True)
class ToolFunction:
    name: str
    description: str = ""
    parameters: ToolParameters = field(default_factory=ToolParameters)


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool definition from a request (Ollama's `api/types.go` `Tool`)."""

    function: ToolFunction
    type: str = "function"
    items: Any = None

    @property
    def name(self) -> str:
        return self.function.name

    @classmethod
    def from_dict(cls, data: Any) -> Tool:
        """Decode one tool; a schema that is not an object is a 400."""
        if isinstance(data, Tool):
            return data
        if not isinstance(data, Mapping):
            raise InvalidTool("invalid tool: expected an object")
        tool_type = data.get("type") or ""
        if not isinstance(tool_type, str):
            raise InvalidTool("invalid tool: type must be a string")
        function = data.get("function")
        if function is None:
            function = {}
        if not isinstance(function, Mapping):
            raise InvalidTool("invalid tool: function must be an object")
        name = function.get("name") or ""
        if not isinstance(name, str):
            raise InvalidTool("invalid tool: function name must be a string")
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise InvalidTool("invalid tool: function description must be a string")
        params = function.get("parameters")
        if params is None:
            parameters = ToolParameters()
        elif not isinstance(params, Mapping):
            raise InvalidTool(f"invalid tool {name!r}: parameters must be a JSON schema object")
        else:
            ptype = params.get("type") or ""
            if not isinstance(ptype, str):
                raise InvalidTool(f"invalid tool {name!r}: parameters type must be a string")
            props = params.get("properties")
            parameters = ToolParameters(
                type=ptype,
                defs=params.get("$defs"),
                items=params.get("items"),
                required=_strings(params.get("required"), f"required of tool {name!r}"),
                properties=_properties(props, f"tool {name!r}") if props is not None else None,
            )
        return cls(
            function=ToolFunction(name=name, description=description, parameters=parameters),
            type=tool_type,
            items=data.get("items"),
        )


def to_tools(tools: Sequence[Tool | Mapping[str, Any]] | None) -> list[Tool] | None:
    """Decode a request's `tools`; None stays None (Go's nil slice)."""
    if tools is None:
        return None
    if not isinstance(tools, (list, tuple)):
        raise InvalidTool("invalid tools: expected an array")
    return [Tool.from_dict(t) for t in tools]
