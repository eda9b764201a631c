"""The values a Go template sees, shaped like Ollama's typed Go data.

gotpl renders plain dicts well, but Ollama executes templates over Go
structs and typed collections, and a template can tell the difference:

* a struct has a fixed set of fields, each with a zero value (`.Thinking` on
  a message without thinking is "", `.ToolCalls` is an empty slice), and
  asking for a field it does not have is an execution error;
* `templateTools`, `templateArgs`, `templateProperties`, `PropertyType` have
  `String()` methods, so printing them gives JSON (or `string`), not Go's
  `map[…]`/`[…]` notation;
* a property map answers a missing key with an empty property, not nil.

Each class here reproduces one of those Go types. `__go_string__` is the
`String()` method (honoured by the printing patch in `gotemplate.py`),
`__go_format__` serves `printf`, `__go_json__` gives `json`'s shape and
`__gotemplate_lookup__` is gotpl's field-access hook.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from gotpl.errors import TemplateExecutionError

from server.prompt.gojson import GoJSONError, OrderedJSONMap, RawJSON, go_float, go_json
from server.prompt.types import Message, Tool, ToolCall, ToolProperty


def go_print(value: Any, nested: bool = False) -> str:
    """fmt's `%v` for template values (nested = inside a struct/slice/map)."""
    hook = getattr(type(value), "__go_string__", None)
    if hook is not None:
        return hook(value)
    if value is None:
        return "<nil>" if nested else "<no value>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_v_float(value)
    if isinstance(value, (bytes, bytearray)):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, Mapping):
        keys = sorted(value, key=str)
        return "map[" + " ".join(f"{go_print(k, True)}:{go_print(value[k], True)}" for k in keys) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_print(v, True) for v in value) + "]"
    return str(value)


