"""Bad input never escapes as anything but the prompt layer's own errors."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.errors import PollamaError
from server.prompt import ChatTemplate, Message, bundled_templates, render_chat

TEMPLATES = [ChatTemplate.parse(t.template_text) for t in bundled_templates()] + [
    ChatTemplate.parse("{{ .System }} {{ .Prompt }} {{ .Response }}"),
    ChatTemplate.parse(
        "{{ range $i, $m := .Messages }}{{ if .ToolCalls }}{{ range .ToolCalls }}{{ .Function.Arguments }}{{ end }}"
        '{{ end }}{{ index $.Messages $i | printf "%v" | len }}{{ .Thinking }}{{ end }}{{ json .Tools }}'
    ),
]

JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "tool", "Critic", ""]),
            "content": st.text(max_size=30),
        },
        optional={
            "thinking": st.text(max_size=10),
            "images": st.lists(st.binary(max_size=3), max_size=2),
            "tool_calls": st.lists(
                st.fixed_dictionaries(
                    {
                        "function": st.fixed_dictionaries(
                            {
                                "name": st.text(max_size=5),
                                "arguments": st.dictionaries(st.text(max_size=4), JSONISH, max_size=3),
                            }
                        )
                    }
                ),
                max_size=2,
            ),
            "tool_name": st.text(max_size=5),
        },
    ),
    JSONISH,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(MESSAGE, max_size=6),
    tools=st.one_of(st.none(), st.lists(JSONISH, max_size=2)),
    which=st.integers(0, len(TEMPLATES) - 1),
)
def test_random_messages_raise_only_our_errors(messages: list, tools: list | None, which: int) -> None:
    try:
        out = render_chat(TEMPLATES[which], messages, tools=tools)
    except PollamaError:
        return
    assert isinstance(out, str)
    out.encode("utf-8")  # always valid UTF-8


def test_lone_surrogates_are_replaced() -> None:
    out = render_chat(TEMPLATES[0], [{"role": "user", "content": "bad \ud800 text"}])
    assert "\ufffd" in out
    out.encode("utf-8")


def test_undecodable_bytes_are_replaced() -> None:
    message = Message.from_dict({"role": "user", "content": b"caf\xe9"})
    assert message.content == "caf\ufffd"


def test_ten_megabyte_message_renders_quickly() -> None:
    big = "x" * (10 * 1024 * 1024)
    start = time.perf_counter()
    for template in TEMPLATES[:5]:
        out = render_chat(template, [{"role": "user", "content": big}])
        assert big in out
    assert time.perf_counter() - start < 10
