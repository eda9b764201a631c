"""Which lane fetches which parts, without sockets: stretches, splits, reservations."""

from __future__ import annotations

import random
import threading

from hypothesis import given
from hypothesis import strategies as st

from server.registry import parts as pp
from server.registry.claims import Claim, Claims, stretches
from server.registry.parts import Part


def fresh(n: int, size: int = 10) -> list[Part]:
    return [Part(i, i * size, size) for i in range(n)]


def test_a_fresh_blob_is_one_request() -> None:
    claims = Claims(fresh(9))
    claim = claims.take()
    assert claim is not None
    assert claim.range_header() == "bytes=0-89"
    assert [p.n for p in claim.parts] == list(range(9))


def test_partly_written_parts_start_new_stretches_and_done_ones_are_skipped() -> None:
    parts = [
        Part(0, 0, 10, 10),
        Part(1, 10, 10, 4),
        Part(2, 20, 10),
        Part(3, 30, 10, 10),
        Part(4, 40, 10),
        Part(5, 50, 10, 3),
    ]
    assert [[p.n for p in run] for run in stretches(parts)] == [[1, 2], [4], [5]]
    claims = Claims(parts)
    headers = [claims.take().range_header() for _ in range(3)]  # type: ignore[union-attr]
    assert headers == ["bytes=14-29", "bytes=40-49", "bytes=53-59"]


def test_an_added_lane_takes_the_back_half_of_the_untouched_parts() -> None:
    claims = Claims(fresh(9))
    first = claims.take()
    assert first is not None
    assert claims.reserve(first, 0, 15) == 15  # writing into part 1
    second = claims.take()
    assert second is not None
    # parts 2..8 untouched: the new lane takes 5..8, the first lane now stops at 50
    assert [p.n for p in second.parts] == [5, 6, 7, 8] and second.range_header() == "bytes=50-89"
    assert first.end == 50 and [p.n for p in first.parts] == [0, 1, 2, 3, 4]
    assert claims.room(first, 15) == 35


def test_bytes_read_past_a_split_are_not_written() -> None:
    claims = Claims(fresh(4))
    first = claims.take()
    assert first is not None
    assert claims.take() is not None  # parts 2..3 go: first now ends at 20
    assert claims.reserve(first, 15, 10) == 5
    assert claims.reserve(first, 20, 10) == 0


def test_a_part_being_written_is_never_handed_out() -> None:
    claims = Claims(fresh(2))
    first = claims.take()
    assert first is not None
    claims.reserve(first, 0, 10)  # part 0 is reserved to its end: part 1 is still untouched
    second = claims.take()
    assert second is not None and [p.n for p in second.parts] == [1]
    claims.reserve(second, 10, 5)
    assert claims.take() is None  # one part left in each, both being written


def test_a_claim_nobody_started_is_not_split_down_to_nothing() -> None:
    claims = Claims(fresh(1))
    assert claims.take() is not None
    assert claims.take() is None


def test_a_failed_try_gives_up_its_reservation() -> None:
    claims = Claims(fresh(6))
    claim = claims.take()
    assert claim is not None
    claims.reserve(claim, 0, 35)
    claim.record(0, 12)  # only 12 bytes reached the disk before the failure
    assert claims.restart(claim) == 12
    assert [p.n for p in claims.take().parts] == [4, 5]  # type: ignore[union-attr]  # of 2..5, not of 4..5


def test_record_counts_bytes_in_every_part_they_cover() -> None:
    claim = Claim(fresh(3), 30)
    claim.record(0, 25)
    assert [p.completed for p in claim.parts] == [10, 10, 5]
    assert claim.next_byte == 25 and claim.range_header() == "bytes=25-29"
    claim.record(25, 5)
    assert claim.done


def test_released_claims_are_not_split() -> None:
    claims = Claims(fresh(4))
    claim = claims.take()
    assert claim is not None
    claims.release(claim)
    assert claims.take() is None


@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 25), st.integers(0, 2**32))
def test_lanes_that_split_work_write_every_byte_exactly_once(n_parts: int, size: int, step: int, seed: int) -> None:
    """Lanes taking, splitting and writing in random order cover the blob with no byte written twice."""
    rnd = random.Random(seed)
    parts = fresh(n_parts, size)
    total = n_parts * size
    claims = Claims(parts)
    written = bytearray(total)
    lanes: list[tuple[Claim, int]] = []
    while True:
        if not lanes or (rnd.random() < 0.3 and len(lanes) < 4):
            claim = claims.take()
            if claim is not None:
                lanes.append((claim, claims.restart(claim)))
            elif not lanes:
                break
            continue
        i = rnd.randrange(len(lanes))
        claim, position = lanes[i]
        n = claims.reserve(claim, position, min(step, claims.room(claim, position)))
        for b in range(position, position + n):
            written[b] += 1
        claim.record(position, n)
        if n == 0 or claim.done:
            claims.release(claim)
            lanes.pop(i)
        else:
            lanes[i] = (claim, position + n)
    assert set(written) == {1}
    assert pp.completed(parts) == total and pp.frontier(parts) == total


def test_concurrent_lanes_cover_the_blob() -> None:
    parts = fresh(64, 1000)
    claims = Claims(parts)
    counts = bytearray(64_000)
    lock = threading.Lock()

    def lane() -> None:
        while (claim := claims.take()) is not None:
            position = claims.restart(claim)
            while room := claims.room(claim, position):
                n = claims.reserve(claim, position, min(300, room))
                with lock:
                    for b in range(position, position + n):
                        counts[b] += 1
                claim.record(position, n)
                position += n
            claims.release(claim)

    threads = [threading.Thread(target=lane) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(counts) == {1}
