"""Generate, chat and embed: store → prompt → scheduler → runner → parsers.

The native handlers and the OpenAI/Anthropic translators all call this one
service, so a rule (capability checks, load/unload requests, thinking
defaults, context fitting, stats) is written once. It yields typed events
(`server.inference.events`); the native blueprint turns them into Ollama's
JSON and each translator into its own API's, so no layer reads another's
JSON back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from server import usage
from server.errors import BadRequest, NotFound, PollamaError
from server.inference import runner_calls
from server.inference.events import Embeddings, Event, Final, Piece, Rendered, Stats, TokenPiece
from server.inference.output import OutputPipeline
from server.inference.requests import ChatRequest, EmbedRequest, GenerateRequest, GenerationFields
from server.inference.rerank import Ranked, RerankRequest, ranking
from server.inference.token_requests import DetokenizeRequest, TokenizeRequest, out_of_vocabulary
from server.jsontypes import JSONObject
from server.options import DEFAULT_OPTIONS, Options, validate_options
from server.prompt import (
    IMAGE_TOKENS,
    ChatTemplate,
    FitResult,
    JinjaTemplate,
    Message,
    ThinkingParser,
    ToolCallParser,
    fit_messages,
    render_chat,
    render_generate,
    select_template,
)
from server.scheduler import Lease, Scheduler
from server.store.capabilities import capabilities
from server.store.names import Name
from server.store.store import Model, Store

log = logging.getLogger(__name__)

Template = ChatTemplate | JinjaTemplate

#: `POST /v1/chat/completions`: the route being answered, set by the HTTP layer for each request, so
#: that a completion its client gave up on is logged with the route it came in on (the service knows
#: the model and the tokens, not the route, and the compat APIs all end up here).
REQUEST_ROUTE: ContextVar[str] = ContextVar("pollama_request_route", default="")


@dataclass(frozen=True)
class Turn:
    """What a generate or chat runs with once its request is checked against the model
    (`_prepare_turn`): the thinking setting, the template, the options, the tools left by
    `tool_choice` (chat only), and the format (a forced call's grammar)."""

    think: bool | str | None
    template: Template
    options: Options
    tools: list[JSONObject] | None
    format: runner_calls.Format


@dataclass(frozen=True)
class TokenCount:
    """A chat request's size in tokens and the context a runner for it holds per request."""

    tokens: int
    context_length: int


class Inference:
    def __init__(self, store: Store, scheduler: Scheduler) -> None:
        self.store = store
        self.scheduler = scheduler

    # ---- shared steps ----------------------------------------------------------------------

    def _lookup(self, raw: str, not_found: str, invalid: PollamaError | None = None) -> Model:
        """The model named `raw`; a name that cannot be one is answered like a missing model
        unless the endpoint says otherwise (`invalid`), as Ollama's handlers do."""
        usage.note_model(raw)  # the developer view's "model" column, also for a request refused here
        name = Name.parse_lenient(raw)
        if not name.is_valid:
            raise invalid or NotFound(not_found)
        model = self.store.get(name)
        if model is None:
            raise NotFound(not_found)
        return model

    def _template(self, model: Model, request_template: str | None) -> Template:
        jinja = None
        bos = eos = ""
        if not request_template and not model.template:
            info = model.gguf(verbose=True)
            if info is not None and info.chat_template:
                jinja = info.chat_template
                tokens = info.get("tokenizer.ggml.tokens") or []
                bos = _token_text(tokens, info.get("tokenizer.ggml.bos_token_id"))
                eos = _token_text(tokens, info.get("tokenizer.ggml.eos_token_id"))
        return select_template(
            request_template=request_template,
            model_template=model.template,
            gguf_chat_template=jinja,
            bos_token=bos,
            eos_token=eos,
        )

    def _think(
        self, model: Model, caps: list[str], think: bool | str | None, *, strict: bool = True
    ) -> bool | str | None:
        if "thinking" in caps:
            return True if think is None else think
        if think not in (None, False) and strict:
            raise BadRequest(f'"{model.name.model}" does not support thinking')
        return None if think is None else False

    def _options(self, model: Model, request: Options, error: BadRequest | None = None) -> Options:
        """Defaults < the model's parameters < the request's options, those checked now that
        the model is known (a 400 naming a bad option comes after a 404 for the model);
        `error` is a bad option a translator already found (`GenerationFields.option_error`)."""
        if error is not None:
            raise error
        return {**DEFAULT_OPTIONS, **model.parameters, **validate_options(request)}

    async def _acquire(
        self, model: Model, options: Options, keep_alive: float | None, *, embedding: bool = False
    ) -> Lease:
        spec = await asyncio.to_thread(self.scheduler.spec_for, model, options, embedding=embedding)
        return await self.scheduler.acquire(model, spec, keep_alive)

    async def _fit(
        self,
        lease: Lease,
        messages: list[JSONObject],
        render: Callable[[list[Message]], str],
        num_ctx: int,
        truncate: bool,
        has_projector: bool,
    ) -> FitResult:
        """Drop old messages until the prompt fits; tokenizing in the runner from a worker thread."""
        loop = asyncio.get_running_loop()

        def count(text: str) -> int:
            return len(asyncio.run_coroutine_threadsafe(lease.runner.tokenize(text), loop).result())

        return await asyncio.to_thread(
            fit_messages,
            messages,
            render,
            count,
            num_ctx,
            image_tokens=768 if has_projector else None,
            truncate=truncate,
        )

    # ---- generate and chat ------------------------------------------------------------------

    async def _prepare_turn(
        self, model: Model, req: GenerateRequest | ChatRequest, *, strict_think: bool = True
    ) -> Turn:
        """What generate and chat both settle before a prompt is rendered, in the order Ollama's
        handlers refuse a request: the model can complete at all, it has what the request uses
        (insert and vision for generate; tools and vision for chat), the thinking setting, the
        template, the format (a forced tool call's grammar) and the options."""
        caps = await asyncio.to_thread(capabilities, model)
        what = "generate" if isinstance(req, GenerateRequest) else "chat"
        if "completion" not in caps:
            raise BadRequest(f'"{model.name.model}" does not support {what}')
        tools = None
        forced = False
        if isinstance(req, GenerateRequest):
            if req.suffix and "insert" not in caps and not req.template:
                raise BadRequest(f"{model.name.full} does not support insert")
            if req.images and "vision" not in caps:
                raise BadRequest(f"{model.name.full} does not support vision")
        else:
            tools = None if req.tool_choice.hides_tools else req.tools
            if tools and "tools" not in caps:
                raise BadRequest(f"{model.name.full} does not support tools")
            if any(m.get("images") for m in req.messages) and "vision" not in caps:
                raise BadRequest(f"{model.name.full} does not support vision")
            forced = bool(tools) and req.tool_choice.forces_call
        # A forced call is the whole reply: there is no room for thinking before it.
        think = False if forced else self._think(model, caps, req.think, strict=strict_think)
        template = await asyncio.to_thread(
            self._template, model, req.template if isinstance(req, GenerateRequest) else None
        )
        fmt: runner_calls.Format = req.format
        if forced and isinstance(req, ChatRequest):
            fmt = runner_calls.forced_tool_call(template.tool_call_tag, tools or [], req.tool_choice.name)
        options = self._options(model, req.options, req.option_error)
        return Turn(think, template, options, tools, fmt)

    async def _unload(self, model: Model) -> Final:
        await self.scheduler.expire(model)
        return Final(done_reason="unload")

    async def _run_turn(
        self,
        lease: Lease,
        turn: Turn,
        prompt: str,
        req: GenerateRequest | ChatRequest,
        started: float,
        *,
        images: Sequence[bytes | str] = (),
        thinking: bool = True,
    ) -> AsyncIterator[Piece | Final]:
        """The runner's output through the thinking and tool-call parsers: a `Piece` for each
        chunk that shows something, then the `Final` with the parsers' tail and the stats."""
        parser = None
        tags = getattr(turn.template, "thinking_tags", None)
        if turn.think and tags and thinking:
            parser = ThinkingParser.for_prompt(tags[0], tags[1], prompt)
        tool_parser = None
        if turn.tools:
            tag = turn.template if isinstance(turn.template, ChatTemplate) else turn.template.tool_call_tag
            tool_parser = ToolCallParser(tag, turn.tools)
        pipeline = OutputPipeline(parser, tool_parser)
        async for out in self._complete(lease, prompt, turn.options, turn.format, req, images=images):
            if isinstance(out, Final):
                yield replace(out, tail=pipeline.finish(), stats=self._stats(out.stats, lease, started))
                return
            piece = pipeline.feed(out.text)
            if out.logprobs:
                piece = replace(piece, logprobs=out.logprobs)
            if piece.content or piece.thinking or piece.tool_calls or piece.logprobs:
                yield piece

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Event]:
        started = time.perf_counter()
        if not req.model:
            raise NotFound(f"model '{req.model}' not found")
        model = self._lookup(req.model, f"model '{req.model}' not found")
        if req.only_loads and req.keep_alive == 0:
            yield await self._unload(model)
            return
        if req.raw and (req.template or req.system or req.context):
            raise BadRequest("raw mode does not support template, system, or context")
        turn = await self._prepare_turn(model, req)
        template, think = turn.template, turn.think

        def render() -> str:
            if req.raw:
                return req.prompt
            system = req.system if req.system is not None else model.system
            history = model.messages if req.context is None else []
            if isinstance(template, JinjaTemplate):
                msgs: list[JSONObject] = [{"role": "system", "content": system}] if system else []
                msgs += history
                msgs.append({"role": "user", "content": req.prompt, "images": req.images})
                return render_chat(template, msgs, think=think)
            return render_generate(
                template,
                prompt=req.prompt,
                system=system,
                suffix=req.suffix or None,
                history=history,
                images=req.images,
                think=think,
            )

        if req.debug_render_only:
            yield Rendered(render() if req.prompt or req.suffix else "", len(req.images))
            return

        lease = await self._acquire(model, turn.options, req.keep_alive)
        async with lease:
            if req.only_loads:
                yield Final(done_reason="load")
                return
            prompt = await asyncio.to_thread(render)
            if req.context:
                prompt = await lease.runner.detokenize(req.context) + prompt
            events = self._run_turn(lease, turn, prompt, req, started, images=req.images, thinking=not req.raw)
            async for event in events:
                if isinstance(event, Final):
                    # raw mode has no context to give back; generate reports no stop string
                    event = replace(event, context=None if req.raw else event.context, stop_sequence=None)
                yield event

    async def _chat_parts(self, model: Model, req: ChatRequest, strict_think: bool) -> tuple[Turn, list[JSONObject]]:
        """The turn (`_prepare_turn`) and the whole conversation a chat renders its prompt from:
        the Modelfile's messages and system prompt first. Chat and token counting share it, so
        a count is of the very prompt the chat would send."""
        turn = await self._prepare_turn(model, req, strict_think=strict_think)
        messages = list(model.messages) + list(req.messages)
        if model.system and (not req.messages or req.messages[0].get("role") != "system"):
            messages.insert(0, {"role": "system", "content": model.system})
        return turn, messages

    async def chat(
        self, req: ChatRequest, *, strict_think: bool = True, report_stop: bool = False
    ) -> AsyncIterator[Event]:
        """Chat events. `report_stop` sets the final's `stop_sequence` (which of the request's own
        stop strings ended the reply): Anthropic's API has the field, Ollama's has not."""
        started = time.perf_counter()
        if not req.model:
            raise BadRequest("model is required")
        model = self._lookup(req.model, f"model '{req.model}' not found", BadRequest("model is required"))
        if req.only_loads and req.keep_alive == 0:
            yield await self._unload(model)
            return
        turn, messages = await self._chat_parts(model, req, strict_think)
        template, tools, think = turn.template, turn.tools, turn.think

        def render(msgs: list[Message]) -> str:
            return render_chat(template, msgs, tools=tools, think=think)

        if req.debug_render_only:
            text = (
                await asyncio.to_thread(render_chat, template, messages, tools=tools, think=think)
                if req.messages
                else ""
            )
            yield Rendered(text, sum(len(m.get("images") or []) for m in messages))
            return

        lease = await self._acquire(model, turn.options, req.keep_alive)
        async with lease:
            if req.only_loads:
                yield Final(done_reason="load")
                return
            fit = await self._fit(
                lease, messages, render, lease.spec.num_ctx, req.truncate, bool(model.projector_paths)
            )
            if fit.dropped:
                log.warning(
                    "%s: dropped %d old messages to fit num_ctx=%d", model.name.display, fit.dropped, lease.spec.num_ctx
                )
            if not req.truncate and fit.token_count is None:
                count = len(await lease.runner.tokenize(fit.prompt))
                if count > lease.spec.num_ctx:
                    raise BadRequest("the input length exceeds the context length")
            stops = (req.options or {}).get("stop") or ()
            async for event in self._run_turn(lease, turn, fit.prompt, req, started, images=fit.images):
                if isinstance(event, Final):
                    # the client's own stop string, not the Modelfile's; chat gives no context back
                    stop = event.stop_sequence if report_stop and event.stop_sequence in stops else None
                    event = replace(event, truncated_messages=fit.dropped, context=None, stop_sequence=stop)
                yield event

    # ---- the runner call ----------------------------------------------------------------------

    async def _complete(
        self,
        lease: Lease,
        prompt: str,
        options: Options,
        fmt: runner_calls.Format,
        req: GenerationFields,
        *,
        images: Sequence[bytes | str] = (),
    ) -> AsyncIterator[runner_calls.RunnerText | Final]:
        """The runner's chunks; a completion closed before its last chunk (the client went away) is
        logged once, here, with the route, the model and the tokens generated until then."""
        generated = 0
        finished = False
        try:
            async for chunk in runner_calls.completion(lease.runner, prompt, options, fmt, req, images=list(images)):
                if isinstance(chunk, Final):
                    finished = True
                else:
                    generated = max(generated, chunk.eval_count)
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            if not finished:
                log.info(
                    "%s %s: canceled by the client after %d generated tokens",
                    REQUEST_ROUTE.get() or "completion",
                    lease.loaded.model.name.display,
                    generated,
                )
            raise

    def _stats(self, runner: Stats, lease: Lease, started: float) -> Stats:
        """The runner's counts with the request's own durations (its whole time, the load wait)."""
        stats = replace(
            runner,
            total_duration=int((time.perf_counter() - started) * 1e9),
            load_duration=int(lease.load_duration * 1e9),
        )
        usage.note_tokens(stats.prompt_eval_count, stats.eval_count)
        return stats

    # ---- rerank -----------------------------------------------------------------------------

    async def rerank(self, req: RerankRequest) -> tuple[list[Ranked], int]:
        """The documents best first (at most `top_n`) and the tokens the pairs took. Only a
        reranker (a GGUF with rank pooling and a classification head) can score pairs; any
        other model is a 400 before anything loads."""
        model = self._lookup(req.model, f"model '{req.model}' not found")
        caps = await asyncio.to_thread(capabilities, model)
        if "rerank" not in caps:
            raise BadRequest(
                f'"{model.name.model}" does not support rerank: it has no classification head '
                "(llama.cpp's rank pooling); use a reranker model such as bge-reranker"
            )
        lease = await self._acquire(model, self._options(model, req.options), req.keep_alive)
        async with lease:
            if not req.documents:
                return [], 0
            result = await lease.runner.rerank(req.query, list(req.documents), truncate=req.truncate)
        return ranking(req.documents, list(result.scores), req.top_n), int(result.prompt_eval_count)

    # ---- tokens -----------------------------------------------------------------------------

    async def count_chat(self, req: ChatRequest, *, strict_think: bool = True) -> TokenCount:
        """The tokens of a whole chat request once its template is applied: what `/api/chat`
        would put in the context before truncation (images at the fixed cost chat's fitting
        counts for a model with a projector), and the context it would run in."""
        model = self._lookup(req.model, f"model '{req.model}' not found", BadRequest("model is required"))
        turn, messages = await self._chat_parts(model, req, strict_think)
        prompt = await asyncio.to_thread(render_chat, turn.template, messages, tools=turn.tools, think=turn.think)
        images = sum(len(m.get("images") or []) for m in messages) if model.projector_paths else 0
        lease = await self._acquire(model, turn.options, req.keep_alive)
        async with lease:
            tokens = await lease.runner.tokenize(prompt)
            num_ctx = lease.spec.num_ctx
        return TokenCount(len(tokens) + IMAGE_TOKENS * images, num_ctx)

    async def tokenize(self, req: TokenizeRequest) -> list[int] | list[TokenPiece]:
        """The content's token ids, or with `with_pieces` each id with its text."""
        model = self._lookup(req.model, f"model '{req.model}' not found")
        lease = await self._acquire(model, self._options(model, req.options), req.keep_alive)
        async with lease:
            if req.with_pieces:
                pairs = await lease.runner.token_pieces(
                    req.content, add_special=req.add_special, parse_special=req.parse_special
                )
                return [TokenPiece(t, piece) for t, piece in pairs]
            tokens: list[int] = await lease.runner.tokenize(
                req.content, add_special=req.add_special, parse_special=req.parse_special
            )
        return tokens

    async def detokenize(self, req: DetokenizeRequest) -> str:
        """The text of the request's token ids (a 400 for an id outside the vocabulary)."""
        model = self._lookup(req.model, f"model '{req.model}' not found")
        lease = await self._acquire(model, self._options(model, req.options), req.keep_alive)
        async with lease:
            error = out_of_vocabulary(req.tokens, int(lease.runner.info.n_vocab))
            if error is not None:
                raise error
            text: str = await lease.runner.detokenize(req.tokens)
        return text

    # ---- embeddings -------------------------------------------------------------------------

    async def embed(self, req: EmbedRequest) -> Embeddings:
        started = time.perf_counter()
        model = self._lookup(req.model, f'model "{req.model}" not found, try pulling it first')
        options = self._options(model, req.options)
        lease = await self._acquire(model, options, req.keep_alive)
        async with lease:
            if not req.inputs:
                return Embeddings()
            vectors, count = await runner_calls.embed(
                lease.runner,
                req.inputs,
                truncate=req.truncate,
                normalize=req.normalize,
                dimensions=req.dimensions,
                num_ctx=lease.spec.num_ctx,
            )
        usage.note_tokens(count)
        return Embeddings(
            vectors=vectors,
            prompt_eval_count=count,
            total_duration=int((time.perf_counter() - started) * 1e9),
            load_duration=int(lease.load_duration * 1e9),
            timed=True,
        )

    async def embeddings(self, model_raw: str, prompt: str, options: Options, keep_alive: float | None) -> list[float]:
        """The legacy `/api/embeddings`: one prompt's vector, not normalized; empty for no prompt."""
        model = self._lookup(model_raw, f'model "{model_raw}" not found, try pulling it first')
        lease = await self._acquire(model, self._options(model, options), keep_alive)
        async with lease:
            if not prompt:
                return []
            try:
                vectors, _ = await runner_calls.embed(
                    lease.runner, [prompt], truncate=True, normalize=False, dimensions=None, num_ctx=lease.spec.num_ctx
                )
            except BadRequest as exc:
                raise PollamaError(exc.message) from None
        return vectors[0]


def _token_text(tokens: list[Any], token_id: Any) -> str:
    if isinstance(token_id, int) and 0 <= token_id < len(tokens):
        return str(tokens[token_id])
    return ""
