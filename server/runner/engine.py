"""The continuous-batching engine: one llama context, `num_parallel` sequences, one decode
per step.

Each step (1) takes new requests into free slots, reusing the longest cached prefix;
(2) packs the next token of every generating sequence and then chunks of pending prompts
into one batch; (3) decodes once; (4) samples every sequence that got logits with its own
sampler chain and streams the new text out. A request never waits for another one to
finish, only for a slot.

Everything here runs on the engine thread, the only thread that calls llama.cpp. The
engine talks to the rest of the process through two callables: messages in via `run`'s
inbox, messages out via `emit` (which only enqueues; encoding and writing happen on the
writer thread).
"""

from __future__ import annotations

import base64
import os
import queue
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as L

from server.runner import messages as m
from server.runner.backend import (
    POOLING_NAMES,
    BackendError,
    Batch,
    BufferSizes,
    Context,
    ContextSpec,
    LogSink,
    Model,
    init_backend,
)
from server.runner.cpu import physical_cores, usable_cpus
from server.runner.detokenize import TextStream
from server.runner.embedding import Embedder, EmbedError, EmbedFailure, EmbedJob, EmbedSettings
from server.runner.limits import device_index, generation_shape, gpu_layers, thread_count
from server.runner.media import IMAGE_MARKER, ImageSpan, is_sentinel, safe_prefix, truncate_with_images
from server.runner.rerank import NOT_A_RERANKER, RerankJob
from server.runner.sampling import SamplerChain, SamplerError, TokenText, logprob_entry
from server.runner.slots import (
    PromptTooLong,
    Slot,
    aligned_reuse,
    cache_covers,
    chunk_boundary,
    chunk_room,
    effective_num_keep,
    even_chunks,
    place,
    predict_limit,
    reusable_prefix,
    shift_amount,
)
from server.runner.speculative import (
    DEFAULT_DRAFT_MODEL_TOKENS,
    DEFAULT_NGRAM_TOKENS,
    DraftModel,
    DraftPace,
    DraftStats,
    NgramLookup,
    draft_budget,
)
from server.runner.vision import ImageError, Vision, VisionPrompt

#: Hands the writer one step's messages, in order, to go out in one write.
Emit = Callable[[list[Any]], None]

#: Sets what a drafted token costs in decodes of the model instead of timing it at load.
DRAFT_TOKEN_COST_ENV = "POLLAMA_DRAFT_TOKEN_COST"


@dataclass
class Sequence:
    """A completion in flight: its slot, sampler, text state and timings."""

    id: int
    req: m.CompletionRequest
    prompt: list[int]
    slot: Slot
    chain: SamplerChain
    text: TextStream
    num_keep: int
    pending: list[int]  # prompt tokens still to decode
    n_prompt_eval: int
    limit: int  # tokens to generate at most
    t_start: int
    t_first: int = 0
    next_token: int | None = None
    generated: list[int] = field(default_factory=list)
    out_row: int = -1
    images: dict[int, ImageSpan] = field(default_factory=dict)  # by start position, not yet decoded
    vision_prompt: VisionPrompt | None = None  # owns the images' native chunks
    draft_max: int = 0  # tokens to draft per step (0: no speculative decoding)
    lookup: NgramLookup | None = None  # prompt lookup drafts; else the draft model does
    drafted: list[int] = field(default_factory=list)  # this step's draft, decoded after next_token
    draft_rows: list[int] = field(default_factory=list)
    draft_stats: DraftStats = field(default_factory=DraftStats)
    draft_pace: DraftPace | None = None  # a draft model's next draft length, from the last ones' fate
    truncated: int = 0  # prompt tokens cut to fit the context, reported in `Done`
    edges: tuple[int, ...] = ()  # image starts and ends: chunk boundaries besides the aligned ones

    def next_image(self) -> int | None:
        """Start position of the next image still to decode, if any."""
        return min(self.images) if self.images else None


@dataclass(frozen=True)
class _Rows:
    """One sequence's share of a step's batch: its next token and draft (`decoding`), or a
    chunk of its prompt."""

    seq: Sequence
    tokens: list[int]
    decoding: bool


