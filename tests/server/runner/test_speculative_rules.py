"""The parts of speculative decoding that need no model: prompt lookup and the draft budget."""

from __future__ import annotations

from server.runner.speculative import (
    LONGEST_PAUSE,
    MISSES_BEFORE_PAUSE,
    DraftPace,
    NgramLookup,
    draft_budget,
    draft_length,
)


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


def test_the_draft_length_follows_what_was_accepted() -> None:
    pace = DraftPace(8)
    assert pace.wanted() == 8  # the first draft is as long as the request allows
    pace.record(8, 3)
    assert pace.wanted() == 4  # one longer than the part accepted
    pace.record(4, 4)
    assert pace.wanted() == 8  # accepted whole: twice as long, within the limit
    pace.record(8, 8)
    assert pace.wanted() == 8
    pace.record(0, 0)  # nothing drafted (a lookup that found nothing) changes nothing
    assert pace.wanted() == 8


def test_drafts_that_miss_pause_drafting_for_longer_each_time() -> None:
    pace = DraftPace(4)
    plan = []
    for _ in range(60):
        k = pace.wanted()
        plan.append(k)
        pace.record(k, 0)  # a drafter that is always wrong
    # 4 then 1 (one longer than nothing), then a pause of 1, 2, 4, 8, 16 decodes, each after
    # MISSES_BEFORE_PAUSE one-token tries
    assert plan[:2] == [4, 1]
    pauses, run = [], 0
    for k in plan[2:]:
        if k == 0:
            run += 1
        elif run:
            pauses.append(run)
            run = 0
    assert pauses[:5] == [1, 2, 4, 8, 16]
    assert sum(plan) < 20  # a fixed length of 4 drafts 240 tokens in these 60 decodes
    pace.record(1, 1)  # an accepted token ends the backing off
    assert (pace.misses, pace.next_pause) == (0, 1)


def test_a_long_pause_is_capped() -> None:
    pace = DraftPace(2)
    for _ in range(2000):
        pace.record(max(pace.wanted(), 1), 0)
    assert pace.next_pause == LONGEST_PAUSE and pace.pause <= LONGEST_PAUSE
    assert MISSES_BEFORE_PAUSE >= 1


def test_a_drafted_token_is_worth_it_while_its_chance_of_being_kept_beats_its_cost() -> None:
    assert draft_length(0.9, 0.0, 8) == 8  # free drafts: as long as allowed
    assert draft_length(0.9, 0.5, 8) == 6  # 0.9**6 = 0.53 > 0.5 >= 0.9**7
    assert draft_length(0.88, 0.89, 4) == 0  # the bench pair: not even one token pays
    assert draft_length(1.0, 1.0, 4) == 0  # a draft that costs a decode saves nothing


def test_a_draft_model_that_cannot_pay_drafts_little() -> None:
    """Right 7 tokens in 8 (0.875) where a drafted token costs 0.89 of a decode: after the
    first hopeful drafts it drafts about a token a decode or none, where a fixed length
    would draft 4 every decode."""
    pace = DraftPace(4, token_cost=0.89)
    plan, n = [], 0
    for _ in range(60):
        k = pace.wanted()
        plan.append(k)
        accepted = 0
        for _ in range(k):
            n += 1
            if n % 8 == 0:
                break
            accepted += 1
        pace.record(k, accepted)
    assert plan[:2] == [4, 4]  # hopeful until the misses bring the estimate down
    assert sum(plan[10:]) <= len(plan[10:])
    assert 0 in plan[10:]  # decodes without a draft
    free = DraftPace(4)
    assert [free.wanted() for _ in range(3)] == [4, 4, 4]
