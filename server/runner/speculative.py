"""Speculative decoding: guess a few tokens cheaply, let the model check them all in one decode.

A drafter proposes up to n tokens to follow a sequence's next token; the engine
decodes [next, d1..dn] in the step's one batch with logits at every row, then
samples the rows in order with the request's own sampler chain and keeps each
draft token only while it equals what the chain drew (`accept_drafts`). The
first draw that differs is kept too (it is a real sample), the rest is rolled
back from the KV cache (`llama_memory_seq_rm`). This is llama-server's scheme
(tools/server/server.cpp with common/sampling.cpp
`common_sampler_sample_and_accept_n`), not the rejection-sampling one: the
chain draws exactly once per emitted token, from the same logits as without a
draft, so the output is the one plain decoding gives at any temperature and
seed — greedy or sampled, with penalties, grammars and logprobs. Drafts only
buy speed; at a high temperature fewer of them are accepted.

Two drafters, as llama-server has:
* `DraftModel`: a small model with the same vocabulary (Modelfile `DRAFT`,
  checked at create by `server.store.draft_vocabulary`), loaded in the same
  runner with its own context, one sequence per slot; it drafts greedily.
* `NgramLookup`: prompt lookup (llama-server's `ngram` speculative types):
  the last `n` tokens are looked up in what the request has seen so far (its
  prompt and its output) and the tokens that followed their latest earlier
  occurrence are the draft. Free, and good at editing or quoting a given text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from server.runner.backend import Batch, Context, ContextSpec, Model
from server.runner.slots import common_prefix

#: Tokens a draft model proposes per step when the request does not say (Ollama's
#: `draft_num_predict` default with a draft model, api/types.go `DefaultOptions`).
DEFAULT_DRAFT_MODEL_TOKENS = 4
#: Tokens prompt lookup proposes per step when the request does not say: a lookup costs
#: nothing, and a long copied span is accepted whole (llama-server's `--draft-max` is 16).
DEFAULT_NGRAM_TOKENS = 8


def draft_budget(wanted: int, *, context_room: int, batch_room: int, remaining: int) -> int:
    """How many draft tokens a sequence may add this step: no more than asked, than its slot
    and the batch still hold after its next token, nor than it may still emit after that
    (a decode verifying n drafts emits up to n + 1 tokens)."""
    return max(0, min(wanted, context_room - 1, batch_room - 1, remaining - 1))


@dataclass
class DraftStats:
    """Per request: tokens drafted and tokens accepted (the final chunk's pollama fields)."""

    drafted: int = 0
    accepted: int = 0


#: Consecutive drafts with nothing accepted before a sequence stops drafting for a while.
MISSES_BEFORE_PAUSE = 2
#: The longest pause, in decodes; each pause after the first is twice the one before.
LONGEST_PAUSE = 32


def draft_length(acceptance: float, token_cost: float, limit: int) -> int:
    """The longest draft whose last token is still worth drafting: the i-th drafted token
    is kept only if the i - 1 before it were (about `acceptance` ** i), and it saves a
    decode of the model while costing `token_cost` of one (drafting and verifying it), so
    it pays while `acceptance` ** i > `token_cost`. 0: no draft pays."""
    k, kept = 0, 1.0
    while k < limit:
        kept *= acceptance
        if kept <= token_cost:
            break
        k += 1
    return k


#: How much of the acceptance estimate one draft's outcome replaces (an exponential average).
ACCEPTANCE_WEIGHT = 0.2


@dataclass
class DraftPace:
    """How many tokens a sequence's draft model drafts next, from how its last drafts fared.

    A draft is not free on a CPU: each token a draft model drafts costs a decode of its own
    (0.65 of the model's with the bench pair, one thread), and verifying it adds about a
    quarter of a one-row decode to the model's (9 rows cost 2.9 one-row decodes:
    benchmarks/bench_speculative.py `step_costs`). A long draft pays when it is accepted
    and is that much lost when not, so the length follows the acceptance: after a draft
    accepted whole the next may be twice as long (up to `limit`, the request's
    `draft_num_predict`); after one accepted in part, one longer than the part accepted;
    after `MISSES_BEFORE_PAUSE` drafts in a row with nothing accepted the sequence decodes
    plainly for a while (1, 2, 4 ... `LONGEST_PAUSE` decodes) and then tries one token
    again. llama-server's `--draft-p-min` does the like from the draft's probabilities.

    The length is also held to what can pay at all (`draft_length`): `token_cost` is what a
    drafted token costs as a fraction of a decode of the model (the draft model's decode
    plus a verified row, timed at load: `DraftModel.token_cost`), `acceptance` the share of
    drafted tokens the model kept lately. Where not even one token pays (the bench pair: 0.88
    kept, 0.89 of a decode each), the sequence decodes plainly and drafts one token after a
    pause (growing as above while those miss) to see whether that has changed.

    Prompt lookup is left at its fixed length: a lookup costs nothing to make and a
    rejected row a quarter of a decode, and pacing it lost more copied runs than it saved
    rows (editing a text: 1.38x plain paced, 1.42-1.53x fixed, same runs' plain). The pace
    only decides how much is drafted, never what is emitted."""

    limit: int
    token_cost: float = 0.0  # a drafted token's cost in decodes of the model (0: free)
    length: int = 0  # the next draft's length; 0 until the first draft (then `limit`)
    misses: int = 0  # drafts in a row with nothing accepted
    pause: int = 0  # decodes still to go without drafting
    next_pause: int = 1
    acceptance: float = 1.0  # drafted tokens the model kept, lately (hopeful until measured)

    def wanted(self) -> int:
        """The length to draft at this decode (0: none), counting a decode of a pause."""
        if self.pause > 0:
            self.pause -= 1
            return 0
        worth = draft_length(self.acceptance, self.token_cost, self.limit)
        if worth == 0:  # drafting does not pay now: one token to keep the estimate fresh
            self.pause, self.next_pause = self.next_pause, min(LONGEST_PAUSE, 2 * self.next_pause)
            return 1
        return min(self.length or self.limit, worth)

    def record(self, drafted: int, accepted: int) -> None:
        """What became of a draft of `drafted` tokens: `accepted` of them were kept."""
        if drafted <= 0:
            return
        judged = accepted + (1 if accepted < drafted else 0)  # the tokens after a miss were not judged
        self.acceptance += ACCEPTANCE_WEIGHT * (accepted / judged - self.acceptance)
        if accepted >= drafted:
            self.length = min(self.limit, 2 * drafted)
        else:
            self.length = min(self.limit, accepted + 1)
        if accepted > 0:
            self.misses, self.next_pause = 0, 1
            return
        self.misses += 1
        if self.misses >= MISSES_BEFORE_PAUSE:
            self.pause, self.misses = self.next_pause, 0
            self.next_pause = min(LONGEST_PAUSE, 2 * self.next_pause)


@dataclass
class NgramLookup:
    """Prompt lookup over one request's tokens (prompt, then output), kept incrementally.

    `index` maps each n-gram to where the token after its latest occurrence sits, for
    every n-gram that has a following token; the n-gram that ends the text is looked up
    there, so the draft continues its latest earlier occurrence."""

    n: int
    tokens: list[int] = field(default_factory=list)
    index: dict[tuple[int, ...], int] = field(default_factory=dict)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens) - 1  # the n-gram ending just before this token is followed by it
            if end >= self.n:
                self.index[tuple(self.tokens[end - self.n : end])] = end

    def draft(self, k: int) -> list[int]:
        if k <= 0 or len(self.tokens) < self.n:
            return []
        start = self.index.get(tuple(self.tokens[-self.n :]))
        if start is None:
            return []
        return self.tokens[start : start + k]


