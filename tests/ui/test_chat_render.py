"""The transcript renderer: Markdown, safe output, code blocks with Copy, thinking, tool calls, stats, truncation."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from ui.chat_api import AnswerStats, ChatChunk, ToolCall
from ui.chat_render import TranscriptRenderer, TranscriptView
from ui.chat_store import Message, MessageState
from ui.chat_widgets import TranscriptBrowser
from ui.theme import Scheme, Tone, scheme_of, tone_color


def msg(mid: int, role: str, content: str = "", **kw: object) -> Message:
    return Message(id=mid, conversation_id=1, role=role, content=content, **kw)  # type: ignore[arg-type]


def test_markdown_tables_and_code_blocks(qapp) -> None:
    text = "Here:\n\n| a | b |\n|---|---|\n| 1 | **2** |\n\n```python\nprint(1 < 2)\n```\n\nand `x` inline.\n\n    indented = True\n"
    out = TranscriptRenderer().render([msg(1, "assistant", text, model="tiny")], TranscriptView(), QPalette())
    assert '<table border="1"' in out.html and "<strong>2</strong>" in out.html
    assert out.code_blocks == ["print(1 < 2)\n", "indented = True\n"]
    assert 'href="pollama:copy/0"' in out.html and 'href="pollama:copy/1"' in out.html
    assert "print(1 &lt; 2)" in out.html and "python" in out.html
    browser = TranscriptBrowser()
    browser.set_transcript(out.html, out.images)
    plain = browser.toPlainText()
    assert "print(1 < 2)" in plain and "Copy" in plain and "indented = True" in plain


def test_model_output_cannot_inject_html_images_or_scripts(qapp) -> None:
    evil = (
        "<script>alert(1)</script> <img src='file:///etc/passwd'> <b>bold?</b>\n\n"
        "![cat](http://example.com/cat.png) ![local](/etc/hosts) [run](javascript:alert(1)) [site](https://example.com)"
    )
    out = TranscriptRenderer().render([msg(1, "assistant", evil)], TranscriptView(), QPalette())
    assert "<script" not in out.html and "<img src='file" not in out.html and "<b>bold?</b>" not in out.html
    assert "&lt;script&gt;" in out.html
    assert "<img" not in out.html  # no image tag for any Markdown image: nothing is fetched or read
    assert '<a href="http://example.com/cat.png">[image: cat]</a>' in out.html and "[image: local]" in out.html
    assert "javascript:" not in out.html.replace("[run](javascript:alert(1))", "")
    assert '<a href="https://example.com"' in out.html
    browser = TranscriptBrowser()
    assert browser.loadResource(2, QUrl("file:///etc/hosts")) is None  # the widget itself refuses too
    assert browser.loadResource(2, QUrl("https://example.com/cat.png")) is None


def test_thinking_folds_tool_calls_stats_and_the_truncation_notice(qapp) -> None:
    stats = AnswerStats(
        eval_count=12, eval_duration_ns=240_000_000, prompt_eval_duration_ns=50_000_000, first_piece_s=0.42
    )
    answer = msg(
        2,
        "assistant",
        "The answer.",
        model="tiny-think",
        thinking="secret musing about llamas",
        tool_calls=(ToolCall("get_weather", '{"city": "Paris"}'),),
        stats=stats,
        truncated_messages=3,
    )
    messages = [msg(1, "user", "Q?"), answer]
    r = TranscriptRenderer()
    folded = r.render(messages, TranscriptView(last_assistant_id=2), QPalette())
    assert "▸ Thought for 4 words" in folded.html and "secret musing" not in folded.html
    opened = r.render(messages, TranscriptView(expanded_thinking=frozenset({2}), last_assistant_id=2), QPalette())
    assert "▾ Thought for 4 words" in opened.html and "secret musing about llamas" in opened.html
    assert (
        "Tool call" in folded.html
        and "get_weather" in folded.html
        and "&quot;city&quot;: &quot;Paris&quot;" in folded.html
    )
    assert "12 tokens · 50.0 tokens/s · first token after 0.42 s (prompt 0.05 s)" in folded.html
    assert "the oldest 3 messages were left out of this answer" in folded.html
    assert 'href="pollama:regenerate/2"' in folded.html and 'href="pollama:edit/1"' in folded.html
    live = r.render(messages, TranscriptView(streaming_id=2), QPalette())
    assert "regenerate" not in live.html and "tokens/s" not in live.html  # no actions or stats while it streams


def test_states_read_in_words(qapp) -> None:
    r = TranscriptRenderer()
    for state, words in (
        (MessageState.STOPPED, "Stopped."),
        (MessageState.INTERRUPTED, "pollama closed while this answer arrived"),
        (MessageState.FAILED, "The answer failed: boom"),
    ):
        out = r.render([msg(1, "assistant", "part", state=state, error="boom")], TranscriptView(), QPalette())
        assert words in out.html


def test_final_chunk_parsing() -> None:
    chunk = ChatChunk.from_json(
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
            },
            "done": True,
            "done_reason": "stop",
            "eval_count": 10,
            "eval_duration": 500_000_000,
            "prompt_eval_duration": 1_000_000,
            "truncated_messages": 4,
        },
        first_piece_s=0.1,
    )
    assert chunk.done and chunk.truncated_messages == 4 and chunk.tool_calls == (ToolCall("f", '{"a": 1}'),)
    assert chunk.stats is not None and chunk.stats.tokens_per_second == 20.0 and chunk.stats.first_piece_s == 0.1
    assert ChatChunk.from_json({"message": {"content": 5}, "done": False}) == ChatChunk()


def test_meaning_colours_follow_the_scheme(qapp) -> None:
    from ui.theme import _dark_palette

    dark = _dark_palette()
    assert scheme_of(dark) is Scheme.DARK and scheme_of(QApplication.style().standardPalette()) is Scheme.LIGHT
    assert (
        tone_color(Tone.ERROR, dark).lightness()
        > tone_color(Tone.ERROR, QApplication.style().standardPalette()).lightness()
    )
    assert tone_color(Tone.MUTED, dark) == dark.color(QPalette.ColorRole.PlaceholderText)
    out = TranscriptRenderer().render([msg(1, "assistant", "```\nx\n```")], TranscriptView(), dark)
    assert dark.color(QPalette.ColorRole.AlternateBase).name() in out.html
