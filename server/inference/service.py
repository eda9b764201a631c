"""Generate, chat and embed: store → prompt → scheduler → runner → parsers.

The native handlers and the OpenAI/Anthropic translators all call this one
service, so a rule (capability checks, load/unload requests, thinking
defaults, context fitting, stats) is written once. It yields Ollama's native
response objects; the API layers only reshape them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from server import usage
from server.errors import BadRequest, NotFound, PollamaError
from server.inference import runner_calls
from server.inference.output import OutputPipeline
from server.inference.requests import ChatRequest, EmbedRequest, GenerateRequest
from server.inference.rerank import Ranked, RerankRequest, ranking
from server.inference.token_requests import DetokenizeRequest, TokenizeRequest, out_of_vocabulary
from server.options import DEFAULT_OPTIONS, validate_options
from server.prompt import (
    IMAGE_TOKENS,
    ChatTemplate,
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
from server.timefmt import utc_now

log = logging.getLogger(__name__)

Template = ChatTemplate | JinjaTemplate

#: `POST /v1/chat/completions`: the route being answered, set by the HTTP layer for each request, so
#: that a completion its client gave up on is logged with the route it came in on (the service knows
#: the model and the tokens, not the route, and the compat APIs all end up here).
REQUEST_ROUTE: ContextVar[str] = ContextVar("pollama_request_route", default="")


@dataclass(frozen=True)
class ChatParts:
    """What a chat's prompt is rendered from once its request is checked (`_chat_parts`)."""

    think: bool | str | None
    template: Template
    options: dict[str, Any]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    format: Any


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

    def _options(self, model: Model, request: dict[str, Any], error: BadRequest | None = None) -> dict[str, Any]:
        """Defaults < the model's parameters < the request's options, those checked now that
        the model is known (a 400 naming a bad option comes after a 404 for the model);
        `error` is a bad option a translator already found (`GenerationFields.option_error`)."""
        if error is not None:
            raise error
        return {**DEFAULT_OPTIONS, **model.parameters, **validate_options(request)}

    async def _acquire(
        self, model: Model, options: dict[str, Any], keep_alive: float | None, *, embedding: bool = False
    ) -> Lease:
        spec = await asyncio.to_thread(self.scheduler.spec_for, model, options, embedding=embedding)
        return await self.scheduler.acquire(model, spec, keep_alive)

    async def _fit(
        self,
        lease: Lease,
        messages: list[dict[str, Any]],
        render: Any,
        num_ctx: int,
        truncate: bool,
        has_projector: bool,
    ) -> Any:
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

    # ---- generate ----------------------------------------------------------------------------

    async def generate(self, req: GenerateRequest) -> AsyncIterator[dict[str, Any]]:
        started = time.perf_counter()
        if not req.model:
            raise NotFound(f"model '{req.model}' not found")
        model = self._lookup(req.model, f"model '{req.model}' not found")
        if req.only_loads and req.keep_alive == 0:
            await self.scheduler.expire(model)
            yield {"model": req.model, "created_at": utc_now(), "response": "", "done": True, "done_reason": "unload"}
            return
        if req.raw and (req.template or req.system or req.context):
            raise BadRequest("raw mode does not support template, system, or context")
        caps = await asyncio.to_thread(capabilities, model)
        if "completion" not in caps:
            raise BadRequest(f'"{model.name.model}" does not support generate')
        if req.suffix and "insert" not in caps and not req.template:
            raise BadRequest(f"{model.name.full} does not support insert")
        if req.images and "vision" not in caps:
            raise BadRequest(f"{model.name.full} does not support vision")
        think = self._think(model, caps, req.think)
        template = await asyncio.to_thread(self._template, model, req.template)
        options = self._options(model, req.options, req.option_error)

        def render() -> str:
            if req.raw:
                return req.prompt
            system = req.system if req.system is not None else model.system
            history = model.messages if req.context is None else []
            if isinstance(template, JinjaTemplate):
                msgs = ([{"role": "system", "content": system}] if system else []) + list(history)
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
            text = render() if req.prompt or req.suffix else ""
            yield {
                "model": req.model,
                "created_at": utc_now(),
                "response": "",
                "done": False,
                "_debug_info": {"rendered_template": text, "image_count": len(req.images)},
            }
            return

        lease = await self._acquire(model, options, req.keep_alive)
        async with lease:
            if req.only_loads:
                yield {"model": req.model, "created_at": utc_now(), "response": "", "done": True, "done_reason": "load"}
                return
            prompt = await asyncio.to_thread(render)
            if req.context:
                prompt = await lease.runner.detokenize(req.context) + prompt
            thinking = None
            tags = getattr(template, "thinking_tags", None)
            if think and tags and not req.raw:
                thinking = ThinkingParser.for_prompt(tags[0], tags[1], prompt)
            pipeline = OutputPipeline(thinking, None)
            async for chunk in self._complete(lease, prompt, options, req.format, req, images=req.images):
                if chunk.get("done"):
                    tail = pipeline.finish()
                    final = {"model": req.model, "created_at": utc_now(), "response": tail.content, "done": True}
                    if tail.thinking:
                        final["thinking"] = tail.thinking
                    final.update(self._stats(chunk, lease, started))
                    if chunk.get("truncated_tokens"):
                        final["truncated_tokens"] = chunk["truncated_tokens"]
                    if not req.raw and chunk.get("context") is not None:
                        final["context"] = chunk["context"]
                    yield final
                    return
                piece = pipeline.feed(chunk["content"])
                out: dict[str, Any] = {
                    "model": req.model,
                    "created_at": utc_now(),
                    "response": piece.content,
                    "done": False,
                }
                if piece.thinking:
                    out["thinking"] = piece.thinking
                if chunk.get("logprobs"):
                    out["logprobs"] = chunk["logprobs"]
                if piece or chunk.get("logprobs"):
                    yield out

    # ---- chat ----------------------------------------------------------------------------------

    async def _chat_parts(self, model: Model, req: ChatRequest, strict_think: bool) -> ChatParts:
        """What a chat renders its prompt from, checked against the model's capabilities:
        the thinking setting, the template, the options, the whole conversation (the
        Modelfile's messages and system prompt first), the tools `tool_choice` leaves and
        the format (a forced call's grammar). Chat and token counting share it, so a count
        is of the very prompt the chat would send."""
        caps = await asyncio.to_thread(capabilities, model)
        if "completion" not in caps:
            raise BadRequest(f'"{model.name.model}" does not support chat')
        tools = None if req.tool_choice.hides_tools else req.tools
        if tools and "tools" not in caps:
            raise BadRequest(f"{model.name.full} does not support tools")
        if any(m.get("images") for m in req.messages) and "vision" not in caps:
            raise BadRequest(f"{model.name.full} does not support vision")
        forced = bool(tools) and req.tool_choice.forces_call
        # A forced call is the whole reply: there is no room for thinking before it.
        think = False if forced else self._think(model, caps, req.think, strict=strict_think)
        template = await asyncio.to_thread(self._template, model, None)
        fmt = (
            runner_calls.forced_tool_call(template.tool_call_tag, tools or [], req.tool_choice.name)
            if forced
            else req.format
        )
        options = self._options(model, req.options, req.option_error)
        messages = list(model.messages) + list(req.messages)
        if model.system and (not req.messages or req.messages[0].get("role") != "system"):
            messages.insert(0, {"role": "system", "content": model.system})
        return ChatParts(think, template, options, messages, tools, fmt)

    async def chat(
        self, req: ChatRequest, *, strict_think: bool = True, report_stop: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Native chat chunks. `report_stop` adds `stop_sequence` (which of the request's own
        stop strings ended the reply) to the final chunk: Anthropic's API has the field,
        Ollama's has not."""
        started = time.perf_counter()
        if not req.model:
            raise BadRequest("model is required")
        model = self._lookup(req.model, f"model '{req.model}' not found", BadRequest("model is required"))
        if req.only_loads and req.keep_alive == 0:
            await self.scheduler.expire(model)
            yield {
                "model": req.model,
                "created_at": utc_now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "unload",
            }
            return
        parts = await self._chat_parts(model, req, strict_think)
        think, template, options, messages, tools, fmt = (
            parts.think,
            parts.template,
            parts.options,
            parts.messages,
            parts.tools,
            parts.format,
        )

        def render(msgs: list[Message]) -> str:
            return render_chat(template, msgs, tools=tools, think=think)

        if req.debug_render_only:
            text = (
                await asyncio.to_thread(render_chat, template, messages, tools=tools, think=think)
                if req.messages
                else ""
            )
            images = sum(len(m.get("images") or []) for m in messages)
            yield {
                "model": req.model,
                "created_at": utc_now(),
                "message": {"role": "", "content": ""},
                "done": False,
                "_debug_info": {"rendered_template": text, "image_count": images},
            }
            return

        lease = await self._acquire(model, options, req.keep_alive)
        async with lease:
            if req.only_loads:
                yield {
                    "model": req.model,
                    "created_at": utc_now(),
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "load",
                }
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
            thinking = None
            tags = getattr(template, "thinking_tags", None)
            if think and tags:
                thinking = ThinkingParser.for_prompt(tags[0], tags[1], fit.prompt)
            tool_parser = (
                ToolCallParser(template if isinstance(template, ChatTemplate) else template.tool_call_tag, tools)
                if tools
                else None
            )
            pipeline = OutputPipeline(thinking, tool_parser)
            async for chunk in self._complete(lease, fit.prompt, options, fmt, req, images=fit.images):
                if chunk.get("done"):
                    tail = pipeline.finish()
                    message: dict[str, Any] = {"role": "assistant", "content": tail.content}
                    if tail.thinking:
                        message["thinking"] = tail.thinking
                    if tail.tool_calls:
                        message["tool_calls"] = tail.tool_calls
                    final = {"model": req.model, "created_at": utc_now(), "message": message, "done": True}
                    final.update(self._stats(chunk, lease, started))
                    if fit.dropped:
                        final["truncated_messages"] = fit.dropped
                    if chunk.get("truncated_tokens"):
                        final["truncated_tokens"] = chunk["truncated_tokens"]
                    if report_stop and chunk.get("stop_sequence") in ((req.options or {}).get("stop") or ()):
                        final["stop_sequence"] = chunk["stop_sequence"]  # the client's, not the Modelfile's
                    yield final
                    return
                piece = pipeline.feed(chunk["content"])
                if not piece and not chunk.get("logprobs"):
                    continue
                message = {"role": "assistant", "content": piece.content}
                if piece.thinking:
                    message["thinking"] = piece.thinking
                if piece.tool_calls:
                    message["tool_calls"] = piece.tool_calls
                out = {"model": req.model, "created_at": utc_now(), "message": message, "done": False}
                if chunk.get("logprobs"):
                    out["logprobs"] = chunk["logprobs"]
                yield out

    # ---- the runner call ----------------------------------------------------------------------

    async def _complete(
        self, lease: Lease, prompt: str, options: dict[str, Any], fmt: Any, req: Any, *, images: Any = ()
    ) -> AsyncIterator[dict[str, Any]]:
        """The runner's chunks; a completion closed before its last chunk (the client went away) is
        logged once, here, with the route, the model and the tokens generated until then."""
        generated = 0
        finished = False
        try:
            async for chunk in runner_calls.completion(lease.runner, prompt, options, fmt, req, images=list(images)):
                finished = bool(chunk.get("done"))
                generated = max(generated, int(chunk.get("eval_count") or 0))
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

    def _stats(self, chunk: dict[str, Any], lease: Lease, started: float) -> dict[str, Any]:
        stats: dict[str, Any] = {"done_reason": chunk.get("done_reason") or "stop"}
        values = {
            "total_duration": int((time.perf_counter() - started) * 1e9),
            "load_duration": int(lease.load_duration * 1e9),
            "prompt_eval_count": chunk.get("prompt_eval_count", 0),
            "prompt_eval_duration": chunk.get("prompt_eval_duration", 0),
            "eval_count": chunk.get("eval_count", 0),
            "eval_duration": chunk.get("eval_duration", 0),
        }
        stats.update({k: v for k, v in values.items() if v})  # Ollama omits zero metrics
        usage.note_tokens(values["prompt_eval_count"], values["eval_count"])
        if chunk.get("draft_count"):  # pollama's: how speculative decoding went (none drafted: absent)
            stats["draft_count"] = chunk["draft_count"]
            stats["draft_accepted_count"] = chunk.get("draft_accepted_count", 0)
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
        parts = await self._chat_parts(model, req, strict_think)
        prompt = await asyncio.to_thread(
            render_chat, parts.template, parts.messages, tools=parts.tools, think=parts.think
        )
        images = sum(len(m.get("images") or []) for m in parts.messages) if model.projector_paths else 0
        lease = await self._acquire(model, parts.options, req.keep_alive)
        async with lease:
            tokens = await lease.runner.tokenize(prompt)
            num_ctx = lease.spec.num_ctx
        return TokenCount(len(tokens) + IMAGE_TOKENS * images, num_ctx)

    async def tokenize(self, req: TokenizeRequest) -> dict[str, Any]:
        model = self._lookup(req.model, f"model '{req.model}' not found")
        lease = await self._acquire(model, self._options(model, req.options), req.keep_alive)
        async with lease:
            if req.with_pieces:
                pairs = await lease.runner.token_pieces(
                    req.content, add_special=req.add_special, parse_special=req.parse_special
                )
                tokens: list[Any] = [{"id": t, "piece": piece} for t, piece in pairs]
            else:
                tokens = await lease.runner.tokenize(
                    req.content, add_special=req.add_special, parse_special=req.parse_special
                )
        return {"model": req.model, "tokens": tokens}

    async def detokenize(self, req: DetokenizeRequest) -> dict[str, Any]:
        model = self._lookup(req.model, f"model '{req.model}' not found")
        lease = await self._acquire(model, self._options(model, req.options), req.keep_alive)
        async with lease:
            error = out_of_vocabulary(req.tokens, int(lease.runner.info.n_vocab))
            if error is not None:
                raise error
            text = await lease.runner.detokenize(req.tokens)
        return {"model": req.model, "content": text}

    # ---- embeddings -------------------------------------------------------------------------

    async def embed(self, req: EmbedRequest) -> dict[str, Any]:
        started = time.perf_counter()
        model = self._lookup(req.model, f'model "{req.model}" not found, try pulling it first')
        options = self._options(model, req.options)
        lease = await self._acquire(model, options, req.keep_alive)
        async with lease:
            if not req.inputs:
                return {"model": req.model, "embeddings": []}
            vectors, count = await runner_calls.embed(
                lease.runner,
                req.inputs,
                truncate=req.truncate,
                normalize=req.normalize,
                dimensions=req.dimensions,
                num_ctx=lease.spec.num_ctx,
            )
        out: dict[str, Any] = {"model": req.model, "embeddings": vectors}
        out["total_duration"] = int((time.perf_counter() - started) * 1e9)
        out["load_duration"] = int(lease.load_duration * 1e9)
        out["prompt_eval_count"] = count
        usage.note_tokens(count)
        return out

    async def embeddings(
        self, model_raw: str, prompt: str, options: dict[str, Any], keep_alive: float | None
    ) -> dict[str, Any]:
        model = self._lookup(model_raw, f'model "{model_raw}" not found, try pulling it first')
        lease = await self._acquire(model, self._options(model, options), keep_alive)
        async with lease:
            if not prompt:
                return {"embedding": []}
            try:
                vectors, _ = await runner_calls.embed(
                    lease.runner, [prompt], truncate=True, normalize=False, dimensions=None, num_ctx=lease.spec.num_ctx
                )
            except BadRequest as exc:
                raise PollamaError(exc.message) from None
        return {"embedding": vectors[0]}


def _token_text(tokens: list[Any], token_id: Any) -> str:
    if isinstance(token_id, int) and 0 <= token_id < len(tokens):
        return str(tokens[token_id])
    return ""
