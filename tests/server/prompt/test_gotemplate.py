"""ChatTemplate: parsing, the facts read from the tree, Go printing rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from server.errors import TemplateError
from server.prompt import ChatTemplate, TemplateParseError, TemplateRenderError, render_chat

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get <weather> & more",
        "parameters": {
            "type": "object",
            "required": ["location"],
            "properties": {
                "unit": {"type": ["string", "null"], "enum": ["c", "f"], "default": "c"},
                "location": {"type": "string", "description": "City"},
            },
        },
    },
}
WEATHER_JSON = (
    '{"type":"function","function":{"name":"get_weather","description":"Get \\u003cweather\\u003e \\u0026 more",'
    '"parameters":{"type":"object","required":["location"],"properties":{"location":{"type":"string",'
    '"description":"City"},"unit":{"type":["string","null"],"enum":["c","f"]}}}}}'
)
HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("{{ .Prompt", (1, 1)),
        ("ok\n{{ if .Prompt }}unclosed", (2, None)),
        ("{{ undefinedFunction .Prompt }}", (1, None)),
        ("{{ range }}{{ end }}", (1, None)),
    ],
)
def test_parse_errors_are_400_with_position(text: str, where: tuple[int, int | None]) -> None:
    with pytest.raises(TemplateParseError) as info:
        ChatTemplate.parse(text)
    err = info.value
    assert isinstance(err, TemplateError)
    assert err.status == 400
    assert err.line == where[0]
    if where[1] is not None:
        assert err.column == where[1]
    assert err.message


def test_parse_is_cached_by_text() -> None:
    assert ChatTemplate.parse("{{ .Prompt }}") is ChatTemplate.parse("{{ .Prompt }}")


def test_variables_and_capabilities() -> None:
    t = ChatTemplate.parse("{{ if .Tools }}{{ $.Tools }}{{ end }}{{ range .Messages }}{{ .Content }}{{ end }}")
    assert {"tools", "messages", "content", "$"} <= t.variables
    assert t.uses_messages
    assert t.capabilities == {"tools"}
    fim = ChatTemplate.parse("<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>")
    assert fim.capabilities == {"insert"}
    assert not fim.uses_messages


def test_thinking_tags_inferred_from_range_messages() -> None:
    t = ChatTemplate.parse(
        "{{- range .Messages }}<|{{ .Role }}|>"
        "{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}{{ end }}"
    )
    assert t.thinking_tags == ("<think>", "</think>")
    assert "thinking" in t.capabilities
    # .Thinking outside `range .Messages` does not count.
    assert ChatTemplate.parse("{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}").thinking_tags is None


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        (
            '{{ range .Messages }}{{ if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}{"name": "{{ .Function.Name }}"}{{ end }}</tool_call>{{ end }}{{ end }}',
            "<tool_call>",
        ),
        (
            "{{ range .Messages }}{{ if .ToolCalls }}[TOOL_CALLS] {{ json .ToolCalls }}{{ end }}{{ end }}",
            "[TOOL_CALLS]",
        ),
        ('{{ range .Messages }}{{ if .ToolCalls }}{{ range .ToolCalls }}{"name": 1}{{ end }}{{ end }}{{ end }}', "{"),
        ('{{ range .Messages }}{{ if .ToolCalls }}   {"x":1}{{ end }}{{ end }}', "{"),
        ("{{ .Prompt }}", "{"),
    ],
)
def test_tool_call_tag(text: str, tag: str) -> None:
    assert ChatTemplate.parse(text).tool_call_tag == tag


def test_tools_print_as_go_json() -> None:
    text = "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ . }}|{{ .Function.Name }}|{{ end }}{{ .Tools }}|{{ json .Tools }}"
    got = render_chat(text, HI, tools=[WEATHER_TOOL])
    assert got == f"{WEATHER_JSON}|get_weather|[{WEATHER_JSON}]|[{WEATHER_JSON}]"


def test_legacy_templates_do_not_see_tools() -> None:
    # Without .Messages the template runs in legacy mode: .Tools is not set.
    assert render_chat("{{ .Tools }}|{{ json .Tools }}", HI, tools=[WEATHER_TOOL]) == "<no value>|null"


def test_nil_and_empty_tool_lists() -> None:
    text = "{{ range .Messages }}{{ end }}{{ if .Tools }}T{{ else }}F{{ end }}{{ .Tools }}"
    assert render_chat(text, HI) == "Fnull"
    assert render_chat(text, HI, tools=[]) == "F[]"


def test_function_prints_as_json_like_ollama_before_2026() -> None:
    got = render_chat(
        "{{ range .Tools }}{{ .Function }}{{ end }}{{ range .Messages }}{{ end }}", HI, tools=[WEATHER_TOOL]
    )
    assert got.startswith('{"name":"get_weather","description":"Get \\u003cweather')


def test_properties_range_sorted_and_typescript_types() -> None:
    text = (
        "{{ range .Tools }}{{ range $name, $p := .Function.Parameters.Properties }}"
        "{{ $name }}:{{ $p.Type }}:{{ toTypeScriptType $p }}:{{ $p.Description }};{{ end }}"
        "{{ .Function.Parameters.Properties }}{{ end }}{{ range .Messages }}{{ end }}"
    )
    got = render_chat(text, HI, tools=[WEATHER_TOOL])
    assert got == (
        "location:string:string:City;unit:[string null]:string | null:;"
        '{"location":{"type":"string","description":"City"},"unit":{"type":["string","null"],"enum":["c","f"]}}'
    )


def test_arguments_print_as_sorted_escaped_json() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"z": 1.0, "a": "x<y", "n": None}}}],
        },
    ]
    text = (
        "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }} {{ .Function.Arguments }} "
        "{{ .Function.Arguments.a }} {{ .Function.Arguments.missing }} {{ .Function.Index }}{{ end }}{{ end }}"
    )
    assert render_chat(text, messages) == 'get_weather {"a":"x\\u003cy","n":null,"z":1} x<y <no value> 0'


def test_missing_root_key_is_no_value_and_compares_false() -> None:
    text = '{{ range .Messages }}{{ end }}[{{ .Prompt }}]{{ if eq .Prompt "" }}eq{{ else }}ne{{ end }}{{ if .Prompt }}T{{ end }}'
    assert render_chat(text, HI) == "[<no value>]ne"


def test_struct_fields_have_zero_values() -> None:
    text = "{{ range .Messages }}[{{ .Thinking }}][{{ .ToolCalls }}][{{ len .Images }}][{{ .ToolName }}]{{ end }}"
    assert render_chat(text, HI) == "[][[]][0][]"


def test_unknown_struct_field_is_render_error() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_chat("{{ range .Messages }}{{ .Name }}{{ end }}", HI)
    assert info.value.status == 500
    assert "Name" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "{{ range .Messages }}{{ end }}{{ index .Messages 5 }}",
        "{{ range .Messages }}{{ end }}{{ len .Nope }}",
        "{{ range .Messages }}{{ end }}{{ lt .System 1 }}",
        '{{ range .Messages }}{{ end }}{{ template "nope" }}x',
    ],
)
def test_render_failures_are_template_errors(text: str) -> None:
    try:
        render_chat(text, HI)
    except TemplateError:
        pass


def test_render_failures_raise_only_template_error() -> None:
    with pytest.raises(TemplateRenderError):
        render_chat("{{ range .Messages }}{{ end }}{{ index .Messages 5 }}", HI)
    with pytest.raises(TemplateRenderError):
        render_chat("{{ range .Messages }}{{ end }}{{ lt .System 1 }}", HI)


@pytest.mark.parametrize(
    ("think", "expected"),
    [(None, "false||false"), (True, "true|medium|true"), (False, "false||true"), ("high", "true|high|true")],
)
def test_think_flags(think: bool | str | None, expected: str) -> None:
    text = "{{ range .Messages }}{{ end }}{{ .Think }}|{{ .ThinkLevel }}|{{ .IsThinkSet }}"
    assert render_chat(text, HI, think=think) == expected


def test_date_functions() -> None:
    today = dt.date.today()
    got = render_chat("{{ range .Messages }}{{ end }}{{ currentDate }} {{ yesterdayDate }}", HI)
    assert got == f"{today.isoformat()} {(today - dt.timedelta(days=1)).isoformat()}"


def test_go_constructs() -> None:
    text = (
        "{{- range $i, $m := .Messages }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ if ge $i 3 }}{{ break }}{{ end }}"
        "{{ with $m.Content }}<{{ . }}>{{ else }}<empty>{{ end }}{{ end }}"
        "{{- $n := 0 }}{{ range .Messages }}{{ $n = len (slice $.Messages 1) }}{{ end }} n={{ $n }}"
        '{{ printf " %s-%d" "x" 3 }}{{ print " " 1 2 }}{{ if and .System (not .Tools) }} sys{{ end }}'
        '{{ if or .Tools .System }} or{{ end }}{{ index .Messages 0 | printf " %v" | len }}'
    )
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "b"},
    ]
    got = render_chat(text, messages)
    assert got.startswith("<S><empty> n=3 x-3 1 2 sys or")