class DraftModel:
    """A draft model in the runner: its own context (one sequence per slot, as the target's)
    and, per sequence, a mirror of what that sequence holds in its KV cache."""

    def __init__(self, model: Model, spec: ContextSpec) -> None:
        self.model = model
        self.ctx = Context(model, spec)
        self.batch = Batch(spec.n_batch)
        self.cached: dict[int, list[int]] = {}
        #: What a drafted token costs in decodes of the model (`measure_token_cost`).
        self.token_cost = 0.0

    def measure_token_cost(self, target: Context, batch: Batch, token: int, repeats: int = 3) -> float:
        """Time, at load, what drafting and verifying one token costs as a fraction of a
        one-row decode of the model: a one-row decode of the draft, plus what a fifth of the
        four extra rows of a 5-row decode of the model adds. The least of `repeats` tries
        each (a try another process preempted is the slow one), after one to warm up.
        Sequence 0 of both contexts is used and emptied again."""

        def timed(ctx: Context, b: Batch, rows: int) -> float:
            b.clear()
            for pos in range(rows):
                b.add(token, pos, 0, True)
            start = time.perf_counter()
            rc = ctx.decode(b)
            took = time.perf_counter() - start
            ctx.seq_rm(0, -1, -1)
            return took if rc == 0 else float("nan")

        timed(target, batch, 1), timed(self.ctx, self.batch, 1)
        one = min(timed(target, batch, 1) for _ in range(repeats))
        five = min(timed(target, batch, 5) for _ in range(repeats))
        draft = min(timed(self.ctx, self.batch, 1) for _ in range(repeats))
        cost = draft / one + max(0.0, five - one) / 4 / one
        self.token_cost = cost if cost == cost else 0.0  # NaN (a failed decode): assume free
        return self.token_cost

    @property
    def n_ctx_seq(self) -> int:
        return self.ctx.n_ctx_seq

    def draft(self, seq: int, tokens: Sequence[int], k: int) -> list[int]:
        """Greedy continuation of `tokens` (what the target's sequence will hold once its next
        token is decoded), up to k tokens. Only the part of `tokens` the draft's cache does not
        hold yet is evaluated (the whole prompt the first time, one or two tokens after)."""
        if k <= 0 or not tokens:
            return []
        cached = self.cached.setdefault(seq, [])
        # Most steps only append to what the cache holds: check that at C speed first.
        same = len(cached) <= len(tokens) and cached == list(tokens[: len(cached)])
        keep = min(
            len(cached) if same else common_prefix(cached, tokens), len(tokens) - 1
        )  # the last one must give logits
        if keep < len(cached):
            if not self.ctx.seq_rm(seq, keep, -1):
                self.ctx.seq_rm(seq, -1, -1)
                keep = 0
            del cached[keep:]
        if not self._eval(seq, list(tokens[keep:])):
            return []
        out: list[int] = []
        while True:
            token = int(np.argmax(self.ctx.logits(self.batch.n - 1)))
            out.append(token)
            if len(out) >= k or len(cached) >= self.n_ctx_seq - 1:
                return out
            if not self._eval(seq, [token]):
                return out

    def _eval(self, seq: int, tokens: list[int]) -> bool:
        """Decode `tokens` after what `seq` holds, in batch-sized chunks, logits for the last."""
        cached = self.cached[seq]
        for start in range(0, len(tokens), self.batch.capacity):
            chunk = tokens[start : start + self.batch.capacity]
            self.batch.clear()
            for j, token in enumerate(chunk):
                self.batch.add(token, len(cached) + j, seq, j == len(chunk) - 1)
            if self.ctx.decode(self.batch) != 0:
                self.forget(seq)
                return False
            cached.extend(chunk)
        return True

    def forget(self, seq: int) -> None:
        """The sequence's cache is unknown (a failed decode): empty it, it is rebuilt on demand."""
        self.ctx.seq_rm(seq, -1, -1)
        self.cached[seq] = []

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()
