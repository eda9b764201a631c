"""Image spans in prompts: markers, sentinels, and cuts that never split an image."""

from __future__ import annotations

import pytest

from server.runner.media import ImageSpan, safe_prefix, sentinel, split_markers, truncate_with_images
from server.runner.slots import PromptTooLong, Slot, choose_slot


def test_split_markers_keeps_text_and_order() -> None:
    assert split_markers("a [img-1] b [img-0][img-1]c", 2) == (["a ", " b ", "", "c"], [1, 0, 1])
    assert split_markers("no markers", 3) == (["no markers"], [])
    with pytest.raises(ValueError, match="invalid image index: 2"):
        split_markers("[img-2]", 2)


def test_sentinels_are_negative_stable_and_distinct() -> None:
    a, b = sentinel("31eeadce1dcb07fd"), sentinel("9abc000000000001")
    assert a < 0 and b < 0 and a != b
    assert sentinel("31eeadce1dcb07fd") == a
    assert sentinel("") < 0


def prompt() -> tuple[list[int], list[ImageSpan]]:
    """BOS, 3 text tokens, a 4-position image, 2 text tokens, a 3-position image, 1 token."""
    x, y = sentinel("aa"), sentinel("bb")
    tokens = [1, 10, 11, 12, x, x, x, x, 20, 21, y, y, y, 30]
    return tokens, [ImageSpan(4, 4), ImageSpan(10, 3)]


def test_safe_prefix_backs_off_to_image_start() -> None:
    _, spans = prompt()
    assert [safe_prefix(k, spans) for k in (0, 4, 5, 7, 8, 11, 13, 14)] == [0, 4, 4, 4, 8, 10, 13, 14]


def test_prefix_reuse_with_images_picks_the_matching_slot() -> None:
    tokens, _ = prompt()
    other = list(tokens)
    other[4:8] = [sentinel("cc")] * 4
    slots = [Slot(0, tokens=other), Slot(1, tokens=tokens[:9])]
    slot, common = choose_slot(slots, tokens)  # type: ignore[misc]
    assert slot.seq_id == 1 and common == 9
    slot, common = choose_slot([Slot(0, tokens=other)], tokens)  # type: ignore[misc]
    assert common == 4  # the differing image ends the match at its first position


def test_truncation_of_text_keeps_head_and_tail() -> None:
    tokens = list(range(20))
    assert truncate_with_images(tokens, [], 10, 3, True) == ([0, 1, 2, 13, 14, 15, 16, 17, 18, 19], [])
    assert truncate_with_images(tokens, [], 30, 3, False) == (tokens, [])
    with pytest.raises(PromptTooLong, match="the input length exceeds the context length"):
        truncate_with_images(tokens, [], 10, 3, False)


def test_truncation_drops_whole_images_only() -> None:
    tokens, spans = prompt()
    kept, kept_spans = truncate_with_images(tokens, spans, n_ctx=10, num_keep=1, truncate=True)
    # dropping 4 after BOS would cut the first image; the cut grows to its end
    assert kept == [1, 20, 21, *[tokens[10]] * 3, 30]
    assert kept_spans == [ImageSpan(3, 3)]
    # num_keep 6 would keep half of the first image: the head stops before it, and it goes
    kept, kept_spans = truncate_with_images(tokens, spans, n_ctx=12, num_keep=6, truncate=True)
    assert kept == tokens[:4] + tokens[8:]
    assert kept_spans == [ImageSpan(6, 3)]
    assert truncate_with_images(tokens, spans, n_ctx=64, num_keep=1, truncate=False) == (tokens, spans)
    with pytest.raises(PromptTooLong):
        truncate_with_images(tokens, spans, n_ctx=10, num_keep=1, truncate=False)
