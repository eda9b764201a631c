"""Execution modes of Ollama's `template/template.go` `Template.Execute`: messages, legacy, suffix; collation; image markers."""

from __future__ import annotations

from typing import Any

from server.prompt import Message, collate, render_chat, render_generate

CHAT = "{{- range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}"
LEGACY = "{{ if .System }}{{ .System }} {{ end }}User: {{ .Prompt }} Assistant: {{ .Response }}<eot>"
MISTRAL_LEGACY = '[INST] {{ if .System }}{{ .System }}{{ "\\n\\n" }}{{ end }}{{ .Prompt }}[/INST] {{ .Response }}'


def test_messages_mode_with_interleaved_system() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert render_chat(CHAT, messages) == (
        "system: You are a helpful assistant.\nuser: Hello!\nsystem: Be brief.\nuser: Hi\n"
    )
    assert render_chat("{{ .System }}{{ range .Messages }}{{ end }}", messages) == (
        "You are a helpful assistant.\n\nBe brief."
    )


def test_consecutive_same_role_messages_merge_but_tool_messages_do_not() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "USER", "content": "b"},
        {"role": "tool", "content": "r1", "tool_name": "f"},
        {"role": "tool", "content": "r2", "tool_name": "g"},
    ]
    text = "{{ range .Messages }}[{{ .Role }}|{{ .Content }}|{{ .ToolName }}]{{ end }}"
    assert render_chat(text, messages) == "[user|a\n\nb|][tool|r1|f][tool|r2|g]"
    system, merged = collate([Message("system", "x"), Message("system", "y")])
    assert system == "x\n\ny"
    assert [m.content for m in merged] == ["x\n\ny"]


def test_unknown_roles_pass_through() -> None:
    chatml = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    got = render_chat(chatml, [{"role": "Critic", "content": "meh"}])
    assert got == "<|im_start|>critic\nmeh<|im_end|>\n<|im_start|>assistant\n"


def test_legacy_single_turn_cut_at_response() -> None:
    assert render_chat(LEGACY, [{"role": "user", "content": "Hello!"}]) == "User: Hello! Assistant: "
    assert (
        render_chat(LEGACY, [{"role": "system", "content": "Sys."}, {"role": "user", "content": "Hello!"}])
        == "Sys. User: Hello! Assistant: "
    )


def test_legacy_replays_turns() -> None:
    messages = [
        {"role": "user", "content": "Hello friend!"},
        {"role": "assistant", "content": "Hello human!"},
        {"role": "user", "content": "What is your name?"},
    ]
    assert render_chat(MISTRAL_LEGACY, messages) == (
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
    )


def test_legacy_system_after_a_turn_starts_a_new_triple() -> None:
    messages = [
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "system", "content": "s2"},
        {"role": "user", "content": "u2"},
    ]
    assert render_chat(LEGACY, messages) == "User: u1 Assistant: a1<eot>s2 User: u2 Assistant: "


def test_legacy_final_assistant_message_is_prefilled() -> None:
    messages = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "Sure, "}]
    assert render_chat(LEGACY, messages) == "User: u Assistant: Sure, "


def test_template_without_response_gets_one_appended() -> None:
    assert render_chat("{{ .System }}|{{ .Prompt }}|", [{"role": "user", "content": "p"}]) == "|p|"
    assert render_generate("{{ .Prompt }}", prompt="why?") == "why?"


def test_legacy_cut_inside_blocks() -> None:
    text = "{{ if .Prompt }}Q: {{ .Prompt }}{{ if .Prompt }} A: {{ .Response }} END{{ end }} tail{{ else }}none{{ end }}<eos>"
    messages = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "r1"},
        {"role": "user", "content": "q2"},
    ]
    assert render_chat(text, messages) == "Q: q1 A: r1 END tail<eos>Q: q2 A: "


def test_suffix_mode() -> None:
    fim = "{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ .Prompt }}{{ end }}"
    assert render_generate(fim, prompt="def add(", suffix="    return c") == "<PRE> def add( <SUF>    return c <MID>"
    # Suffix mode shows no system: Go prints a missing map key as <no value>.
    assert (
        render_generate("{{ .System }}{{ .Prompt }}{{ .Suffix }}", prompt="p", suffix="s", system="S") == "<no value>ps"
    )


def test_generate_builds_messages() -> None:
    got = render_generate(CHAT, prompt="Hello!", system="You are a helpful assistant.")
    assert got == "system: You are a helpful assistant.\nuser: Hello!\n"
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "yes"}]
    assert render_generate(CHAT, prompt="now", history=history) == "user: earlier\nassistant: yes\nuser: now\n"


def test_generate_image_markers() -> None:
    got = render_generate(CHAT, prompt="What is this?", images=[b"1", b"2"])
    assert got == "user: [img-0]\n\n[img-1]\n\nWhat is this?\n"


def test_chat_image_markers() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "compare [img] and", "images": [b"a", b"b"]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "and this", "images": [b"c"]},
    ]
    assert render_chat(CHAT, messages) == ("user: [img-1]compare [img-0] and\nassistant: ok\nuser: [img-2]and this\n")
    assert "[img-" not in render_chat(CHAT, messages, image_markers=False)


def test_tools_and_tool_calls_render() -> None:
    template = (
        "{{- if .Tools }}<tools>{{ range .Tools }}{{ .Function.Name }};{{ end }}</tools>{{ end }}"
        "{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}"
        "{{- if .ToolCalls }}<tool_call>{{ range .ToolCalls }}"
        '{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}</tool_call>{{ end }}'
        "{{- end }}"
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in SF?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"location": "San Francisco, CA"}}}],
        },
        {"role": "tool", "content": "70F", "tool_name": "get_weather"},
    ]
    assert render_chat(template, messages, tools=tools) == (
        "<tools>get_weather;</tools><|user|>Weather in SF?<|assistant|>"
        '<tool_call>{"name": "get_weather", "arguments": {"location":"San Francisco, CA"}}</tool_call>'
        "<|tool|>70F"
    )


def test_thinking_in_history() -> None:
    template = "{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}|{{ end }}"
    messages = [{"role": "assistant", "content": "A", "thinking": "hmm"}, {"role": "user", "content": "U"}]
    assert render_chat(template, messages) == "<think>hmm</think>A|U|"


def test_jinja_templates_get_image_markers_too() -> None:
    """The runner finds images by marker; a GGUF Jinja template sees content as text."""
    from server.prompt.jinja import JinjaTemplate

    jinja = JinjaTemplate("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    messages = [{"role": "user", "content": "what is this?", "images": [b"a"]}]
    assert render_chat(jinja, messages) == "user: [img-0]what is this?\n"
