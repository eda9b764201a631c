"""Turning messages into prompt text with a Go template (Ollama's `template/template.go` `Template.Execute`).

Three execution modes, chosen as Ollama's `Template.Execute` chooses them:

1. suffix (fill-in-the-middle): prompt and suffix both set → the template
   sees only `.Prompt`, `.Suffix`, `.Response` and the think flags;
2. messages: the template mentions `.Messages` → one run over `.System`
   (all system messages joined), `.Messages` (consecutive same-role messages
   merged, tool messages never), `.Tools` and the think flags;
3. legacy: otherwise the conversation is replayed as (system, prompt,
   response) triples, one run per finished turn, and the last run uses the
   template cut after `{{ .Response }}` so the prompt ends where the model
   is to start writing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.prompt.godata import template_messages, template_tools
from server.prompt.gotemplate import ChatTemplate
from server.prompt.jinja import JinjaTemplate
from server.prompt.types import Message, Tool, to_messages, to_tools

ThinkValue = bool | str | None


@dataclass(frozen=True, slots=True)
class ThinkFlags:
    """What a template sees of the request's `think` (Ollama's `api/types.go` `ThinkValue`)."""

    think: bool = False
    level: str = ""
    is_set: bool = False

    @classmethod
    def of(cls, think: ThinkValue) -> ThinkFlags:
        """`true` → level "medium"; a level string → thinking on at that level."""
        if think is None:
            return cls()
        if isinstance(think, bool):
            return cls(think=think, level="medium" if think else "", is_set=True)
        return cls(think=bool(think), level=think, is_set=True)


def _as_template(template: ChatTemplate | str) -> ChatTemplate:
    return template if isinstance(template, ChatTemplate) else ChatTemplate.parse(template)


def add_image_markers(messages: Sequence[Message], start: int = 0) -> list[Message]:
    """Give each image an `[img-n]` marker in its message's text (chat mode).

    n counts images across the conversation. A message whose content holds
    a literal `[img]` has it replaced (first occurrence, image by image);
    otherwise the markers are put in front of the content.
    """
    out: list[Message] = []
    n = start
    for message in messages:
        if not message.images:
            out.append(message)
            continue
        prefix = ""
        content = message.content
        for _ in message.images:
            tag = f"[img-{n}]"
            n += 1
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
        out.append(message.with_content(prefix + content))
    return out


def collate(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """Ollama's collate: the joined system text and the merged message list.

    Merging keeps the first message's other fields (thinking, tool calls,
    images) and appends the later content after a blank line, as Go does.
    """
    system: list[str] = []
    collated: list[Message] = []
    for message in messages:
        if message.role == "system":
            system.append(message.content)
        if collated and collated[-1].role == message.role and message.role != "tool":
            collated[-1] = collated[-1].with_content(collated[-1].content + "\n\n" + message.content)
        else:
            collated.append(message)
    return "\n\n".join(system), collated


def render_chat(
    template: ChatTemplate | JinjaTemplate | str,
    messages: Iterable[Message | Mapping[str, Any]],
    *,
    tools: Sequence[Tool | Mapping[str, Any]] | None = None,
    think: ThinkValue = None,
    image_markers: bool = True,
) -> str:
    """Render a conversation (chat, or generate without suffix) to prompt text.

    Messages and tools may be typed values or request dicts (validated here:
    a malformed tool is `InvalidTool`, 400). Any template failure is a
    `TemplateRenderError` (500). A `JinjaTemplate` is rendered with
    `render_jinja`; its messages get the same `[img-n]` markers, since GGUF
    templates see content as text and the runner finds images by marker.
    """
    if isinstance(template, JinjaTemplate):
        typed = to_messages(messages)
        return template.render(add_image_markers(typed) if image_markers else typed, tools=tools, think=think)
    tpl = _as_template(template)
    msgs = to_messages(messages)
    typed_tools = to_tools(tools)
    if image_markers:
        msgs = add_image_markers(msgs)
    return _execute(tpl, msgs, typed_tools, ThinkFlags.of(think))


def render_generate(
    template: ChatTemplate | str,
    *,
    prompt: str,
    system: str | None = None,
    suffix: str | None = None,
    history: Iterable[Message | Mapping[str, Any]] = (),
    images: Sequence[bytes | str] = (),
    think: ThinkValue = None,
) -> str:
    """Render `/api/generate`'s prompt (Ollama's `server/routes.go` `GenerateHandler`).

    With a suffix the template runs in fill-in-the-middle mode (when the
    prompt is empty too, Ollama falls through to the other modes with no
    messages at all, and so does this). Otherwise the messages are
    [system] + history + one `[img-n]` user message per image + the user
    prompt; consecutive user messages then merge, so the template sees
    "[img-0]\n\n[img-1]\n\nprompt". `system` is the request's or else the
    model's SYSTEM; `history` the model's MESSAGEs (pass none when the
    request has `context`).
    """
    tpl = _as_template(template)
    flags = ThinkFlags.of(think)
    if suffix:
        if prompt:
            return tpl.execute(
                {
                    "Prompt": prompt,
                    "Suffix": suffix,
                    "Response": "",
                    "Think": flags.think,
                    "ThinkLevel": flags.level,
                    "IsThinkSet": flags.is_set,
                }
            )
        return _execute(tpl, [], None, flags)
    msgs: list[Message] = []
    if system:
        msgs.append(Message(role="system", content=system))
    msgs.extend(to_messages(history))
    for n in range(len(images)):
        msgs.append(Message(role="user", content=f"[img-{n}]"))
    msgs.append(Message(role="user", content=prompt))
    return _execute(tpl, msgs, None, flags)


def _execute(tpl: ChatTemplate, msgs: list[Message], tools: list[Tool] | None, flags: ThinkFlags) -> str:
    system, collated = collate(msgs)
    if tpl.uses_messages:
        return tpl.execute(
            {
                "System": system,
                "Messages": template_messages(collated),
                "Tools": template_tools(tools),
                "Response": "",
                "Think": flags.think,
                "ThinkLevel": flags.level,
                "IsThinkSet": flags.is_set,
            }
        )
    return _execute_legacy(tpl, collated, flags)


def _execute_legacy(tpl: ChatTemplate, collated: list[Message], flags: ThinkFlags) -> str:
    parts: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def values() -> dict[str, Any]:
        return {**turn, "Think": flags.think, "ThinkLevel": flags.level, "IsThinkSet": flags.is_set}

    def flush() -> None:
        parts.append(tpl.execute(values()))
        turn.update(System="", Prompt="", Response="")

    for message in collated:
        if message.role == "system":
            if turn["Prompt"] or turn["Response"]:
                flush()
            turn["System"] = message.content
        elif message.role == "user":
            if turn["Response"]:
                flush()
            turn["Prompt"] = message.content
        elif message.role == "assistant":
            turn["Response"] = message.content
    parts.append(tpl.execute_cut(values()))
    return "".join(parts)