class Engine:
    def __init__(self, emit: Emit, log: LogSink | None = None) -> None:
        self._send = emit
        #: Messages of this turn of the loop, handed over together by `_flush`: one writer
        #: wake-up and one pipe write a step, instead of one per sampled sequence.
        self._outgoing: list[Any] = []
        self._log = log
        self.model: Model | None = None
        self.ctx: Context | None = None
        self.batch: Batch | None = None
        self.embedder: Embedder | None = None
        self.vision: Vision | None = None
        self.drafter: DraftModel | None = None
        self.options: m.LoadOptions | None = None
        self.info: m.RunnerInfo | None = None
        self.slots: list[Slot] = []
        self.waiting: list[tuple[int, m.CompletionRequest]] = []
        self.running: dict[int, Sequence] = {}
        #: Embed and rerank requests under way, taken in turn a decode at a time (`_embed_step`).
        self.embedding: deque[tuple[int, EmbedJob | RerankJob]] = deque()
        self.n_ctx_slot = 0
        self.n_threads = 1
        self._steps = 0
        self._text: TokenText | None = None
        #: Aligned prompt chunks (`LoadOptions.aligned_cache`): chunk boundaries at multiples of
        #: `unit` (the micro-batch) and prefix reuse only of whole chunks computed that way.
        self.aligned = False
        self.unit = 0

    # ---- loading -----------------------------------------------------------------------

    def load(self, options: m.LoadOptions) -> m.RunnerInfo:
        started = time.perf_counter_ns()
        for line in init_backend().log_lines():  # which backends and CPU variant run, for the log
            sys.stderr.write(line + "\n")
        if self._log is None:
            self._log = LogSink()
        log = self._log
        sizes = BufferSizes()
        log.sizes = sizes
        self.options = options
        self.n_threads = thread_count(options.num_thread, physical_cores(), usable_cpus())
        try:
            if not os.path.isfile(options.model_path):
                raise BackendError(f"model file not found: {options.model_path}")
            self.model = model = Model(
                options.model_path,
                n_gpu_layers=gpu_layers(options.num_gpu),
                main_gpu=device_index(options.main_gpu),
                use_mmap=options.use_mmap,
                lora_paths=tuple(options.lora_paths),
                repack=options.repack,
                # a draft model's tokens ride in every step beside each sequence's own
                decode_rows=options.num_parallel * (1 + (DEFAULT_DRAFT_MODEL_TOKENS if options.draft_path else 0)),
            )
            self._text = TokenText(model.piece)
            num_ctx = options.num_ctx if options.num_ctx > 0 else model.n_ctx_train
            embedding_only = options.embedding or model.model_pooling is not None
            log.flash_attention_resolved = None  # what creating the context below resolves "auto" to
            if embedding_only:
                n_ctx = min(num_ctx, model.n_ctx_train) if model.n_ctx_train > 0 else num_ctx
                self.embedder = Embedder(
                    model,
                    EmbedSettings(
                        n_ctx=n_ctx,
                        n_threads=self.n_threads,
                        flash_attention=options.flash_attention,
                        model_pooling=model.model_pooling is not None,
                    ),
                )
                ctx, parallel, n_ctx_slot = self.embedder.ctx, 1, n_ctx
                self.n_ctx_slot = n_ctx_slot
            else:
                shape = generation_shape(num_ctx, options.num_parallel, options.num_batch)
                parallel = shape.n_parallel
                self.ctx = ctx = Context(
                    model,
                    ContextSpec(
                        n_ctx=shape.n_ctx_total,
                        n_seq_max=parallel,
                        n_batch=shape.n_batch,
                        n_ubatch=shape.n_ubatch,
                        n_threads=self.n_threads,
                        flash_attention=options.flash_attention,
                        kv_cache_type=options.kv_cache_type,
                        swa_full=options.swa_full,
                    ),
                )
                self.n_ctx_slot = n_ctx_slot = min(shape.n_ctx_slot, ctx.n_ctx_seq)
                self.batch = Batch(shape.n_batch)
                self.aligned, self.unit = options.aligned_cache, shape.n_ubatch
                self.slots = [Slot(seq_id=i) for i in range(parallel)]
                if options.draft_path:
                    self.drafter = _load_draft(model, options, shape.n_ctx_total, parallel, shape, self.n_threads)
                    self._price_drafts(self.drafter, ctx, self.batch, model)
                if options.projector_path:
                    self.vision = Vision(
                        options.projector_path,
                        model,
                        n_threads=self.n_threads,
                        use_gpu=options.num_gpu != 0,
                        flash_attention=options.flash_attention,
                        log=log,
                    )
        except BackendError as exc:
            detail = " | ".join(list(log.errors)[-4:])
            raise BackendError(f"{exc}" + (f": {detail}" if detail else "")) from None
        finally:
            log.sizes = None
        weights, kv, compute = sizes.total("weights"), sizes.total("kv"), sizes.total("compute")
        if weights == 0:
            weights = int(os.path.getsize(options.model_path))
        if self.vision is not None and options.projector_path:
            weights += int(os.path.getsize(options.projector_path))  # libmtmd logs no buffer sizes
        flash = flash_attention_in_effect(options.flash_attention, log.flash_attention_resolved, options.kv_cache_type)
        _note(f"flash attention {describe_flash_attention(options.flash_attention, flash)}")
        if self.aligned:
            _note(
                f"prompts in aligned {self.unit}-token chunks, prefixes reused in whole chunks (POLLAMA_ALIGNED_CACHE)"
            )
        self.info = m.RunnerInfo(
            model_path=options.model_path,
            architecture=model.architecture,
            description=model.description,
            n_ctx=n_ctx_slot,
            n_ctx_total=ctx.n_ctx,
            n_ctx_train=model.n_ctx_train,
            num_parallel=parallel,
            n_batch=self.batch.capacity if self.batch else n_ctx_slot,
            n_threads=self.n_threads,
            n_vocab=model.n_vocab,
            n_embd=model.n_embd,
            n_layer=model.n_layer,
            bos=model.bos,
            eos=model.eos,
            add_bos=model.add_bos,
            pooling=POOLING_NAMES.get(ctx.pooling, "none"),
            embedding_only=self.ctx is None,
            can_shift=ctx.can_shift,
            vision=self.vision is not None,
            weights_bytes=weights,
            kv_bytes=kv,
            compute_bytes=compute,
            size=weights + kv + compute,
            size_vram=sizes.size_vram(weights + kv + compute),
            load_duration=time.perf_counter_ns() - started,
            pid=os.getpid(),
            device_bytes=dict(sizes.by_device),
            flash_attention=flash,
            n_swa=model.n_swa,
        )
        return self.info

    @staticmethod
    def _price_drafts(drafter: DraftModel, ctx: Context, batch: Batch, model: Model) -> None:
        """What a drafted token costs (`DraftPace`): timed at load, or as `POLLAMA_DRAFT_TOKEN_COST`
        says (0 drafts whatever it costs; the tests use it to make a self-draft run long)."""
        given = os.environ.get(DRAFT_TOKEN_COST_ENV, "").strip()
        try:
            drafter.token_cost = max(0.0, float(given)) if given else -1.0
        except ValueError:
            _note(f"{DRAFT_TOKEN_COST_ENV}={given!r} is not a number: timing the draft model instead")
            drafter.token_cost = -1.0
        if drafter.token_cost < 0:
            drafter.measure_token_cost(ctx, batch, model.bos if model.bos is not None else 0)
        _note(f"draft model: a drafted token costs {drafter.token_cost:.2f} of a decode of the model")

    def close(self) -> None:
        for seq in list(self.running.values()):
            self._release(seq)
        self.running.clear()
        self.embedding.clear()
        for part in (self.vision, self.drafter, self.embedder, self.batch, self.ctx):
            if part is not None:
                part.close()
        self.vision = self.drafter = None
        self.embedder = self.batch = self.ctx = None
        if self.model is not None:
            self.model.close()
            self.model = None

    # ---- the loop ---------------------------------------------------------------------

    def run(self, inbox: queue.SimpleQueue[Any]) -> None:
        """Serve until a Shutdown arrives. Blocks on the inbox only when there is no work.

        What a turn emits goes out when the turn has done its work: replies to the messages
        that arrived before the step, a step's pieces after it. A writer woken at each
        piece would take the GIL back and forth with the sampling of the step's other
        sequences, on the path between two decodes."""
        try:
            while True:
                idle = not self.running and not self.waiting and not self.embedding
                try:
                    msg = inbox.get() if idle else inbox.get_nowait()
                except queue.Empty:
                    msg = None
                while msg is not None:
                    if isinstance(msg, m.Shutdown):
                        return
                    self.handle(msg)
                    try:
                        msg = inbox.get_nowait()
                    except queue.Empty:
                        msg = None
                self._flush()
                self.step()
                self._flush()
        finally:
            self._flush()

    def _emit(self, msg: Any) -> None:
        self._outgoing.append(msg)

    def _flush(self) -> None:
        if self._outgoing:
            out, self._outgoing = self._outgoing, []
            self._send(out)

    @property
    def active(self) -> int:
        return len(self.running)

    def handle(self, msg: Any) -> None:
        try:
            if isinstance(msg, m.Completion):
                self._accept(msg)
            elif isinstance(msg, m.Cancel):
                self._cancel(msg.id)
            elif isinstance(msg, m.Tokenize):
                assert self.model is not None
                tokens = self.model.tokenize(msg.text, add_special=msg.add_special, parse_special=msg.parse_special)
                pieces = None
                if msg.with_pieces:
                    pieces = tuple(self.model.piece(t).decode("utf-8", errors="replace") for t in tokens)
                self._emit(m.Tokens(msg.id, tuple(tokens), pieces))
            elif isinstance(msg, m.Detokenize):
                assert self.model is not None
                self._emit(m.Text(msg.id, self.model.detokenize(msg.tokens)))
            elif isinstance(msg, m.Embed):
                self._embed(msg)
            elif isinstance(msg, m.Rerank):
                self._rerank(msg)
            else:
                self._emit(m.Error(getattr(msg, "id", 0), f"unexpected message {type(msg).__name__}"))
        except Exception as exc:  # a bug in one request must not take the runner down
            self._emit(m.Error(getattr(msg, "id", 0), f"{type(exc).__name__}: {exc}"))

    # ---- requests ---------------------------------------------------------------------

    def _accept(self, msg: m.Completion) -> None:
        req = msg.request
        if self.ctx is None:
            self._emit(m.Error(msg.id, "this model does not support generation (embedding only)", "bad_request"))
            return
        if req.images and self.vision is None:
            self._emit(m.Error(msg.id, "this model does not support images (it has no projector)", "bad_request"))
            return
        self.waiting.append((msg.id, req))

    def _cancel(self, rid: int) -> None:
        self.waiting = [(i, r) for i, r in self.waiting if i != rid]
        for i, job in self.embedding:
            if i == rid:
                self.embedding.remove((i, job))
                _note(f"request {rid}: embedding cancelled after {len(job.vectors)} of {len(job.tokenized)} inputs")
                break
        seq = self.running.pop(rid, None)
        if seq is not None:
            self._release(seq)
            _note(f"request {rid}: cancelled after {len(seq.generated)} tokens")

    def _embed(self, msg: m.Embed) -> None:
        assert self.model is not None and self.options is not None
        if self.embedder is not None and self.embedder.ctx.pooling == L.LLAMA_POOLING_TYPE_RANK:
            self._emit(
                m.Error(
                    msg.id,
                    "this model is a reranker: it scores documents (/api/rerank), it does not embed",
                    "bad_request",
                )
            )
            return
        if self.embedder is None:
            n_ctx = self.n_ctx_slot
            self.embedder = Embedder(
                self.model,
                EmbedSettings(
                    n_ctx=n_ctx,
                    n_threads=self.n_threads,
                    flash_attention=self.options.flash_attention,
                    model_pooling=False,
                ),
            )
        try:
            job = EmbedJob(
                self.embedder,
                list(msg.inputs),
                truncate=msg.truncate,
                normalize=msg.normalize,
                dimensions=msg.dimensions,
            )
        except EmbedError as exc:
            self._emit(m.Error(msg.id, str(exc), "bad_request"))
            return
        self.embedding.append((msg.id, job))

    def _rerank(self, msg: m.Rerank) -> None:
        """Only a model loaded with its own rank pooling has the head that scores pairs."""
        embedder = self.embedder
        if embedder is None or embedder.ctx.pooling != L.LLAMA_POOLING_TYPE_RANK:
            self._emit(m.Error(msg.id, NOT_A_RERANKER, "bad_request"))
            return
        try:
            job = RerankJob(embedder, msg.query, list(msg.documents), truncate=msg.truncate)
        except EmbedError as exc:
            self._emit(m.Error(msg.id, str(exc), "bad_request"))
            return
        self.embedding.append((msg.id, job))

    def _embed_step(self) -> None:
        """One decode of the next embed request in turn; it answers when its last input is done."""
        rid, job = self.embedding.popleft()
        try:
            job.step()
        except EmbedFailure as exc:
            self._emit(m.Error(rid, str(exc)))
            return
        except Exception as exc:  # as in `handle`: one request's bug must not take the runner down
            self._emit(m.Error(rid, f"{type(exc).__name__}: {exc}"))
            return
        if job.done:
            self._emit(job.result(rid))
        else:
            self.embedding.append((rid, job))

    def _start_waiting(self) -> None:
        """Give free slots to waiting requests, FIFO, each taking its best-matching slot."""
        assert self.model is not None and self.ctx is not None
        while self.waiting and any(not s.busy for s in self.slots):
            rid, req = self.waiting.pop(0)
            try:
                seq = self._start(rid, req)
            except (PromptTooLong, SamplerError, ImageError) as exc:
                self._emit(m.Error(rid, str(exc), "bad_request"))
                continue
            self.running[rid] = seq

    def _start(self, rid: int, req: m.CompletionRequest) -> Sequence:
        model, ctx = self.model, self.ctx
        assert model is not None and ctx is not None
        tokens, spans, vision_prompt = self._tokenize(req)
        try:
            n_ctx = self.n_ctx_slot
            num_keep = effective_num_keep(req.num_keep, len(tokens), n_ctx, model.add_bos)
            whole = len(tokens)
            tokens, spans = truncate_with_images(tokens, spans, n_ctx, num_keep, req.truncate)
            chain = SamplerChain(model.vocab, model.n_vocab, req, n_ctx=n_ctx)
        except BaseException:
            if vision_prompt is not None:
                vision_prompt.close()
            raise
        placement = place(self.slots, tokens, can_copy=self._can_copy_streams())
        assert placement is not None
        if placement.move is not None:
            self._copy_cache(*placement.move)
        slot, common = placement.slot, placement.common
        keep = safe_prefix(reusable_prefix(common, len(tokens)), spans)
        edges = tuple(sorted({e for span in spans for e in (span.start, span.end)}))
        if self.aligned:
            keep = aligned_reuse(keep, min(slot.exact, len(slot.tokens)), self.unit, edges)
        if keep < len(slot.tokens):
            if not ctx.seq_rm(slot.seq_id, keep, -1):  # a recurrent state cannot be cut back
                ctx.seq_rm(slot.seq_id, -1, -1)
                keep = 0
            del slot.tokens[keep:]
        slot.exact = min(slot.exact, keep)
        if keep and not self._cache_covers(slot.seq_id, keep):
            _note(f"request {rid}: slot {slot.seq_id} no longer holds the window its {keep} cached tokens need")
            ctx.seq_rm(slot.seq_id, -1, -1)
            keep = 0
            slot.tokens.clear()
            slot.exact = 0
        slot.stale_from = None  # whatever a shift left stale lay past `keep` and is gone
        text_tokens = [t for t in tokens if not is_sentinel(t)]
        chain.prime(text_tokens)
        draft_max, lookup = 0, None
        if req.draft_ngram > 0:
            lookup = NgramLookup(req.draft_ngram)
            lookup.extend(text_tokens)
            draft_max = req.draft_num_predict if req.draft_num_predict >= 0 else DEFAULT_NGRAM_TOKENS
        elif self.drafter is not None and not spans:  # the draft model cannot see images
            draft_max = req.draft_num_predict if req.draft_num_predict >= 0 else DEFAULT_DRAFT_MODEL_TOKENS
        slot.busy = True
        pending = tokens[keep:]
        _note(
            f"request {rid}: slot {slot.seq_id}, {len(tokens)} prompt tokens ({keep} cached"
            + (f", {len(spans)} images" if spans else "")
            + (f", {whole - len(tokens)} cut to fit the context)" if whole > len(tokens) else ")")
        )
        return Sequence(
            id=rid,
            req=req,
            prompt=tokens,
            slot=slot,
            chain=chain,
            text=TextStream(tuple(req.stop)),
            num_keep=num_keep,
            pending=pending,
            n_prompt_eval=len(pending),
            limit=predict_limit(req.num_predict, n_ctx),
            t_start=time.perf_counter_ns(),
            images={s.start: s for s in spans if s.start >= keep},
            vision_prompt=vision_prompt,
            draft_max=draft_max,
            lookup=lookup,
            draft_pace=(
                DraftPace(draft_max, token_cost=self.drafter.token_cost)
                if draft_max > 0 and lookup is None and self.drafter is not None
                else None
            ),
            truncated=whole - len(tokens),
            edges=edges,
        )

    def _can_copy_streams(self) -> bool:
        """Whether a slot's cache can be copied whole to another slot's stream: a split KV cache
        (`llama_kv_cache::seq_cp` copies the stream's buffers); a recurrent or hybrid state is
        left where it is."""
        ctx, model = self.ctx, self.model
        return ctx is not None and model is not None and not ctx.spec.kv_unified and not model.is_recurrent

    def _copy_cache(self, source: Slot, target: Slot) -> None:
        """Give `target` what `source` caches (`place`): llama.cpp queues the copy of the stream
        and makes it before the next decode; the mirror moves now."""
        assert self.ctx is not None
        self.ctx.seq_rm(target.seq_id, -1, -1)
        self.ctx.seq_cp(source.seq_id, target.seq_id)
        target.tokens = list(source.tokens)
        target.exact, target.stale_from, target.last_used = source.exact, source.stale_from, source.last_used
        _note(f"slot {source.seq_id}'s {len(source.tokens)} cached tokens copied to slot {target.seq_id}")

    def _tokenize(self, req: m.CompletionRequest) -> tuple[list[int], list[ImageSpan], VisionPrompt | None]:
        """The prompt's positions; with images (and `[img-n]` markers) through the projector."""
        model = self.model
        assert model is not None
        if isinstance(req.prompt, str) and req.images and self.vision is not None and IMAGE_MARKER.search(req.prompt):
            images = [decode_image(data, i) for i, data in enumerate(req.images)]
            vision_prompt = self.vision.prompt(req.prompt, images, parse_special=req.parse_special)
            return vision_prompt.tokens, vision_prompt.spans, vision_prompt
        if isinstance(req.prompt, str):
            tokens = model.tokenize(req.prompt, add_special=True, parse_special=req.parse_special)
        else:
            tokens = [int(t) for t in req.prompt]
        if not tokens:
            raise PromptTooLong("the prompt is empty")
        bad = next((t for t in tokens if not 0 <= t < model.n_vocab), None)
        if bad is not None:
            raise PromptTooLong(f"token {bad} is out of range")
        return tokens, [], None

    # ---- one step ---------------------------------------------------------------------

    def step(self) -> None:
        if self.embedding:
            self._embed_step()
        if self.ctx is None:
            return
        self._start_waiting()
        if not self.running:
            return
        self._decode_next_image()
        batch, ctx = self.batch, self.ctx
        assert batch is not None
        batch.clear()
        plan: list[_Rows] = []  # what each sequence puts in this step, decided before it is written
        room = batch.capacity
        # 1. the next token of every generating sequence, and its draft if it speculates
        generating = sum(1 for seq in self.running.values() if seq.next_token is not None)
        for seq in list(self.running.values()):
            seq.out_row = -1
            if seq.next_token is None:
                continue
            generating -= 1
            if len(seq.slot.tokens) >= self.n_ctx_slot and not self._make_room(seq):
                continue
            draft = self._draft(seq, room - generating) if seq.draft_max else []
            plan.append(_Rows(seq, [seq.next_token, *draft], decoding=True))
            room -= 1 + len(draft)
            seq.next_token = None
            seq.drafted = draft
        # 2. chunks of prompts, oldest first, in the room that is left
        chunks: list[tuple[Sequence, int]] = []  # (sequence, chunk start) for `_mark_exact`
        for seq in list(self.running.values()):
            if not seq.pending or room <= 0:
                continue
            take_room = room
            image_at = seq.next_image()
            if image_at is not None:
                take_room = min(take_room, image_at - len(seq.slot.tokens))
                if take_room <= 0:
                    continue  # its image is decoded in a later step
            if self.aligned:
                rest = len(seq.pending) if image_at is None else image_at - len(seq.slot.tokens)
                take_room = chunk_room(len(seq.slot.tokens), take_room, self.unit, rest)
                chunks.append((seq, len(seq.slot.tokens)))
            take = seq.pending[:take_room]
            del seq.pending[: len(take)]
            plan.append(_Rows(seq, take, decoding=False))
            room -= len(take)
        if not self.aligned:  # aligned chunks must end where they end
            self._even_out(plan)
        # 3. written in sequence-id order: llama.cpp cuts a batch for a split KV cache into
        # micro-batches of consecutive sequence ids, one pass over the weights each
        in_batch = [rows.seq for rows in plan]
        for rows in sorted(plan, key=lambda r: r.seq.slot.seq_id):
            self._write_rows(batch, rows)
        if batch.n == 0:
            return
        rc = ctx.decode(batch)
        self._steps += 1
        if rc != 0:
            self._fail_batch(in_batch, rc)
            return
        if len(in_batch) == 1:
            for seq, start in chunks:
                self._mark_exact(seq, start)
        # 4. sample every sequence that got logits
        for seq in in_batch:
            if seq.out_row >= 0 and seq.id in self.running:
                if seq.drafted:
                    self._verify(seq)
                else:
                    self._sample(seq)

    @staticmethod
    def _even_out(plan: list[_Rows]) -> None:
        """Cut this step's prompt chunks to even lengths (`even_chunks`); what is cut goes back
        to the front of the sequence's pending prompt."""
        prompts = [rows for rows in plan if not rows.decoding]
        for rows, keep in zip(prompts, even_chunks([len(r.tokens) for r in prompts]), strict=True):
            if keep < len(rows.tokens):
                rows.seq.pending[:0] = rows.tokens[keep:]
                del rows.tokens[keep:]

    @staticmethod
    def _write_rows(batch: Batch, rows: _Rows) -> None:
        """Append one sequence's rows for this step to the batch and to its slot's mirror: a
        generating sequence's next token and draft (each with logits, `_verify` reads them), or
        a prompt chunk (logits only on the prompt's last token)."""
        seq, slot = rows.seq, rows.seq.slot
        if rows.decoding:
            seq.out_row = batch.add(rows.tokens[0], len(slot.tokens), slot.seq_id, True)
            slot.tokens.append(rows.tokens[0])
            seq.draft_rows = []
            for token in rows.tokens[1:]:
                seq.draft_rows.append(batch.add(token, len(slot.tokens), slot.seq_id, True))
                slot.tokens.append(token)
            return
        last = len(rows.tokens) - 1
        for j, token in enumerate(rows.tokens):
            ends_prompt = j == last and not seq.pending
            row = batch.add(token, len(slot.tokens), slot.seq_id, ends_prompt)
            slot.tokens.append(token)
            if ends_prompt:
                seq.out_row = row

    def _mark_exact(self, seq: Sequence, start: int) -> None:
        """A prompt chunk from `start` was decoded whole and alone (no other sequence's rows in
        its micro-batches): if it ends on a chunk boundary and all before it is exact, so is
        it. A chunk that stops short (the batch was full) or shared a decode is not."""
        slot, end = seq.slot, len(seq.slot.tokens)
        if slot.exact == start and chunk_boundary(end, self.unit, seq.edges) == end:
            slot.exact = end

    def _draft(self, seq: Sequence, batch_room: int) -> list[int]:
        """Up to `seq.draft_max` tokens (with a draft model, what its pace allows: `DraftPace`)
        to follow its next token, within its slot, the batch and its limit (`draft_budget`);
        from prompt lookup, or else from the draft model."""
        assert seq.next_token is not None
        wanted = seq.draft_pace.wanted() if seq.draft_pace is not None else seq.draft_max
        k = draft_budget(
            wanted,
            context_room=self.n_ctx_slot - len(seq.slot.tokens),
            batch_room=batch_room,
            remaining=seq.limit - len(seq.generated),
        )
        if k <= 0:
            return []
        if seq.lookup is not None:
            return seq.lookup.draft(k)
        assert self.drafter is not None
        return self.drafter.draft(seq.slot.seq_id, [*seq.slot.tokens, seq.next_token], k)

    def _verify(self, seq: Sequence) -> None:
        """Sample the rows of [next, d1..dn] in turn, going on while the draw equals the draft
        token the row after it holds; then drop the rejected drafts from the KV cache."""
        assert self.ctx is not None
        drafted, rows = seq.drafted, [seq.out_row, *seq.draft_rows]
        seq.drafted, seq.draft_rows = [], []
        seq.draft_stats.drafted += len(drafted)
        accepted_before = seq.draft_stats.accepted
        keep = len(seq.slot.tokens) - len(drafted)  # the cache up to the next token is the model's own
        for i, row in enumerate(rows):
            expected = drafted[i] if i < len(drafted) else None
            token = self._sample_at(seq, row, expected=expected)
            if token is None or token != expected:
                break
            keep += 1  # the draft token is what the model would have decoded next: already in the cache
            seq.next_token = None
        if seq.draft_pace is not None:
            seq.draft_pace.record(len(drafted), seq.draft_stats.accepted - accepted_before)
        if keep < len(seq.slot.tokens):
            self.ctx.seq_rm(seq.slot.seq_id, keep, -1)
            del seq.slot.tokens[keep:]
            seq.slot.exact = min(seq.slot.exact, keep)

    def _decode_next_image(self) -> None:
        """Decode one image per step (the oldest request's), so text streams keep moving
        between the images of a long multimodal prompt."""
        for seq in list(self.running.values()):
            start = seq.next_image()
            if start is None or start != len(seq.slot.tokens):
                continue
            assert self.vision is not None and self.ctx is not None and self.batch is not None
            span = seq.images.pop(start)
            last = span.length == len(seq.pending)
            try:
                self.vision.eval(
                    self.ctx, span, n_past=start, seq_id=seq.slot.seq_id, n_batch=self.batch.capacity, logits_last=last
                )
            except (BackendError, ImageError) as exc:
                self._fail(seq, str(exc), "bad_request" if isinstance(exc, ImageError) else None)
                return
            if seq.slot.exact == start:  # an image is decoded alone, in its own batches
                seq.slot.exact = span.end
            seq.slot.tokens.extend(seq.pending[: span.length])
            del seq.pending[: span.length]
            if last:  # the prompt ends with this image: its last embedding gave the logits
                self._sample_at(seq, 0)
            return

    def _make_room(self, seq: Sequence) -> bool:
        """The slot is full: shift (drop half of what follows num_keep) or end with "length".

        True when the next token fits now. Where the cache can move its entries (a plain or
        full-size sliding-window KV cache: `llama_memory_can_shift`) they are moved, as llama-server
        does for Ollama v0.33 (`tools/server/server-context.cpp` `pre_decode`).
        Where it cannot (a recurrent or hybrid state, a small sliding-window cache, M-RoPE),
        or where the move would leave the window without entries it overwrote, the slot is
        emptied and the kept tokens are evaluated again as a prompt: slower once, never
        wrong. Either way the tokens after num_keep no longer match what a fresh evaluation
        would give, so they are marked stale for later requests."""
        ctx, model = self.ctx, self.model
        assert ctx is not None and model is not None
        slot = seq.slot
        if not seq.req.shift or seq.num_keep >= len(slot.tokens) - 1:
            self._finish(seq, "length")
            return False
        n_past, keep = len(slot.tokens), seq.num_keep
        discard = shift_amount(n_past, keep)
        if ctx.can_shift and not model.is_recurrent:
            ctx.seq_rm(slot.seq_id, keep, keep + discard)
            ctx.seq_add(slot.seq_id, keep + discard, n_past, -discard)
            del slot.tokens[keep : keep + discard]
            slot.exact = min(slot.exact, keep)
            if self._cache_covers(slot.seq_id, len(slot.tokens)):
                slot.stale_from = keep if slot.stale_from is None else min(slot.stale_from, keep)
                _note(f"request {seq.id}: context shift in slot {slot.seq_id}, kept {keep}, discarded {discard}")
                return True
            kept = list(slot.tokens)
        else:
            kept = slot.tokens[:keep] + slot.tokens[keep + discard :]
        if any(is_sentinel(t) for t in kept) or seq.next_token is None:
            self._finish(seq, "length")  # an image's embeddings cannot be evaluated again from tokens
            return False
        ctx.seq_rm(slot.seq_id, -1, -1)
        slot.tokens.clear()
        slot.stale_from = None
        slot.exact = 0
        seq.pending = kept + [seq.next_token]
        seq.next_token = None
        _note(
            f"request {seq.id}: context shift in slot {slot.seq_id}, kept {keep}, discarded {discard},"
            f" {len(kept)} tokens evaluated again (the cache cannot move them)"
        )
        return False

    def _cache_covers(self, seq_id: int, next_pos: int) -> bool:
        """Whether the cache still holds what decoding at `next_pos` needs (`cache_covers`);
        a recurrent state holds one position by design and is checked by `seq_rm` instead."""
        assert self.ctx is not None and self.model is not None
        if self.model.is_recurrent:
            return True
        return cache_covers(self.ctx.seq_pos_min(seq_id), next_pos, self.model.n_swa)

    def _sample(self, seq: Sequence) -> None:
        self._sample_at(seq, seq.out_row)

    def _sample_at(self, seq: Sequence, row: int, *, expected: int | None = None) -> int | None:
        """Draw the next token from output `row` and stream it; the token, or None when that
        ended the request. `expected` is the draft token it is checked against (counted
        before the token may end the request, so the final chunk's stats include it)."""
        model, ctx = self.model, self.ctx
        assert model is not None and ctx is not None and self._text is not None
        token = seq.chain.sample(ctx.ptr, row)
        if not seq.t_first:
            seq.t_first = time.perf_counter_ns()
        if expected is not None and token == expected:
            seq.draft_stats.accepted += 1
        if model.is_eog(token):
            self._finish(seq, "stop")
            return None
        seq.generated.append(token)
        if seq.lookup is not None:
            seq.lookup.extend((token,))
        logprob = None
        if seq.req.logprobs:
            logprob = logprob_entry(ctx.logits(row), token, seq.req.top_logprobs, self._text)
        out = seq.text.push(model.piece(token), logprob)
        if out.text or out.logprobs:
            logprobs = tuple(out.logprobs) if seq.req.logprobs else None
            self._emit(m.Piece(seq.id, out.text, logprobs, len(seq.generated)))
        if out.stopped:
            self._finish(seq, "stop", flushed=True)
        elif len(seq.generated) >= seq.limit:
            self._finish(seq, "length")
        else:
            seq.next_token = token
            return token
        return None

    def _finish(self, seq: Sequence, reason: str, *, flushed: bool = False) -> None:
        now = time.perf_counter_ns()
        rest = seq.text.finish() if not flushed else None
        t_first = seq.t_first or now
        self._emit(
            m.Done(
                id=seq.id,
                done_reason=reason,
                content=rest.text if rest else "",
                logprobs=tuple(rest.logprobs) if (rest and seq.req.logprobs) else None,
                prompt_eval_count=seq.n_prompt_eval,
                prompt_eval_duration=t_first - seq.t_start,
                eval_count=len(seq.generated),
                eval_duration=now - t_first,
                context=tuple([t for t in seq.prompt if not is_sentinel(t)] + seq.generated),
                prompt_count=len(seq.prompt),
                stop_sequence=seq.text.matched,
                draft_count=seq.draft_stats.drafted,
                draft_accepted_count=seq.draft_stats.accepted,
                truncated_tokens=seq.truncated,
            )
        )
        self.running.pop(seq.id, None)
        self._release(seq)
        _note(f"request {seq.id}: {reason} after {len(seq.generated)} tokens")

    def _release(self, seq: Sequence) -> None:
        seq.chain.close()
        if seq.vision_prompt is not None:
            seq.vision_prompt.close()
            seq.vision_prompt = None
        seq.images = {}
        seq.slot.busy = False
        seq.slot.last_used = self._steps
        if seq.pending:  # cancelled mid-prompt: the cache holds a prefix, still reusable
            seq.pending = []

    def _fail_batch(self, seqs: list[Sequence], rc: int) -> None:
        for seq in seqs:
            self._fail(seq, f"llama_decode failed with status {rc}")

    def _fail(self, seq: Sequence, message: str, kind: str | None = None) -> None:
        """End one request with an error; its slot's cache is unknown now, so it is emptied."""
        assert self.ctx is not None
        self.running.pop(seq.id, None)
        self.ctx.seq_rm(seq.slot.seq_id, -1, -1)
        seq.slot.tokens.clear()
        seq.slot.exact = 0
        self._release(seq)
        self._emit(m.Error(seq.id, message, kind or "runner"))


