"""The prompt layer: chat templates in, prompt text out; model text in, parts out.

A pure library (no HTTP, no model). The inference code calls it in this order:

Templates
    ``ChatTemplate.parse(text)``
        Parse a Go template once (cached by text). Bad syntax raises
        ``TemplateParseError`` (a ``TemplateError``, status 400) with the
        parser's message, ``line``, ``column`` and ``position``.
        Facts: ``.text``, ``.variables`` (lower-cased identifiers),
        ``.uses_messages``, ``.capabilities`` (subset of {"tools", "insert",
        "thinking"}), ``.tool_call_tag`` (str, "{" when unknown),
        ``.thinking_tags`` ((open, close) or None).
    ``DEFAULT_TEMPLATE_TEXT`` = ``"{{ .Prompt }}"`` (models without a template).
    ``JinjaTemplate(text, bos_token=, eos_token=)``
        A GGUF Jinja template with the same facts (``.capabilities``,
        ``.tool_call_tag``, ``.thinking_tags``); ``render_chat`` accepts it.
    ``select_template(request_template=, model_template=, gguf_chat_template=, bos_token=, eos_token=)``
        Ollama's order (`server/images.go` `selectedTemplateSource`): the request's, the model's TEMPLATE (which holds the
        bundled template matched at create time), the GGUF Jinja template,
        then ``{{ .Prompt }}``.

Rendering (all failures at render time raise ``TemplateRenderError``, 500)
    ``render_chat(template, messages, *, tools=None, think=None, image_markers=True) -> str``
        ``template``: ChatTemplate or text. ``messages``: ``Message`` or request
        dicts (role lower-cased, any role passed through). ``tools``: ``Tool`` or
        request dicts; a malformed one raises ``InvalidTool`` (400).
        ``think``: None | bool | "low"/"medium"/"high"/… → ``.Think``,
        ``.ThinkLevel`` (true → "medium"), ``.IsThinkSet``. Chooses messages
        or legacy mode; images become ``[img-n]`` markers.
    ``render_generate(template, *, prompt, system=None, suffix=None, history=(), images=(), think=None) -> str``
        ``/api/generate``: fill-in-the-middle when ``suffix`` is set, else
        [system] + history + image markers + prompt rendered as a chat.
    ``render_jinja(chat_template, messages, *, tools=None, bos_token="", eos_token="", add_generation_prompt=True, think=None) -> str``
        A GGUF's own Jinja template, sandboxed, HF ``apply_chat_template``
        conventions. ``jinja_capabilities(text)`` gives its capabilities.

Bundled templates (create time)
    ``detect_bundled_template(jinja_text) -> BundledTemplate | None``
        Ollama's ``template.Named``: closest Jinja by Levenshtein, < 100.
        ``BundledTemplate``: ``.name``, ``.template_text``, ``.parameters``
        (the template's JSON, e.g. {"stop": [...]}), ``.stop``.
    ``bundled_templates()``, ``bundled_template(name)``.

Context fitting
    ``fit_messages(messages, render, count_tokens, num_ctx, *, image_tokens=768, truncate=True) -> FitResult``
        ``render``: list[Message] → str (e.g. ``functools.partial(render_chat,
        tpl, tools=…, think=…)``); ``image_tokens=None`` when the model has no
        projector. ``FitResult``: ``.prompt``, ``.messages`` (rendered),
        ``.dropped`` (messages left out), ``.images`` (in marker order),
        ``.token_count``.

Output parsers (streaming; feed pieces, then call ``finish()`` once)
    ``ToolCallParser(template_or_tag, tools, *, make_ids=True, record=False)``
        ``.feed(text) -> (content, list[ToolCall])``; ``.finish()`` likewise.
        ``ToolCall.to_dict()`` is the wire shape (``call_…`` id, ``index``).
    ``ThinkingParser(open_tag, close_tag, *, start_in_thinking=False, record=False)``
        ``.feed(text) -> (thinking, content)``; ``.finish()`` likewise.
        ``ThinkingParser.for_prompt(open, close, prompt)`` starts inside
        thinking when the prompt already ends with the opening tag.
        Use it only when ``think`` is on and the template has thinking tags.
    Both are split-invariant (any chunking gives the same result as the whole
    text) and lossless: with ``record=True``, ``.log`` is an ordered list of
    (kind, text) whose texts join back to exactly the model's output.

Errors: ``TemplateParseError`` (400), ``TemplateRenderError`` (500) — both
``server.errors.TemplateError`` — and ``InvalidTool`` / ``InvalidMessage``
(``BadRequest``, 400).
"""

from __future__ import annotations

from server.prompt.bundled import (
    BundledTemplate,
    bundled_template,
    bundled_templates,
    detect_bundled_template,
)
from server.prompt.errors import InvalidMessage, InvalidTool, TemplateParseError, TemplateRenderError
from server.prompt.fit import IMAGE_TOKENS, FitResult, fit_messages
from server.prompt.gotemplate import DEFAULT_TEMPLATE_TEXT, ChatTemplate
from server.prompt.jinja import JinjaTemplate, jinja_capabilities, render_jinja
from server.prompt.render import ThinkFlags, add_image_markers, collate, render_chat, render_generate
from server.prompt.thinking import ThinkingParser
from server.prompt.toolcalls import ToolCallParser, new_call_id
from server.prompt.types import (
    Message,
    Tool,
    ToolCall,
    ToolCallFunction,
    ToolFunction,
    ToolParameters,
    ToolProperty,
    to_messages,
    to_tools,
)


def select_template(
    *,
    request_template: str | None = None,
    model_template: str | None = None,
    gguf_chat_template: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
) -> ChatTemplate | JinjaTemplate:
    """Ollama's `server/images.go` `selectedTemplateSource`: request `template` > the model's TEMPLATE > GGUF Jinja > `{{ .Prompt }}`.

    A bundled template matched at create time (`detect_bundled_template`) is
    stored as the model's TEMPLATE, so it arrives here as `model_template`.
    A GGUF `tokenizer.chat_template` that matched nothing is rendered itself
    (pass the GGUF's BOS/EOS token texts with it).
    """
    if request_template:
        return ChatTemplate.parse(request_template)
    if model_template:
        return ChatTemplate.parse(model_template)
    if gguf_chat_template:
        return JinjaTemplate(gguf_chat_template, bos_token=bos_token, eos_token=eos_token)
    return ChatTemplate.parse(DEFAULT_TEMPLATE_TEXT)


__all__ = [
    "IMAGE_TOKENS",
    "DEFAULT_TEMPLATE_TEXT",
    "BundledTemplate",
    "ChatTemplate",
    "FitResult",
    "InvalidMessage",
    "JinjaTemplate",
    "InvalidTool",
    "Message",
    "TemplateParseError",
    "TemplateRenderError",
    "ThinkFlags",
    "ThinkingParser",
    "Tool",
    "ToolCall",
    "ToolCallFunction",
    "ToolCallParser",
    "ToolFunction",
    "ToolParameters",
    "ToolProperty",
    "add_image_markers",
    "bundled_template",
    "bundled_templates",
    "collate",
    "detect_bundled_template",
    "fit_messages",
    "jinja_capabilities",
    "new_call_id",
    "render_chat",
    "render_generate",
    "render_jinja",
    "select_template",
    "to_messages",
    "to_tools",
]
