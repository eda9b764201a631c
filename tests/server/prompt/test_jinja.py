"""Rendering GGUF Jinja templates (the last resort before {{ .Prompt }})."""

from __future__ import annotations

import pytest

from server.prompt import (
    ChatTemplate,
    JinjaTemplate,
    TemplateParseError,
    TemplateRenderError,
    jinja_capabilities,
    render_chat,
    render_jinja,
    select_template,
)

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_renders_with_generation_prompt_and_tokens() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    assert (
        render_jinja(CHATML, messages)
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert (
        render_jinja(
            "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}", messages, bos_token="<s>", eos_token="</s>"
        )
        == "<s>S</s>"
    )


def test_tools_tojson_and_strftime() -> None:
    template = "{% if tools %}{{ tools | tojson }}{% endif %}|{{ strftime_now('%Y') | length }}"
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "d<",
                "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
            },
        }
    ]
    got = render_jinja(template, [], tools=tools)
    assert (
        got
        == '[{"type": "function", "function": {"name": "f", "description": "d<", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}]|4'
    )


def test_raise_exception_is_render_error() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_jinja("{{ raise_exception('Conversation roles must alternate') }}", [])
    assert "alternate" in str(info.value)


def test_sandbox_blocks_attribute_escapes() -> None:
    with pytest.raises(TemplateRenderError):
        render_jinja("{{ ''.__class__.__mro__[1].__subclasses__() }}", [])


def test_syntax_error_is_parse_error() -> None:
    with pytest.raises(TemplateParseError):
        JinjaTemplate("{% for %}")


def test_capabilities_and_selection() -> None:
    assert jinja_capabilities("{% if tools %}<tool_call>{% endif %}<think></think>") == {"tools", "thinking"}
    assert isinstance(select_template(gguf_chat_template=CHATML), JinjaTemplate)
    assert select_template(request_template="{{ .Prompt }}!", model_template="x").text == "{{ .Prompt }}!"
    assert select_template(model_template="m {{ .Prompt }}").text == "m {{ .Prompt }}"
    assert isinstance(select_template(), ChatTemplate) and select_template().text == "{{ .Prompt }}"
    jt = select_template(gguf_chat_template=CHATML)
    assert render_chat(jt, [{"role": "user", "content": "x"}]).endswith("<|im_start|>assistant\n")