def _load_draft(
    model: Model, options: m.LoadOptions, n_ctx: int, parallel: int, shape: Any, n_threads: int
) -> DraftModel:
    """The draft model, placed as the model is, with a context of the same shape (a sequence
    per slot, as long as the model's). Its vocabulary was checked at create; a runner given
    another one anyway refuses to load rather than verify ids that mean other text."""
    assert options.draft_path is not None
    if not os.path.isfile(options.draft_path):
        raise BackendError(f"draft model file not found: {options.draft_path}")
    draft = Model(
        options.draft_path,
        n_gpu_layers=gpu_layers(options.num_gpu),
        main_gpu=device_index(options.main_gpu),
        use_mmap=options.use_mmap,
        repack=options.repack,
        decode_rows=parallel,
    )
    if draft.n_vocab != model.n_vocab:
        draft.close()
        raise BackendError(f"the draft model has {draft.n_vocab} tokens, the model {model.n_vocab}")
    spec = ContextSpec(
        n_ctx=n_ctx,
        n_seq_max=parallel,
        n_batch=shape.n_batch,
        n_ubatch=shape.n_ubatch,
        n_threads=n_threads,
        flash_attention=options.flash_attention,
        kv_cache_type=options.kv_cache_type,
    )
    try:
        return DraftModel(draft, spec)
    except BaseException:
        draft.close()
        raise


