"""The parts of speculative decoding that need no model: prompt lookup and the draft budget."""

from __future__ import annotations

from server.runner.speculative import NgramLookup, draft_budget


def test_ngram_lookup_continues_the_latest_earlier_occurrence() -> None:
    lookup = NgramLookup(2)
    lookup.extend([1, 2, 3, 4, 9, 1, 2, 5, 6, 7, 1, 2])
    assert lookup.draft(3) == [5, 6, 7]  # the latest "1 2" before the end was followed by 5 6 7
    assert lookup.draft(0) == []
    lookup.extend([8])
    assert lookup.draft(3) == []  # "2 8" never occurred before
    short = NgramLookup(3)
    short.extend([1, 2])
    assert short.draft(4) == []


def test_draft_budget_respects_the_slot_the_batch_and_the_limit() -> None:
    assert draft_budget(4, context_room=100, batch_room=100, remaining=100) == 4
    assert draft_budget(4, context_room=3, batch_room=100, remaining=100) == 2
    assert draft_budget(4, context_room=100, batch_room=2, remaining=100) == 1
    assert draft_budget(4, context_room=100, batch_room=100, remaining=1) == 0
    assert draft_budget(4, context_room=0, batch_room=0, remaining=0) == 0
