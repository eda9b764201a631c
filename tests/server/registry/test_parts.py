"""The part planner and resume state, exhaustively and without sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.registry import parts as pp
from server.registry.parts import MB, Part, PartAttempts, PartSizing, RetryPolicy


@pytest.mark.parametrize(
    ("total", "size"),
    [
        (1, 32 * MB),  # tiny blobs: one part
        (262 * MB, 32 * MB),  # total/64 < 32 MB: clamped up
        (64 * 200 * MB, 200 * MB),  # in range: total/64
        (64 * 2000 * MB, 1000 * MB),  # clamped down
    ],
)
def test_part_size(total: int, size: int) -> None:
    assert PartSizing().part_size(total) == size


def test_ollamas_sizing_is_one_setting_away() -> None:
    ollama = PartSizing(min_size=100 * MB, max_parts=16)
    assert [ollama.part_size(t) for t in (262 * MB, 16 * 200 * MB, 16 * 2000 * MB)] == [100 * MB, 200 * MB, 1000 * MB]


def test_fixed_size_overrides() -> None:
    assert PartSizing(fixed_size=1234).part_size(10**12) == 1234


@given(st.integers(0, 10**7), st.integers(1, 1000))
def test_plan_tiles_the_blob(total: int, divisor: int) -> None:
    fixed = max(1, total // divisor)
    parts = pp.plan(total, PartSizing(fixed_size=fixed))
    assert sum(p.size for p in parts) == total
    cursor = 0
    for n, part in enumerate(parts):
        assert part.n == n and part.offset == cursor and part.size > 0 and part.completed == 0
        cursor = part.end
    assert pp.resume(total, parts) == (parts or None)


def test_plan_of_bench_blob() -> None:
    parts = pp.plan(262_059_552, PartSizing())
    assert [p.size for p in parts] == [32 * MB] * 8 + [6_059_552]


@pytest.mark.parametrize(
    ("width", "limit", "rate", "after"),
    [
        (2, 16, 2 * 200 * MB, 2),  # each lane fast: the machine is the limit, not the path
        (2, 16, 2 * 20 * MB, 4),  # slow lanes: double
        (8, 16, 8 * 20 * MB, 16),
        (16, 16, 0.0, 16),  # never past the configured parallelism
        (2, 3, 0.0, 3),
    ],
)
def test_lanes_widen_only_while_each_is_slow(width: int, limit: int, rate: float, after: int) -> None:
    assert pp.LanePolicy().next_width(width, limit, rate) == after


def test_part_json_is_ollamas_shape() -> None:
    part = Part(2, 200, 100, 42)
    assert json.loads(part.to_json()) == {"N": 2, "Offset": 200, "Size": 100, "Completed": 42}
    assert Part.from_json(part.to_json()) == part


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"N":0}',
        b'{"N":0,"Offset":0,"Size":10,"Completed":11}',
        b'{"N":-1,"Offset":0,"Size":1,"Completed":0}',
        b'{"N":0,"Offset":0,"Size":0,"Completed":0}',
        b'{"N":true,"Offset":0,"Size":1,"Completed":0}',
        b'{"N":0,"Offset":"0","Size":1,"Completed":0}',
    ],
)
def test_damaged_records_are_ignored(raw: bytes) -> None:
    assert Part.from_json(raw) is None


def test_resume_accepts_any_tiling_in_any_order() -> None:
    recs = [Part(1, 50, 50, 7), Part(0, 0, 50, 50)]
    assert [p.n for p in pp.resume(100, recs) or []] == [0, 1]


@pytest.mark.parametrize(
    "recs",
    [
        [Part(0, 0, 50), Part(1, 60, 40)],  # gap
        [Part(0, 0, 60), Part(1, 50, 50)],  # overlap
        [Part(0, 0, 50), Part(0, 50, 50)],  # duplicate number
        [Part(0, 0, 50)],  # short
        [Part(0, 0, 50), Part(1, 50, 60)],  # long
        [],
    ],
)
def test_resume_rejects_state_that_does_not_tile(recs: list[Part]) -> None:
    assert pp.resume(100, recs) is None


def test_restore_needs_the_data_file_at_full_size() -> None:
    recs = [Part(0, 0, 50, 20), Part(1, 50, 50, 0)]
    parts, resumed = pp.restore(100, PartSizing(fixed_size=50), recs, 100)
    assert resumed and pp.completed(parts) == 20
    for size in (None, 0, 99):
        parts, resumed = pp.restore(100, PartSizing(fixed_size=50), recs, size)
        assert not resumed and pp.completed(parts) == 0


def test_restore_of_untouched_records_is_not_a_resume() -> None:
    parts, resumed = pp.restore(100, PartSizing(fixed_size=50), [Part(0, 0, 50), Part(1, 50, 50)], 100)
    assert not resumed and len(parts) == 2


def test_frontier_stops_at_first_incomplete_part() -> None:
    parts = [Part(0, 0, 10, 10), Part(1, 10, 10, 4), Part(2, 20, 10, 10)]
    assert pp.frontier(parts) == 14
    parts[1].completed = 10
    assert pp.frontier(parts) == 30
    assert pp.frontier([]) == 0


@pytest.mark.parametrize(
    ("status", "content_range", "skip"),
    [
        (206, "bytes 120-149/1000", 0),
        (206, "bytes 100-149/*", None),  # not where we asked
        (206, None, None),
        (206, "garbage", None),
        (200, None, 120),  # server ignored Range: skip to our byte
        (416, None, None),
        (500, None, None),
    ],
)
def test_skip_for_responses(status: int, content_range: str | None, skip: int | None) -> None:
    assert pp.skip_for(status, content_range, 120) == skip


def test_retry_policy_backs_off_then_gives_up() -> None:
    policy = RetryPolicy(max_tries=4, backoff_base=1.0, backoff_max=3.0)
    a = PartAttempts(policy)
    assert [a.failed(progressed=False, stalled=False) for _ in range(4)] == [1.0, 2.0, 3.0, None]


def test_stall_is_not_counted_and_progress_resets() -> None:
    a = PartAttempts(RetryPolicy(max_tries=2, backoff_base=0.5))
    assert a.failed(progressed=False, stalled=False) == 0.5
    for _ in range(10):
        assert a.failed(progressed=False, stalled=True) == 0.0
    assert a.failures == 1
    assert a.failed(progressed=True, stalled=False) == 0.5  # reset, then counted once
    assert a.failed(progressed=False, stalled=False) is None
    assert PartAttempts(RetryPolicy()).failed(progressed=False, stalled=False, permanent=True) is None
