"""Slot choice, num_keep and shift arithmetic (truncation: test_media)."""

from __future__ import annotations

from server.runner.slots import (
    Placement,
    Slot,
    aligned_reuse,
    cache_covers,
    choose_slot,
    chunk_boundary,
    chunk_room,
    common_prefix,
    effective_num_keep,
    even_chunks,
    place,
    reusable_prefix,
    runs,
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


def plan(prompt_len: int, start: int, unit: int, capacity: int, edges: tuple[int, ...] = ()) -> list[tuple[int, int]]:
    """The chunks the engine's aligned mode cuts a prompt into, from `start`, in an empty batch
    of `capacity` rows each step (images cut the room at their start, as the engine does)."""
    chunks, pos = [], start
    while pos < prompt_len:
        image = next((e for e in edges if e > pos), None)
        take = chunk_room(pos, capacity, unit, (prompt_len if image is None else image) - pos)
        chunks.append((pos, pos + take))
        pos += take
    return chunks


def ubatches(chunks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The 512-token micro-batches llama.cpp cuts each decode into (`split_simple`)."""
    return [(a, min(a + 512, b)) for s, b in chunks for a in range(s, b, 512)]


def test_chunk_boundaries_are_multiples_of_the_unit_and_image_edges() -> None:
    assert chunk_boundary(0, 512) == 0
    assert chunk_boundary(511, 512) == 0
    assert chunk_boundary(512, 512) == 512
    assert chunk_boundary(1300, 512) == 1024
    assert chunk_boundary(1300, 512, (1100, 1200)) == 1200
    assert chunk_boundary(1300, 512, (1100, 1400)) == 1100
    assert chunk_boundary(1300, 512, (900, 1000)) == 1024  # the later boundary wins


def test_a_fresh_prompt_is_cut_at_absolute_multiples() -> None:
    assert plan(1300, 0, 512, 512) == [(0, 512), (512, 1024), (1024, 1300)]
    # a batch of several micro-batches: each decode ends on a multiple of the micro-batch
    assert plan(3000, 0, 512, 2048) == [(0, 2048), (2048, 3000)]
    assert plan(3000, 512, 512, 2048) == [(512, 2560), (2560, 3000)]
    assert plan(3000, 1000, 512, 2048) == [(1000, 1024), (1024, 3000)]  # off the grid: onto it first


def test_evaluation_from_a_boundary_cuts_the_chunks_a_fresh_prompt_has() -> None:
    """The property the rule exists for: from any reused boundary on, the chunks are the fresh
    prompt's own (for a batch of several micro-batches, the micro-batches are)."""
    for prompt_len in (1, 37, 511, 512, 513, 1300, 2049):
        fresh = plan(prompt_len, 0, 512, 512)
        for keep in range(0, prompt_len, 512):
            assert plan(prompt_len, keep, 512, 512) == [c for c in fresh if c[0] >= keep]
        for keep in range(0, prompt_len, 512):  # micro-batch boundaries with n_batch 2048
            fresh4 = ubatches(plan(prompt_len, 0, 512, 2048))
            assert ubatches(plan(prompt_len, keep, 512, 2048)) == [u for u in fresh4 if u[0] >= keep]
    # text after an image (ends at 900) reaches the grid before a long decode
    after_image = ubatches(plan(3000, 900, 512, 2048))
    assert after_image[:2] == [(900, 1024), (1024, 1536)]
    assert ubatches(plan(3000, 1024, 512, 2048)) == after_image[1:]


def test_images_are_boundaries_and_text_resumes_aligned() -> None:
    # an image at [700, 900): text up to it, the image alone (not planned here), then text
    assert plan(700, 0, 512, 512, (700, 900)) == [(0, 512), (512, 700)]
    assert chunk_room(900, 512, 512, 1000) == 124  # from the image's end to the next multiple
    assert chunk_room(900, 512, 512, 50) == 50  # or to the end of the prompt


def test_a_short_room_takes_what_fits_and_realigns_after() -> None:
    assert chunk_room(0, 300, 512, 1300) == 300  # another sequence filled the batch: a partial chunk
    assert chunk_room(300, 512, 512, 1000) == 212  # then back onto the boundary
    assert chunk_room(300, 512, 512, 100) == 100
    assert chunk_room(512, 512, 512, 1000) == 512


def test_only_whole_exact_chunks_are_reused() -> None:
    # a 1300-token prompt evaluated aligned leaves 1024 exact entries (the partial last chunk is not)
    assert aligned_reuse(1299, 1024, 512) == 1024
    assert aligned_reuse(1000, 1024, 512) == 512  # the match ends inside a chunk: back to its start
    assert aligned_reuse(40, 1024, 512) == 0  # a short shared prefix is evaluated again
    assert aligned_reuse(1299, 0, 512) == 0  # nothing exact (e.g. computed beside another sequence)
    assert aligned_reuse(1299, 1200, 512, (1100, 1200)) == 1200  # up to an image's end


# ---- placement: keeping running sequences in consecutive slots (`place`) --------------------


def test_runs_counts_consecutive_id_groups() -> None:
    assert runs([]) == 0
    assert runs([3]) == 1
    assert runs([0, 1, 2, 5]) == 2
    assert runs([7, 0, 5, 1, 6]) == 2  # order does not matter
    assert runs(range(0, 16, 2)) == 8


def test_nothing_running_keeps_least_recently_used_choice() -> None:
    slots = [Slot(0, [7], last_used=9), Slot(1, [8], last_used=3), Slot(2, [9], last_used=5)]
    placed = place(slots, [1, 2], can_copy=True)
    assert placed == Placement(slots[1], 0)


def test_empty_slot_next_to_the_running_ones_is_taken() -> None:
    slots = [Slot(0, [1], busy=True), Slot(1, []), Slot(2, []), Slot(3, [], last_used=0)]
    slots[1].last_used = 4  # LRU would say slot 2 or 3
    placed = place(slots, [5, 6], can_copy=True)
    assert placed == Placement(slots[1], 0)


def test_a_hole_between_two_runs_is_filled_first() -> None:
    slots = [Slot(i, [], busy=i in (0, 1, 3, 4)) for i in range(8)]
    placed = place(slots, [5, 6], can_copy=True)
    assert placed is not None and placed.slot.seq_id == 2 and placed.move is None


def test_the_cache_lru_gives_up_is_still_the_one_given_up() -> None:
    """No prefix worth keeping: LRU picks slot 3, whose cache is given up; slot 1, next to the
    running slot 0, holds a newer conversation, which is copied to slot 3's stream."""
    recent = Slot(1, [4, 4, 4], last_used=8, exact=2)
    old = Slot(3, [5, 5], last_used=1)
    slots = [Slot(0, [9], busy=True), recent, Slot(2, [6], last_used=5), old]
    placed = place(slots, [1, 2, 3], can_copy=True)
    assert placed == Placement(recent, 0, move=(recent, old))


def test_without_stream_copies_a_cache_is_never_sacrificed_for_contiguity() -> None:
    slots = [Slot(0, [9], busy=True), Slot(1, [4, 4], last_used=8), Slot(2, [5], last_used=1)]
    assert place(slots, [1, 2], can_copy=False) == Placement(slots[2], 0)


def test_a_prefix_hit_is_copied_next_to_the_running_ones_only_into_an_empty_slot() -> None:
    hit = Slot(3, [1, 2, 3, 8], last_used=2)
    slots = [Slot(0, [9], busy=True), Slot(1, []), Slot(2, [7], last_used=1), hit]
    assert place(slots, [1, 2, 3, 4], can_copy=True) == Placement(slots[1], 3, move=(hit, slots[1]))
    assert place(slots, [1, 2, 3, 4], can_copy=False) == Placement(hit, 3)
    slots[1].tokens = [6]  # the home holds a cache: the hit stays where it is
    assert place(slots, [1, 2, 3, 4], can_copy=True) == Placement(hit, 3)


def test_a_slot_that_adds_no_run_is_left_alone() -> None:
    slots = [Slot(0, [1], busy=True), Slot(1, [7], last_used=1), Slot(2, [8], last_used=4)]
    assert place(slots, [5], can_copy=True) == Placement(slots[1], 0)


def test_a_chunk_one_token_longer_than_the_shortest_is_cut_to_it() -> None:
    assert even_chunks([15, 16, 15, 16]) == [15, 15, 15, 15]
    assert even_chunks([7]) == [7]
    assert even_chunks([]) == []


def test_a_longer_remainder_is_not_cut() -> None:
    # the 3 tokens cut from a 24-token prompt would cost a pass of their own in the next step
    assert even_chunks([21, 24, 21, 24]) == [21, 24, 21, 24]
    assert even_chunks([800, 850, 801]) == [800, 850, 800]


def test_a_long_prompt_is_not_held_back_by_a_short_one() -> None:
    assert even_chunks([15, 497]) == [15, 497]
    assert even_chunks([15, 16, 40]) == [15, 15, 40]
