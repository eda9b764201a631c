"""The bit-parallel edit distance agrees with the textbook table."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.prompt.levenshtein import distance


def table(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcé𝄞", max_size=40), st.text(alphabet="abcé𝄞", max_size=40))
def test_matches_table(a: str, b: str) -> None:
    assert distance(a, b) == table(a, b)


def test_known_values() -> None:
    assert distance("kitten", "sitting") == 3
    assert distance("", "abc") == 3
    assert distance("same", "same") == 0