def flash_attention_in_effect(requested: bool | None, resolved: bool | None, kv_cache_type: str | None) -> bool | None:
    """What llama.cpp runs: a forced setting as given; "auto" as llama.cpp's log resolved it
    (`llama_context` checks that every device of the model supports the fused op), or on
    where a quantized KV cache needs it (`llama_init_from_model` turns it on then)."""
    if requested is not None:
        return requested
    if (kv_cache_type or "f16").lower() != "f16":
        return True
    return resolved


def describe_flash_attention(requested: bool | None, in_effect: bool | None) -> str:
    """The runner's log line about flash attention: what runs and who chose it."""
    state = {True: "on", False: "off", None: "auto (llama.cpp did not say which)"}[in_effect]
    if requested is None:
        return state if in_effect is None else f"{state} (automatic: OLLAMA_FLASH_ATTENTION unset)"
    return f"{state} (OLLAMA_FLASH_ATTENTION={int(requested)})"


def decode_image(data: Any, index: int) -> bytes:
    """Images travel base64-encoded in the runner protocol (it is JSON)."""
    if isinstance(data, bytes):
        return data
    try:
        return base64.b64decode(data, validate=True)
    except (ValueError, TypeError):
        raise ImageError(f"image {index} is not valid base64") from None


def _note(line: str) -> None:
    """One line per request event in the runner's log (never per token)."""
    sys.stderr.write(f"pollama runner: {line}\n")
