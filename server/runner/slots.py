"""Slot bookkeeping that needs no llama.cpp: which slot a prompt should take, how much of a
prompt survives truncation, and how far a context shift moves things.

Each slot is one llama.cpp sequence id. `tokens` mirrors exactly what that sequence
holds in the KV cache, position i = tokens[i]; keeping that invariant is what makes
prefix reuse and context shifting plain list arithmetic. Two things can make a cached
entry unfit for another request although its token matches: a context shift (the entries
after `num_keep` were computed over tokens that are gone, `Slot.stale_from`) and a
sliding-window cache that overwrote positions which left its window (`cache_covers`).

A third makes a matching entry differ in its last bits: the batch it was computed in. llama.cpp's
kernels give a row results that depend on the shape of the batch around it (which rows go
through a tiled GEMM and which through a GEMV, the query count of the attention), so a prefix
computed as part of another prompt is not bit for bit what this prompt would compute, and greedy
text can change. `Slot.exact` and the aligned-chunk rule (`chunk_boundary`, `chunk_room`) keep
that out where it is asked for: prompts are evaluated in chunks whose boundaries sit at fixed
absolute positions, and only whole chunks computed that way are taken over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: int = 0  # step counter when the slot was last released; for LRU ties
    #: From this position on, the entries were kept through a context shift: they were computed
    #: with attention to tokens no longer in `tokens`, so they serve the generation that shifted
    #: and no later request (a fresh evaluation of `tokens` would give other values).
    stale_from: int | None = None
    #: The first `exact` entries were computed in aligned chunks, each decoded whole and alone:
    #: bit for bit what a fresh evaluation of `tokens[:exact]` as a prompt gives.
    exact: int = 0

    def reusable(self, prompt: Sequence[int]) -> int:
        """How many of this slot's cached entries a request for `prompt` may take over."""
        n = common_prefix(self.tokens, prompt)
        return n if self.stale_from is None else min(n, self.stale_from)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


SIMILARITY = 0.5  # share at least this much of the prompt, or take the least recently used slot


def is_prefix_hit(common: int, prompt_len: int) -> bool:
    """Whether `common` cached tokens are worth running a prompt of `prompt_len` in their slot."""
    return common > 0 and common >= SIMILARITY * prompt_len


def choose_slot(slots: Sequence[Slot], prompt: Sequence[int]) -> tuple[Slot, int] | None:
    """The free slot to run `prompt` in, and how many of its cached tokens match.

    The slot with the longest common prefix wins when that prefix covers at least
    SIMILARITY of the prompt; otherwise the least recently used free slot is taken, so a
    prompt that merely shares a BOS token does not wipe another conversation's cache
    (llama-server's rule)."""
    free = [s for s in slots if not s.busy]
    if not free:
        return None
    scored = [(s.reusable(prompt), s) for s in free]
    n, best = max(scored, key=lambda item: (item[0], -item[1].last_used))
    if is_prefix_hit(n, len(prompt)):
        return best, n
    n, lru = min(scored, key=lambda item: (bool(item[1].tokens), item[1].last_used))
    return lru, n


def runs(seq_ids: Iterable[int]) -> int:
    """How many maximal runs of consecutive ids the set holds ({0, 1, 2, 5} is two)."""
    ordered = sorted(set(seq_ids))
    return sum(1 for i, sid in enumerate(ordered) if i == 0 or sid != ordered[i - 1] + 1)


@dataclass(frozen=True)
class Placement:
    """Where a new sequence runs (`slot`, sharing `common` cached tokens with its prompt), and
    the cache to copy first, if any: `move` = (from, to), a whole KV stream."""

    slot: Slot
    common: int
    move: tuple[Slot, Slot] | None = None


def place(slots: Sequence[Slot], prompt: Sequence[int], *, can_copy: bool) -> Placement | None:
    """`choose_slot`, then kept next to the sequences already running where that costs no cache.

    With a split KV cache (one stream per sequence) llama.cpp cuts a step's batch into
    micro-batches of consecutive sequence ids (`llama_batch_allocr::split_equal`, sequential),
    each a pass over all the weights: 8 streams in slots 0, 2, 4 … 14 decode at 2.6× the cost
    of 8 in slots 0–7. So a new sequence goes to a free slot that keeps the running ones in
    fewest runs (`contiguous_home`) when `choose_slot`'s pick would add a run:
    - an empty home is simply taken; a prefix the pick would have reused is copied along
      (`can_copy`), so the hit is not lost;
    - a home that holds another conversation's cache, when the pick was the least recently
      used slot (no prefix worth keeping), hands that cache to the pick's stream (`can_copy`):
      the cache LRU gives up is still the one given up, the request runs in the home;
    - a home holding a cache while the pick is a prefix hit: the hit is worth more, it stays.
    A stream copy is a memcpy of the whole stream (13 ms for the bench model's 4096-token slot,
    a third of one decode step), repaid by the first step it saves."""
    chosen = choose_slot(slots, prompt)
    if chosen is None:
        return None
    slot, common = chosen
    home = contiguous_home(slots, slot)
    if home is None:
        return Placement(slot, common)
    hit = is_prefix_hit(common, len(prompt))
    if not home.tokens:
        if hit and can_copy:
            return Placement(home, common, move=(slot, home))
        return Placement(slot, common) if hit else Placement(home, 0)
    if hit or not can_copy:
        return Placement(slot, common)
    return Placement(home, home.reusable(prompt), move=(home, slot))


