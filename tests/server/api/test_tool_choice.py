"""`tool_choice` through the OpenAI, Responses and Anthropic SDKs, against a live server.

Ollama ignores `tool_choice`; pollama honours it. The tiny models have
random weights, so nothing but the grammar makes them write a call: a reply
that comes back as a well-formed call of the right tool, with arguments the
tool's schema allows, shows the constraint is in force. `none` is shown the
other way round: a `response_format` that writes a call-shaped object comes
back as plain content, because no tools reached the template or the parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from server.runner.grammar import grammar_for_tool_call
from tests.server.api.test_openai_api import FORCE_CALL, TOOLS_TEMPLATE, create
from tests.server.api.test_sse_framing import check_openai_stream
from tests.support.live_server import LiveServer

# A template that writes calls between <tool_call> tags, as Qwen's and Hermes' do.
TAGGED_TEMPLATE = (
    "{{- if .Tools }}<|im_start|>system\n{{ range .Tools }}{{ json .Function }}\n{{ end }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    '{{ if .ToolCalls }}<tool_call>{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", '
    '"arguments": {{ json .Function.Arguments }}}{{ end }}</tool_call>'
    "{{ else }}{{ .Content }}{{ end }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
CITIES = ("Paris", "Lyon")
UNITS = ("celsius", "kelvin")


def _function(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"the {name} tool",
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": sorted(properties),
                "additionalProperties": False,
            },
        },
    }


WEATHER = _function("get_weather", {"city": {"enum": list(CITIES)}})
UNIT = _function("set_unit", {"unit": {"enum": list(UNITS)}, "loud": {"type": "boolean"}})
TOOLS = [WEATHER, UNIT]
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
LONG: dict[str, Any] = {"temperature": 0, "seed": 3, "max_tokens": 200}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("tool-choice") / "models", env={"OLLAMA_NUM_PARALLEL": "2"}).start()
    try:
        client = ollama.Client(host=srv.url)
        create(client, "tiny-tools", tiny_model_path, template=TOOLS_TEMPLATE)
        create(client, "tiny-tagged", tiny_model_path, template=TAGGED_TEMPLATE)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="pollama", max_retries=0)


def _check_arguments(name: str, arguments: dict[str, Any]) -> None:
    if name == "get_weather":
        assert set(arguments) == {"city"} and arguments["city"] in CITIES
    else:
        assert name == "set_unit"
        assert set(arguments) == {"unit", "loud"} and arguments["unit"] in UNITS
        assert isinstance(arguments["loud"], bool)


# ----------------------------------------------------------------------------- OpenAI chat


@pytest.mark.parametrize("model", ["tiny-tools", "tiny-tagged"])
def test_required_makes_the_reply_one_call(client: openai.OpenAI, model: str) -> None:
    r = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required",
        **LONG,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    assert choice.message.content in ("", None)
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    _check_arguments(call.function.name, json.loads(call.function.arguments))


@pytest.mark.parametrize("name", ["get_weather", "set_unit"])
def test_named_function_is_the_one_called(client: openai.OpenAI, name: str) -> None:
    r = client.chat.completions.create(
        model="tiny-tagged",
        messages=MESSAGES,
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": name}},
        **LONG,
    )
    calls = r.choices[0].message.tool_calls
    assert calls and [c.function.name for c in calls] == [name]  # type: ignore[union-attr]
    _check_arguments(name, json.loads(calls[0].function.arguments))  # type: ignore[union-attr]


def test_named_function_streamed(server: LiveServer) -> None:
    body = {
        "model": "tiny-tools",
        "messages": MESSAGES,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "set_unit"}},
        "stream": True,
        **LONG,
    }
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    chunks = check_openai_stream(r.content, object_type="chat.completion.chunk")
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls] == ["set_unit"]
    _check_arguments("set_unit", json.loads(calls[0]["function"]["arguments"]))
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_none_sends_no_tools(client: openai.OpenAI, server: LiveServer) -> None:
    # The grammar writes exactly a call-shaped object; with tools in force it would be parsed as a call.
    with_tools = client.chat.completions.create(
        model="tiny-tools",
        messages=MESSAGES,
        tools=TOOLS,  # type: ignore[arg-type]
        response_format=FORCE_CALL,
        **LONG,
    )
    assert with_tools.choices[0].message.tool_calls
    r = client.chat.completions.create(
        model="tiny-tools",
        messages=MESSAGES,
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="none",
        response_format=FORCE_CALL,
        **LONG,
    )
    message = r.choices[0].message
    assert not message.tool_calls and r.choices[0].finish_reason == "stop"
    assert json.loads(message.content or "")["name"] == "get_weather"
    rendered = httpx.post(
        server.url + "/v1/chat/completions",
        json={
            "model": "tiny-tools",
            "messages": MESSAGES,
            "tools": TOOLS,
            "tool_choice": "none",
            "_debug_render_only": True,
        },
    ).json()["_debug_info"]["rendered_template"]
    assert "You can call these tools" not in rendered and "get_weather" not in rendered


def test_auto_is_the_default(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": "tiny-tools", "messages": MESSAGES, "tools": TOOLS, **LONG, "max_tokens": 12}
    assert (
        client.chat.completions.create(**kwargs).choices[0].message.content
        == client.chat.completions.create(**kwargs, tool_choice="auto").choices[0].message.content
    )


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        (TOOLS, {"type": "function", "function": {"name": "ghost"}}, "function 'ghost' is not among"),
        (None, "required", "needs 'tools'"),
        (TOOLS, "always", "Supported values"),
        (TOOLS, 5, "Supported values"),
        (TOOLS, {"type": "function"}, "'function' must be an object"),
        (TOOLS, {"type": "function", "function": {"name": ""}}, "non-empty string"),
    ],
)
def test_bad_tool_choice_is_a_400(client: openai.OpenAI, tools: Any, choice: Any, message: str) -> None:
    extra: dict[str, Any] = {"tools": tools} if tools else {}
    with pytest.raises(openai.BadRequestError, match=message):
        client.chat.completions.create(model="tiny-tools", messages=MESSAGES, tool_choice=choice, **extra)


# ----------------------------------------------------------------------------- Responses, Anthropic


def test_responses_required_and_named(client: openai.OpenAI) -> None:
    flat = [{"type": "function", **t["function"]} for t in TOOLS]
    for choice, names in (
        ("required", {"get_weather", "set_unit"}),
        ({"type": "function", "name": "set_unit"}, {"set_unit"}),
    ):
        r = client.responses.create(
            model="tiny-tagged",
            input="Weather?",
            tools=flat,  # type: ignore[arg-type]
            tool_choice=choice,  # type: ignore[arg-type]
            temperature=0,
            max_output_tokens=200,
        )
        calls = [item for item in r.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name in names
        _check_arguments(calls[0].name, json.loads(calls[0].arguments))
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.responses.create(
            model="tiny-tagged", input="x", tools=flat, tool_choice={"type": "function", "name": "x"}
        )  # type: ignore[arg-type]


def test_anthropic_any_tool_and_none(server: LiveServer) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="pollama", max_retries=0)
    tools: Any = [
        {"name": t["function"]["name"], "description": "d", "input_schema": t["function"]["parameters"]} for t in TOOLS
    ]
    messages: Any = [{"role": "user", "content": "Weather?"}]
    for choice, names in (
        ({"type": "any"}, {"get_weather", "set_unit"}),
        ({"type": "tool", "name": "get_weather"}, {"get_weather"}),
    ):
        r = client.messages.create(
            model="tiny-tagged",
            max_tokens=200,
            extra_body={"temperature": 0},
            messages=messages,
            tools=tools,
            tool_choice=choice,
        )
        assert r.stop_reason == "tool_use"
        uses = [b for b in r.content if b.type == "tool_use"]
        assert len(uses) == 1 and uses[0].name in names
        _check_arguments(uses[0].name, dict(uses[0].input))  # type: ignore[arg-type]
    r = client.messages.create(
        model="tiny-tagged",
        max_tokens=8,
        extra_body={"temperature": 0},
        messages=messages,
        tools=tools,
        tool_choice={"type": "none"},
    )
    assert r.stop_reason == "max_tokens" and all(b.type == "text" for b in r.content)
    with pytest.raises(anthropic.BadRequestError, match="expected tags"):
        client.messages.create(
            model="tiny-tagged",
            max_tokens=8,
            messages=messages,
            tools=tools,
            tool_choice={"type": "sometimes"},  # type: ignore[arg-type]
        )
    with pytest.raises(anthropic.BadRequestError, match="function 'ghost'"):
        client.messages.create(
            model="tiny-tagged",
            max_tokens=8,
            messages=messages,
            tools=tools,
            tool_choice={"type": "tool", "name": "ghost"},
        )


# ----------------------------------------------------------------------------- the grammar itself


def test_grammar_shapes() -> None:
    tagged = grammar_for_tool_call("<tool_call>", TOOLS).text
    assert tagged.startswith('root ::= "<tool_call>"') and '"</tool_call>"' in tagged.splitlines()[0]
    assert "tool-call-0" in tagged and "tool-call-1" in tagged  # one alternative per tool
    bare = grammar_for_tool_call("{", TOOLS, name="set_unit").text
    assert bare.splitlines()[0] == "root ::= tool-call" and "get_weather" not in bare
    # A tag that is not an XML element gets no closing tag.
    assert (
        grammar_for_tool_call("[TOOL_CALLS]", TOOLS).text.splitlines()[0]
        == 'root ::= "[TOOL_CALLS]" [ \\t\\n]{0,2} tool-call'
    )
    # A schema the converter cannot express falls back to "any object" instead of failing.
    odd = _function("odd", {"x": {"$ref": "#/definitions/missing"}})
    assert "tool-call-arguments ::= object" in grammar_for_tool_call("{", [odd]).text
    # Quotes and backslashes in a tag are escaped in the GBNF literal.
    assert grammar_for_tool_call('<|"q\\|>', TOOLS).text.startswith('root ::= "<|\\"q\\\\|>"')
    with pytest.raises(ValueError, match="no tool named"):
        grammar_for_tool_call("{", TOOLS, name="ghost")
