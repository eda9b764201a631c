"""ThinkingParser: Ollama's behaviour, split invariance, losslessness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.prompt import ThinkingParser


def run(pieces: list[str], *, start_in_thinking: bool = False) -> tuple[str, str, ThinkingParser]:
    parser = ThinkingParser("<think>", "</think>", start_in_thinking=start_in_thinking, record=True)
    thinking, content = "", ""
    for piece in pieces:
        t, c = parser.feed(piece)
        thinking += t
        content += c
    t, c = parser.finish()
    return thinking + t, content + c, parser


def logged(parser: ThinkingParser) -> list[tuple[str, str]]:
    assert parser.log is not None  # run() builds its parser with record=True
    return parser.log


@pytest.mark.parametrize(
    ("output", "thinking", "content"),
    [
        ("<think>abc</think>def", "abc", "def"),
        ("  \n<think>\n\nabc\n</think>\n\ndef ghi", "abc\n", "def ghi"),
        ("no thinking here <think>x</think>", "", "no thinking here <think>x</think>"),
        ("  plain", "", "  plain"),
        ("<think>unfinished", "unfinished", ""),
        ("<think>abc</thi", "abc</thi", ""),
        ("<thi", "", "<thi"),
        ("<think>a</think>b</think>c", "a", "b</think>c"),
    ],
)
def test_cases(output: str, thinking: str, content: str) -> None:
    got_thinking, got_content, parser = run([output])
    assert (got_thinking, got_content) == (thinking, content)
    assert "".join(t for _, t in logged(parser)) == output


def test_streamed_partial_closing_tag_is_held() -> None:
    parser = ThinkingParser("<think>", "</think>")
    assert parser.feed("<think>abc</th") == ("abc", "")
    assert parser.feed("ink>  def") == ("", "def")


def test_prompt_ending_in_open_tag_starts_inside() -> None:
    parser = ThinkingParser.for_prompt("<think>", "</think>", "<|assistant|>\n<think>\n")
    assert parser.in_thinking
    assert parser.feed("\nreasoning</think>answer") == ("reasoning", "answer")
    assert not ThinkingParser.for_prompt("<think>", "</think>", "<|assistant|>").in_thinking


def test_empty_tags_refused() -> None:
    with pytest.raises(ValueError):
        ThinkingParser("", "</think>")


ATOMS = st.sampled_from(
    ["<think>", "</think>", "<th", "ink>", "</", " ", "\n", "\t", "a", "bc", "\u00a0", "é", "<", ">"]
)


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(ATOMS, max_size=30).map("".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10),
    inside=st.booleans(),
)
def test_split_invariant_and_lossless(text: str, cuts: list[int], inside: bool) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(text[last:p])
        last = p
    pieces.append(text[last:])
    whole = run([text], start_in_thinking=inside)
    split = run(pieces, start_in_thinking=inside)
    chars = run(list(text), start_in_thinking=inside)
    assert split[:2] == whole[:2] == chars[:2]
    for result in (whole, split, chars):
        assert "".join(t for _, t in logged(result[2])) == text