def contiguous_home(slots: Sequence[Slot], chosen: Slot) -> Slot | None:
    """A free slot that keeps the busy slots' ids in fewer runs than `chosen` would, if any:
    the fewest runs, then an empty one, then the least recently used."""
    busy = [s.seq_id for s in slots if s.busy]
    if not busy:
        return None
    base = runs([*busy, chosen.seq_id])
    scored = [
        (runs([*busy, s.seq_id]), bool(s.tokens), s.last_used, s) for s in slots if not s.busy and s is not chosen
    ]
    better = [item for item in scored if item[0] < base]
    if not better:
        return None
    return min(better, key=lambda item: item[:3])[3]


def even_chunks(lengths: Sequence[int]) -> list[int]:
    """How many tokens each of a step's prompt chunks keeps, so that none costs a pass for
    its last token alone.

    llama.cpp's micro-batches for a split KV cache take the same number of tokens from every
    sequence in them (`split_equal`: it adds a token of each until one has none left), so
    eight prompts of 15 and 16 tokens decode as a pass of 8 × 15 and further passes for the
    16th tokens, each a pass over all the weights for one token. A chunk one token longer
    than the shortest is cut to the shortest: its last token waits one step and rides in
    the next step's pass of one-token rows, where it costs nothing. A longer remainder is
    not cut: it would need a pass of its own in the next step too (that step's first
    micro-batch takes one token of each sequence), so cutting it saves nothing; in a
    16-stream burst of 21- and 24-token prompts the cut added a 128 ms pass. Nor is a long
    prompt ever held back by short ones arriving beside it."""
    if len(lengths) < 2:
        return list(lengths)
    shortest = min(lengths)
    return [shortest if n == shortest + 1 else n for n in lengths]


def cache_covers(pos_min: int, next_pos: int, n_swa: int) -> bool:
    """Whether a sequence whose oldest cached position is `pos_min` can go on at `next_pos`.

    A full cache must hold everything from position 0. A sliding-window (iSWA) cache only
    needs the window before `next_pos`, but llama.cpp overwrites positions that left the
    window of the furthest position it has seen (`llama_kv_cache::find_slot`), so after a
    long generation the start of a conversation is gone from it even when the token list
    still shows it; reusing such a prefix is what produced garbage after a shift. The
    bound is kept one position wider than the window, as llama-server does
    (`server_context` prompt loading, `pos_min_thold`)."""
    if next_pos <= 0:
        return True
    if pos_min < 0:
        return False
    return pos_min <= (max(0, next_pos - n_swa) if n_swa > 0 else 0)


def chunk_boundary(pos: int, unit: int, edges: Sequence[int] = ()) -> int:
    """The last chunk boundary at or before `pos`: a multiple of `unit` (the micro-batch), or
    an image's start or end (`edges`; an image is decoded on its own, text resumes after it).

    A fresh prompt is cut at every boundary, so the entries before a boundary depend only on
    the tokens before it; reusing a cache up to a boundary and evaluating on from there gives
    the batches a fresh evaluation would have had."""
    if unit <= 0 or pos <= 0:
        return max(pos, 0) if unit <= 0 else 0
    best = (pos // unit) * unit
    for edge in edges:
        if best < edge <= pos:
            best = edge
    return best


def chunk_room(pos: int, room: int, unit: int, rest: int) -> int:
    """How many prompt tokens from `pos` to put in a batch with `room` rows left, when `rest`
    remain before the prompt's end or its next image. Every micro-batch llama.cpp cuts from a
    decode must cover `[k*unit, (k+1)*unit)` (or end the prompt, or stop at an image): from an
    off-grid `pos` (an image's end) only up to the next multiple; from the grid all that is
    left if it fits (llama.cpp cuts it on the grid), else up to the furthest multiple that
    fits; only when not even that fits (another sequence took the rows) the room, a partial
    chunk that `Slot.exact` does not count."""
    if unit <= 0:
        return min(rest, room)
    if pos % unit:
        return min(rest, room, unit - pos % unit)
    if rest <= room:
        return rest
    end = ((pos + room) // unit) * unit
    return end - pos if end > pos else room


def aligned_reuse(keep: int, exact: int, unit: int, edges: Sequence[int] = ()) -> int:
    """Of `keep` matching cached tokens, how many may be reused so that the result is the
    fresh one's: only entries computed in whole aligned chunks (`exact`), cut back to a
    chunk boundary; the partial chunk after it is evaluated again."""
    return chunk_boundary(min(keep, exact), unit, edges)


def reusable_prefix(common: int, prompt_len: int) -> int:
    """How many cached tokens to keep: all shared ones, but at least one prompt token must be
    evaluated again so the last position yields logits."""
    return min(common, max(prompt_len - 1, 0))


def effective_num_keep(num_keep: int, prompt_len: int, n_ctx: int, add_bos: bool) -> int:
    """Ollama's num_keep: negative keeps the whole prompt; BOS is always kept; never the
    whole context (something must be discardable)."""
    keep = prompt_len if num_keep < 0 else num_keep
    if add_bos:
        keep = max(keep, 1)
    return max(0, min(keep, n_ctx - 1))


class PromptTooLong(ValueError):
    pass


def shift_amount(n_past: int, num_keep: int) -> int:
    """Tokens to discard after num_keep when the context is full: half of the rest."""
    return max((n_past - num_keep) // 2, 1)


def predict_limit(num_predict: int, n_ctx: int) -> int:
    """Ollama caps generation at 10 × num_ctx (ten context shifts) so that a model that never
    emits EOS cannot run forever; 0 and negative (infinite, fill-context) mean that cap, since
    Ollama's runner treats only a positive num_predict as a limit."""
    cap = 10 * n_ctx
    return cap if num_predict <= 0 or num_predict > cap else num_predict
