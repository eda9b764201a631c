"""Decoding request messages and tools like Ollama's Go structs."""

from __future__ import annotations

import pytest

from server.prompt import InvalidMessage, InvalidTool, Message, Tool, ToolCall


def test_message_decoding() -> None:
    m = Message.from_dict(
        {
            "role": "Assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}],
            "extra": 1,
        }
    )
    assert m.role == "assistant" and m.content == ""
    assert m.tool_calls[0].function.arguments == {"a": 1}
    assert m.to_dict() == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"index": 0, "name": "f", "arguments": {"a": 1}}}],
    }


@pytest.mark.parametrize(
    "bad",
    [
        "x",
        {"role": "user", "content": 2},
        {"role": "user", "images": "abc"},
        {"role": "user", "tool_calls": [{"function": {"arguments": [1]}}]},
    ],
)
def test_bad_messages(bad: object) -> None:
    with pytest.raises(InvalidMessage) as info:
        Message.from_dict(bad)
    assert info.value.status == 400


def test_tool_decoding_keeps_known_keys() -> None:
    tool = Tool.from_dict(
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {"x": {"type": ["a", "b"], "minimum": 1}}},
            },
        }
    )
    assert tool.name == "f"
    assert tool.function.parameters.properties is not None
    assert tool.function.parameters.properties["x"].type == ("a", "b")


@pytest.mark.parametrize(
    "bad",
    [
        "tool",
        {"type": "function", "function": "f"},
        {"type": "function", "function": {"name": "f", "parameters": "string"}},
        {"type": "function", "function": {"name": "f", "parameters": {"properties": []}}},
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {"x": 1}}}},
        {"type": "function", "function": {"name": "f", "parameters": {"required": "x"}}},
    ],
)
def test_bad_tools(bad: object) -> None:
    with pytest.raises(InvalidTool) as info:
        Tool.from_dict(bad)
    assert info.value.status == 400


def test_tool_call_wire_shape() -> None:
    call = ToolCall.from_dict({"id": "call_1", "function": {"name": "f", "arguments": {"b": 1, "a": 2}}})
    assert list(call.to_dict()["function"]["arguments"]) == ["b", "a"]
    assert call.to_dict()["id"] == "call_1"
