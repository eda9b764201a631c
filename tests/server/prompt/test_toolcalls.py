"""ToolCallParser: Ollama's cases, and split-invariance / losslessness properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.prompt import ChatTemplate, ToolCallParser

WEATHER = {"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object"}}}
TOOLS = [
    WEATHER,
    {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "say_hello", "parameters": {"type": "object"}}},
]
T1 = ("get_current_weather", {"format": "fahrenheit", "location": "San Francisco, CA"})
T2 = ("get_current_weather", {"format": "celsius", "location": "Toronto, Canada"})
C1 = '{"name": "get_current_weather", "arguments": {"format":"fahrenheit","location":"San Francisco, CA"}}'
C2 = '{"name": "get_current_weather", "arguments": {"format":"celsius","location":"Toronto, Canada"}}'


def run(tag: str, pieces: list[str], tools: list = TOOLS) -> tuple[str, list[tuple[str, dict]], ToolCallParser]:
    parser = ToolCallParser(tag, tools, make_ids=False, record=True)
    content = ""
    calls = []
    for piece in pieces:
        c, k = parser.feed(piece)
        content += c
        calls += k
    c, k = parser.finish()
    content += c
    calls += k
    assert [call.function.index for call in calls] == list(range(len(calls)))
    return content, [(call.function.name, dict(call.function.arguments)) for call in calls], parser


def logged(parser: ToolCallParser) -> list[tuple[str, str]]:
    assert parser.log is not None  # run() builds its parser with record=True
    return parser.log


@pytest.mark.parametrize(
    ("tag", "output", "calls", "content"),
    [
        ("<tool_call>", f"<tool_call>{C1}</tool_call>", [T1], ""),
        (
            "<tool_call>",
            f"some tokens before call <tool_call> [{C1}, {C2}] </tool_call>",
            [T1, T2],
            "some tokens before call ",
        ),
        ("<tool_call>", f"<tool_call>{C1}</tool_call>\n<tool_call>{C2}</tool_call>", [T1, T2], ""),
        ("[TOOL_CALLS]", f"[TOOL_CALLS]  [{C1},{C2}]", [T1, T2], ""),
        (
            "[TOOL_CALLS]",
            '[TOOL_CALLS]  [{"name": "get_current_weather", "arguments": {"format":"fahrenheit","location":"San Francisco, CA"}},{"name": "get_curren}]',
            [T1],
            "",
        ),
        (
            "{",
            '{"name": "get_current_weather", "parameters": {"format":"fahrenheit","location":"San Francisco, CA"}}',
            [T1],
            "",
        ),
        ("{", f"some non json text{C1}", [], f"some non json text{C1}"),
        ("[", f"[{C1},{C2}]", [T1, T2], ""),
        ("[", "[1, 2, 3] is a list", [], "[1, 2, 3] is a list"),
        ("{", '{"get_current_weather": {"format":"celsius","location":"Toronto, Canada"}}', [T2], ""),
        (
            "{",
            '{"tool_calls": [{"name": "get_current_weather", "arguments": "{\\"format\\":\\"celsius\\",\\"location\\":\\"Toronto, Canada\\"}"}]}',
            [T2],
            "",
        ),
        ("<tool_call>", "The weather is 70°F.", [], "The weather is 70°F."),
        # No call after the tag: Ollama drops the text, this parser returns it.
        ("<tool_call>", "<tool_call> not a call", [], "<tool_call> not a call"),
        # A name without usable arguments is not a call (Ollama's TODO).
        ("<tool_call>", '<tool_call>{"name": "get_current_weather"}', [], '<tool_call>{"name": "get_current_weather"}'),
    ],
)
def test_cases(tag: str, output: str, calls: list, content: str) -> None:
    got_content, got_calls, parser = run(tag, [output])
    assert got_calls == calls
    assert got_content == content
    assert "".join(text for _, text in logged(parser)) == output


def test_longest_name_wins_and_partial_names_wait() -> None:
    parser = ToolCallParser("<tool_call>", TOOLS, make_ids=False)
    assert parser.feed('<tool_call>{"name": "get') == ("", [])
    content, calls = parser.feed('_current_weather", "arguments": {"a": 1}}')
    assert [c.function.name for c in calls] == ["get_current_weather"]


def test_partial_tag_is_held_back() -> None:
    parser = ToolCallParser("<tool_call>", TOOLS)
    assert parser.feed("Hello <tool_") == ("Hello ", [])
    assert parser.feed("cat>") == ("<tool_cat>", [])


def test_ids_and_wire_shape() -> None:
    parser = ToolCallParser("<tool_call>", TOOLS)
    _, calls = parser.feed(f"<tool_call>{C1}</tool_call>")
    wire = calls[0].to_dict()
    assert wire["id"].startswith("call_") and len(wire["id"]) == 13
    assert wire["function"] == {"index": 0, "name": "get_current_weather", "arguments": T1[1]}
    assert calls[0].raw == f"<tool_call>{C1}"


def test_tag_from_template() -> None:
    template = ChatTemplate.parse(
        "{{ range .Messages }}{{ if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}{{ json .Function }}{{ end }}</tool_call>{{ end }}{{ end }}"
    )
    parser = ToolCallParser(template, TOOLS, make_ids=False)
    assert parser.tag == "<tool_call>"


def test_tool_with_bad_schema_is_rejected() -> None:
    from server.prompt import InvalidTool

    with pytest.raises(InvalidTool) as info:
        ToolCallParser("{", [{"type": "function", "function": {"name": "f", "parameters": "string"}}])
    assert info.value.status == 400


# ------------------------------------------------------------ properties

ATOMS = st.sampled_from(
    [
        "<tool_call>",
        "</tool_call>",
        "[TOOL_CALLS]",
        "{",
        "}",
        "[",
        "]",
        '"',
        "\\",
        ":",
        ",",
        " ",
        "\n",
        '"name"',
        '"arguments"',
        '"parameters"',
        '"get_current_weather"',
        '"get"',
        "get_cur",
        "say_hello",
        '{"a": 1}',
        "{}",
        "<tool",
        "call>",
        "text",
        "é",
        "𝄞",
        C1,
        C2,
    ]
)
OUTPUTS = st.lists(ATOMS, max_size=25).map("".join)


def _splits(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(text[last:p])
        last = p
    pieces.append(text[last:])
    return pieces


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Found by this test: a finished call followed by the start of a tool name was held back when fed whole.
@example(tag="<tool_call>", text='<tool_call>"get_current_weather"{"a": 1}get_cur', cuts=[40])
@given(
    tag=st.sampled_from(["<tool_call>", "[TOOL_CALLS]", "{", "["]),
    text=OUTPUTS,
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_split_invariant_and_lossless(tag: str, text: str, cuts: list[int]) -> None:
    whole = run(tag, [text])
    split = run(tag, _splits(text, cuts))
    chars = run(tag, list(text))
    assert split[:2] == whole[:2]
    assert chars[:2] == whole[:2]
    for result in (whole, split, chars):
        assert "".join(t for _, t in logged(result[2])) == text
    # Content is exactly the logged content, in order.
    assert whole[0] == "".join(t for kind, t in logged(whole[2]) if kind == "content")


@settings(max_examples=40, deadline=None)
@given(
    args=st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5), st.booleans()), max_size=4)
)
def test_any_arguments_round_trip(args: dict) -> None:
    text = "<tool_call>" + json.dumps({"name": "say_hello", "arguments": args}) + "</tool_call>"
    content, calls, _ = run("<tool_call>", list(text))
    assert calls == [("say_hello", args)]
    assert content == ""