def _go_v_float(value: float) -> str:
    # %v on float64: shortest digits, exponent form when exp < -4 or >= 21.
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return go_float(value)
    exponent = int(f"{abs(value):e}".split("e")[1])
    if -4 <= exponent < 21:
        return go_float(value)
    mantissa, _, exp = repr(value).partition("e")
    if not exp:
        mantissa, _, exp = f"{value:e}".partition("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
    sign = "-" if exp.startswith("-") else "+"
    return f"{mantissa}e{sign}{exp.lstrip('+-').rjust(2, '0')}"


def _safe_json(value: Any) -> str:
    try:
        return go_json(value)
    except GoJSONError:
        return ""


class _Stringer:
    """Printing through `String()`, with `printf` `%v`/`%s` agreeing."""

    __slots__ = ()

    def __go_string__(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __go_format__(self, spec: Any) -> str:
        if spec.verb in ("v", "s"):
            text = self.__go_string__()
            if spec.width is not None and len(text) < spec.width:
                text = text.ljust(spec.width) if "-" in spec.flags else text.rjust(spec.width)
            return text
        return f"%!{spec.verb}({self.__go_string__()})"

    def __str__(self) -> str:
        return self.__go_string__()


class GoStruct(_Stringer):
    """A Go struct: fixed fields, unknown field → execution error."""

    __slots__ = ()
    go_type: ClassVar[str] = "struct"
    go_fields: ClassVar[tuple[str, ...]] = ()
    pointer: ClassVar[bool] = False

    def __gotemplate_lookup__(self, name: str) -> Any:
        if name in self.go_fields:
            return getattr(self, name)
        raise TemplateExecutionError(f"can't evaluate field {name} in type {self.go_type}")

    def __go_string__(self) -> str:
        body = "{" + " ".join(go_print(getattr(self, f), True) for f in self.go_fields) + "}"
        return "&" + body if self.pointer else body


class JSONSlice(list, _Stringer):  # type: ignore[type-arg]
    """A slice type with a JSON `String()` (Ollama's `templateTools`).

    `nil` distinguishes Go's nil slice (prints `null`) from an empty one.
    """

    nil: bool = False

    def __go_string__(self) -> str:
        return "null" if self.nil and not self else _safe_json(list(self))

    def __go_json__(self) -> Any:
        return None if self.nil and not self else list(self)

    def __getitem__(self, index: Any) -> Any:  # slicing keeps the Go type
        result = list.__getitem__(self, index)
        return JSONSlice(result) if isinstance(index, slice) else result

    __str__ = __go_string__


class JSONMap(dict, _Stringer):  # type: ignore[type-arg]
    """A map type with a JSON `String()` (`templateArgs`, `templateProperties`).

    `zero` (or `zero_factory()`) is what a missing key yields (Go's zero
    value of the element type); `nil` marks Go's nil map (`String()` is "{}", JSON is `null`).
    """

    zero: Any = None
    zero_factory: Any = None
    nil: bool = False

    def __gotemplate_lookup__(self, name: str) -> Any:
        if name in self:
            return self[name]
        return self.zero_factory() if self.zero_factory is not None else self.zero

    def __go_string__(self) -> str:
        return "{}" if self.nil and not self else _safe_json(dict(self))

    def __go_json__(self) -> Any:
        return None if self.nil and not self else dict(self)

    __str__ = __go_string__


class PropertyType(list, _Stringer):  # type: ignore[type-arg]
    """`api.PropertyType`: one type prints as itself, several as `[a b]`."""

    def __go_string__(self) -> str:
        if not self:
            return ""
        if len(self) == 1:
            return str(self[0])
        return "[" + " ".join(self) + "]"

    def __go_json__(self) -> Any:
        return RawJSON(go_json(self[0])) if len(self) == 1 else list(self)

    __str__ = __go_string__


# ------------------------------------------------------------------ messages


class TemplateToolCallFunction(GoStruct):
    __slots__ = ("Index", "Name", "Arguments")
    go_type = "template.templateToolCallFunction"
    go_fields = ("Index", "Name", "Arguments")

    def __init__(self, index: int, name: str, arguments: JSONMap) -> None:
        self.Index = index
        self.Name = name
        self.Arguments = arguments

    def __go_json__(self) -> Any:
        return OrderedJSONMap(Index=self.Index, Name=self.Name, Arguments=self.Arguments)


class TemplateToolCall(GoStruct):
    __slots__ = ("ID", "Function")
    go_type = "template.templateToolCall"
    go_fields = ("ID", "Function")

    def __init__(self, call: ToolCall) -> None:
        self.ID = call.id
        arguments = JSONMap(call.function.arguments)
        self.Function = TemplateToolCallFunction(call.function.index, call.function.name, arguments)

    def __go_json__(self) -> Any:
        return OrderedJSONMap(ID=self.ID, Function=self.Function)


class TemplateMessage(GoStruct):
    """`*template.templateMessage`: what `range .Messages` yields."""

    __slots__ = ("Role", "Content", "Thinking", "Images", "ToolCalls", "ToolName", "ToolCallID")
    go_type = "*template.templateMessage"
    go_fields = ("Role", "Content", "Thinking", "Images", "ToolCalls", "ToolName", "ToolCallID")
    pointer = True

    def __init__(self, message: Message) -> None:
        self.Role = message.role
        self.Content = message.content
        self.Thinking = message.thinking
        self.Images = [i if isinstance(i, bytes) else i.encode() for i in message.images]
        self.ToolCalls = [TemplateToolCall(c) for c in message.tool_calls]
        self.ToolName = message.tool_name
        self.ToolCallID = message.tool_call_id

    def __go_json__(self) -> Any:
        return OrderedJSONMap(
            Role=self.Role,
            Content=self.Content,
            Thinking=self.Thinking,
            Images=self.Images or None,
            ToolCalls=self.ToolCalls or None,
            ToolName=self.ToolName,
            ToolCallID=self.ToolCallID,
        )


# --------------------------------------------------------------------- tools


class TemplateProperty(GoStruct):
    """`api.ToolProperty` (a value, so a missing map key yields an empty one)."""

    __slots__ = ("AnyOf", "Type", "Items", "Description", "Enum", "Properties", "Required", "source")
    go_type = "api.ToolProperty"
    go_fields = ("AnyOf", "Type", "Items", "Description", "Enum", "Properties", "Required")

    def __init__(self, prop: ToolProperty | None = None) -> None:
        prop = prop or ToolProperty()
        self.source = prop
        self.AnyOf = [TemplateProperty(p) for p in prop.any_of]
        self.Type = PropertyType(prop.type)
        self.Items = prop.items
        self.Description = prop.description
        self.Enum = list(prop.enum) if prop.enum is not None else []
        self.Properties = _property_map(prop.properties, ordered=True)
        self.Required = list(prop.required) if prop.required is not None else []

    def __go_json__(self) -> Any:
        out = OrderedJSONMap()
        if self.AnyOf:
            out["anyOf"] = self.AnyOf
        if self.Type:
            out["type"] = self.Type
        if self.Items is not None:
            out["items"] = self.Items
        if self.Description:
            out["description"] = self.Description
        if self.Enum:
            out["enum"] = self.Enum
        if self.Properties is not None and not self.Properties.nil:
            out["properties"] = self.Properties
        if self.Required:
            out["required"] = self.Required
        return out

    def typescript_type(self) -> str:
        """`ToolProperty.ToTypeScriptType` (the `toTypeScriptType` function)."""
        if self.AnyOf:
            return " | ".join(p.typescript_type() for p in self.AnyOf)
        if not self.Type:
            return "any"
        return " | ".join(_TS_TYPES.get(t, "any") for t in self.Type)


_TS_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}


class _OrderedPropertyMap(JSONMap):
    """A nested `*ToolPropertiesMap`: JSON keeps the schema's key order."""

    def __go_json__(self) -> Any:
        return None if self.nil and not self else OrderedJSONMap(self)

    def __go_string__(self) -> str:
        return "{}" if self.nil and not self else _safe_json(self.__go_json__())


def _property_map(props: dict[str, ToolProperty] | None, ordered: bool = False) -> JSONMap:
    cls = _OrderedPropertyMap if ordered else JSONMap
    result = cls({k: TemplateProperty(v) for k, v in (props or {}).items()})
    result.zero_factory = TemplateProperty
    result.nil = props is None
    return result


class TemplateToolParameters(GoStruct):
    __slots__ = ("Type", "Defs", "Items", "Required", "Properties")
    go_type = "template.templateToolFunctionParameters"
    go_fields = ("Type", "Defs", "Items", "Required", "Properties")

    def __init__(self, tool: Tool) -> None:
        params = tool.function.parameters
        self.Type = params.type
        self.Defs = params.defs
        self.Items = params.items
        self.Required = list(params.required) if params.required is not None else []
        self.Properties = _property_map(params.properties)

    def __go_json__(self) -> Any:
        out = OrderedJSONMap(type=self.Type)
        if self.Defs is not None:
            out["$defs"] = self.Defs
        if self.Items is not None:
            out["items"] = self.Items
        if self.Required:
            out["required"] = self.Required
        out["properties"] = self.Properties
        return out


class TemplateToolFunction(GoStruct):
    """Prints as JSON: Ollama's `api.ToolFunction` had a JSON `String()`."""

    __slots__ = ("Name", "Description", "Parameters")
    go_type = "template.templateToolFunction"
    go_fields = ("Name", "Description", "Parameters")

    def __init__(self, tool: Tool) -> None:
        self.Name = tool.function.name
        self.Description = tool.function.description
        self.Parameters = TemplateToolParameters(tool)

    def __go_json__(self) -> Any:
        return OrderedJSONMap(name=self.Name, description=self.Description, parameters=self.Parameters)

    def __go_string__(self) -> str:
        return _safe_json(self)


class TemplateTool(GoStruct):
    """Prints as JSON, as `api.Tool` did through its `String()`."""

    __slots__ = ("Type", "Items", "Function")
    go_type = "template.templateTool"
    go_fields = ("Type", "Items", "Function")

    def __init__(self, tool: Tool) -> None:
        self.Type = tool.type
        self.Items = tool.items
        self.Function = TemplateToolFunction(tool)

    def __go_json__(self) -> Any:
        out = OrderedJSONMap(type=self.Type)
        if self.Items is not None:
            out["items"] = self.Items
        out["function"] = self.Function
        return out

    def __go_string__(self) -> str:
        return _safe_json(self)


def template_tools(tools: Iterable[Tool] | None) -> JSONSlice:
    """`convertToolsForTemplate`: None becomes Go's nil slice."""
    result = JSONSlice(TemplateTool(t) for t in (tools or ()))
    result.nil = tools is None
    return result


def template_messages(messages: Iterable[Message]) -> list[TemplateMessage]:
    return [TemplateMessage(m) for m in messages]
