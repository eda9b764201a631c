"""Levenshtein distance, fast enough for whole chat templates without a C library.

Ollama picks the bundled template whose Jinja source is closest to a GGUF's
`tokenizer.chat_template` (agnivade/levenshtein, on runes). Templates run to
thousands of characters and there are dozens to compare, so the plain
O(n·m) table in Python would take seconds. Myers' bit-vector algorithm
(Hyyrö's formulation) keeps a whole DP column in one Python integer, making
the inner loop a handful of big-int operations per character of the text.
"""

from __future__ import annotations


def distance(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; each costs 1) between code-point strings."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    # Pattern = the shorter string (fewer bits per word), text = the longer.
    pattern, text = b, a
    m = len(pattern)
    peq: dict[str, int] = {}
    for i, ch in enumerate(pattern):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in text:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return score
