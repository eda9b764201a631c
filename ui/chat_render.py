"""A conversation as rich text for a `QTextBrowser`: Markdown, code blocks with Copy, thinking, tool calls, stats.

Why markdown-it-py rather than `QTextDocument.setMarkdown`: Qt's importer
(md4c) turns Markdown straight into a document, with no hook to put a Copy
link on a code block, to refuse images, or to mix in the parts that are not
Markdown (a collapsed thinking block, tool calls, the stats line, the
truncation notice). markdown-it-py (CommonMark, with GFM tables; already
installed through rich) produces HTML we can shape rule by rule, and Qt's
rich-text engine draws that subset of HTML.

Safety, since the text comes from a model: raw HTML in the Markdown is
escaped (`html: False`), image syntax becomes a plain link (nothing is
fetched or read from disk: the browser widget also refuses every resource
it did not get from us), links are limited to http(s) and mailto and open
only on a click, and Qt's rich text runs no script.

Colours come from the palette handed in, so the transcript follows light and dark.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from PySide6.QtGui import QPalette

from ui.chat_store import Message, MessageState
from ui.theme import Tone, tone_color

SCHEME = "pollama"  # internal links: pollama:copy/3, pollama:think/12, pollama:edit/7 …
SAFE_LINKS = ("http://", "https://", "mailto:")
THUMBNAIL_PX = 160


@dataclass
class RenderContext:
    """What one rendering collects: the code of each block (for Copy) and the images it shows."""

    palette: QPalette
    code_blocks: list[str] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def color(self, role: QPalette.ColorRole) -> str:
        return self.palette.color(role).name()

    def tone(self, tone: Tone) -> str:
        return tone_color(tone, self.palette).name()


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


class MarkdownRenderer:
    """CommonMark + tables → Qt rich-text HTML, with our code blocks, images and links."""

    def __init__(self) -> None:
        md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        md.enable(["table", "strikethrough"])
        md.add_render_rule("fence", self._fence)
        md.add_render_rule("code_block", self._fence)
        md.add_render_rule("image", self._image)
        md.add_render_rule("link_open", self._link_open)
        md.add_render_rule("link_close", self._link_close)
        md.add_render_rule("table_open", self._table_open)
        md.add_render_rule("code_inline", self._code_inline)
        self.md = md

    def render(self, text: str, ctx: RenderContext) -> str:
        return self.md.render(text, {"ctx": ctx})

    # -- rules (markdown-it's signature: self=renderer, tokens, idx, options, env) ---------------
    @staticmethod
    def _fence(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
        ctx: RenderContext = env["ctx"]
        token = tokens[idx]
        code = token.content
        lang = (token.info or "").strip().split(" ", 1)[0]
        number = len(ctx.code_blocks)
        ctx.code_blocks.append(code)
        body = _esc(code.rstrip("\n"))
        return (
            f'<table width="100%" cellspacing="0" cellpadding="6" border="0"'
            f' bgcolor="{ctx.color(QPalette.ColorRole.AlternateBase)}">'
            f'<tr><td><span style="color:{ctx.tone(Tone.MUTED)}">{_esc(lang) or "code"}</span></td>'
            f'<td align="right"><a href="{SCHEME}:copy/{number}">Copy</a></td></tr>'
            f'<tr><td colspan="2"><pre style="font-family: monospace; white-space: pre-wrap;">{body}</pre></td></tr></table><br/>\n'
        )

    @staticmethod
    def _image(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
        token = tokens[idx]
        alt = "".join(child.content for child in token.children or ()) or "image"
        src = str(token.attrGet("src") or "")
        label = f"[image: {_esc(alt)}]"
        if src.startswith(("http://", "https://")):
            return f'<a href="{_esc(src)}">{label}</a>'
        return label

    @staticmethod
    def _link_open(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
        token = tokens[idx]
        href = str(token.attrGet("href") or "")
        if href.startswith(SAFE_LINKS):
            token.meta["open"] = True
            return f'<a href="{_esc(href)}" title="{_esc(href)}">'
        return ""

    @staticmethod
    def _link_close(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
        # the matching link_open is the nearest earlier one at the same level
        level = tokens[idx].level
        for j in range(idx - 1, -1, -1):
            if tokens[j].type == "link_open" and tokens[j].level == level:
                return "</a>" if tokens[j].meta.get("open") else ""
        return ""

    @staticmethod
    def _table_open(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
        ctx: RenderContext = env["ctx"]
        return (
            f'<table border="1" cellspacing="0" cellpadding="4"'
            f' style="border-color:{ctx.color(QPalette.ColorRole.Mid)}; border-style: solid;">\n'
        )

    @staticmethod
    def _code_inline(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
        ctx: RenderContext = env["ctx"]
        bg = ctx.color(QPalette.ColorRole.AlternateBase)
        return f'<code style="background-color:{bg};">{_esc(tokens[idx].content)}</code>'


@dataclass(frozen=True)
class TranscriptView:
    """How to draw the messages: which thinking blocks are open, which answer is still arriving."""

    expanded_thinking: frozenset[int] = frozenset()
    streaming_id: int | None = None
    last_assistant_id: int | None = None


@dataclass
class Rendered:
    html: str
    code_blocks: list[str]
    images: dict[str, bytes]


class TranscriptRenderer:
    def __init__(self) -> None:
        self.markdown = MarkdownRenderer()

    def render(self, messages: Sequence[Message], view: TranscriptView, palette: QPalette) -> Rendered:
        ctx = RenderContext(palette)
        parts = [self._message(m, view, ctx) for m in messages]
        if not messages:
            parts.append(
                f'<p style="color:{ctx.tone(Tone.MUTED)}">Write a message below to start. Enter sends,'
                " Shift+Enter starts a new line, Esc stops an answer.</p>"
            )
        return Rendered("\n".join(parts), ctx.code_blocks, ctx.images)

    def _message(self, m: Message, view: TranscriptView, ctx: RenderContext) -> str:
        muted = ctx.tone(Tone.MUTED)
        out: list[str] = []
        who = "You" if m.role == "user" else (m.model or "Assistant")
        actions: list[tuple[str, str]] = []
        streaming = view.streaming_id == m.id
        if m.role == "user":
            actions.append(("Edit", f"{SCHEME}:edit/{m.id}"))
        elif not streaming:
            actions.append(("Copy", f"{SCHEME}:copy-message/{m.id}"))
            if m.id == view.last_assistant_id:
                actions.append(("Regenerate", f"{SCHEME}:regenerate/{m.id}"))
        links = " · ".join(f'<a href="{href}">{label}</a>' for label, href in actions)
        out.append(
            f'<table width="100%" cellspacing="0" cellpadding="0"><tr><td><b>{_esc(who)}</b></td>'
            f'<td align="right"><span style="color:{muted}">{links}</span></td></tr></table>'
        )
        if m.truncated_messages:
            out.append(self._truncation_notice(m.truncated_messages, ctx))
        if m.thinking:
            out.append(self._thinking(m, m.id in view.expanded_thinking, streaming and not m.content, ctx))
        for call in m.tool_calls:
            out.append(
                f'<table width="100%" cellspacing="0" cellpadding="6" border="0"'
                f' bgcolor="{ctx.color(QPalette.ColorRole.AlternateBase)}"><tr><td>'
                f'<span style="color:{ctx.tone(Tone.ACCENT)}">🔧 Tool call</span> <b>{_esc(call.name)}</b>'
                f'<pre style="font-family: monospace; white-space: pre-wrap;">{_esc(call.arguments)}</pre></td></tr></table><br/>'
            )
        for i, data in enumerate(m.images):
            key = f"{SCHEME}-image:{m.id}/{i}"
            ctx.images[key] = data
            out.append(f'<img src="{key}" width="{THUMBNAIL_PX}"/> ')
        if m.content:
            out.append(self.markdown.render(m.content, ctx))
        elif streaming and not m.thinking and not m.tool_calls:
            out.append(f'<p style="color:{muted}">…</p>')
        out.append(self._footer(m, streaming, ctx))
        return f'<div style="margin-bottom: 14px;">{"".join(out)}</div><hr/>'

    @staticmethod
    def _truncation_notice(count: int, ctx: RenderContext) -> str:
        plural = "message was" if count == 1 else "messages were"
        return (
            f'<p style="color:{ctx.tone(Tone.WARNING)}">⚠ The conversation no longer fits the model\'s context:'
            f" the oldest {count} {plural} left out of this answer. Raise the context length in Options,"
            " or start a new chat.</p>"
        )

    def _thinking(self, m: Message, expanded: bool, live: bool, ctx: RenderContext) -> str:
        words = len(m.thinking.split())
        head = "Thinking…" if live else f"Thought for {words} word{'s' if words != 1 else ''}"
        arrow = "▾" if expanded else "▸"
        link = f'<a href="{SCHEME}:think/{m.id}">{arrow} {head}</a>'
        if not expanded:
            return f"<p>{link}</p>"
        body = self.markdown.render(m.thinking, ctx)
        return (
            f"<p>{link}</p>"
            f'<table width="100%" cellspacing="0" cellpadding="6" border="0"><tr><td>'
            f'<div style="color:{ctx.tone(Tone.MUTED)}">{body}</div></td></tr></table>'
        )

    @staticmethod
    def _footer(m: Message, streaming: bool, ctx: RenderContext) -> str:
        muted = ctx.tone(Tone.MUTED)
        if streaming:
            return ""
        notes = {
            MessageState.STOPPED: ("Stopped.", Tone.MUTED),
            MessageState.INTERRUPTED: ("Interrupted: pollama closed while this answer arrived.", Tone.WARNING),
            MessageState.FAILED: (f"The answer failed: {m.error or 'no details'}", Tone.ERROR),
        }
        out = ""
        if m.state in notes:
            text, tone = notes[m.state]
            out += f'<p style="color:{ctx.tone(tone)}">{_esc(text)}</p>'
        if m.stats is not None:
            out += f'<p style="color:{muted}; font-size: small;">{_esc(m.stats.line())}</p>'
        return out
