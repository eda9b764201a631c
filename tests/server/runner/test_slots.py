"""Slot choice, num_keep and shift arithmetic (truncation: test_media)."""

from __future__ import annotations

from server.runner.slots import (
    Slot,
    cache_covers,
    choose_slot,
    common_prefix,
    effective_num_keep,
    reusable_prefix,
    shift_amount,
)


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def test_longest_prefix_wins() -> None:
    slots = [Slot(0, [1, 5, 6]), Slot(1, [1, 2, 3, 9]), Slot(2, [])]
    slot, n = choose_slot(slots, [1, 2, 3, 4])  # type: ignore[misc]
    assert slot.seq_id == 1 and n == 3


def test_shared_bos_only_takes_an_empty_slot() -> None:
    slots = [Slot(0, [1, 5, 6, 7], last_used=5), Slot(1, [], last_used=0)]
    slot, n = choose_slot(slots, [1, 2, 3, 4])  # type: ignore[misc]
    assert slot.seq_id == 1 and n == 0


def test_least_recently_used_when_nothing_matches() -> None:
    slots = [Slot(0, [7, 7], last_used=9), Slot(1, [8, 8], last_used=3)]
    slot, _ = choose_slot(slots, [1, 2])  # type: ignore[misc]
    assert slot.seq_id == 1


def test_busy_slots_are_skipped() -> None:
    slots = [Slot(0, [1, 2, 3], busy=True), Slot(1, [])]
    slot, n = choose_slot(slots, [1, 2, 3])  # type: ignore[misc]
    assert slot.seq_id == 1 and n == 0
    assert choose_slot([Slot(0, busy=True)], [1]) is None


def test_reusable_prefix_leaves_one_token_to_evaluate() -> None:
    assert reusable_prefix(5, 5) == 4
    assert reusable_prefix(3, 10) == 3
    assert reusable_prefix(0, 1) == 0


def test_num_keep() -> None:
    assert effective_num_keep(4, 10, 100, True) == 4
    assert effective_num_keep(0, 10, 100, True) == 1
    assert effective_num_keep(-1, 10, 100, False) == 10
    assert effective_num_keep(500, 10, 100, False) == 99


def test_shift_discards_half_after_keep() -> None:
    assert shift_amount(64, 4) == 30
    assert shift_amount(5, 4) == 1


def test_predict_limit_caps_at_ten_contexts() -> None:
    from server.runner.slots import predict_limit

    assert predict_limit(-1, 100) == 1000
    assert predict_limit(-2, 100) == 1000
    assert predict_limit(0, 100) == 1000
    assert predict_limit(5000, 100) == 1000
    assert predict_limit(50, 100) == 50


def test_a_full_cache_must_hold_position_zero_a_sliding_one_only_its_window() -> None:
    assert cache_covers(-1, 0, 0) and cache_covers(5, 0, 512)  # nothing to reuse: always fine
    assert cache_covers(0, 40, 0) and not cache_covers(3, 40, 0)
    assert not cache_covers(-1, 40, 16)  # the slot is empty although its tokens say otherwise
    assert cache_covers(24, 40, 16) and not cache_covers(25, 40, 16)
    assert cache_covers(0, 10, 16) and not cache_covers(1, 10, 16)  # BOS still in the window


def test_entries_kept_through_a_shift_are_not_offered_to_other_requests() -> None:
    shifted = Slot(seq_id=0, tokens=[1, 2, 3, 4, 9, 9, 9], stale_from=4)
    fresh = Slot(seq_id=1, tokens=[1, 2, 3, 4, 9], last_used=1)
    assert shifted.reusable([1, 2, 3, 4, 9, 9, 9, 7]) == 4
    assert choose_slot([shifted, fresh], [1, 2, 3, 4, 9, 9, 9, 7]) == (fresh, 5)
