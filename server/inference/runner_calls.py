"""The one place where the server speaks the runner client's types.

Options in Ollama's vocabulary become a `CompletionRequest`; the runner's
chunks become `RunnerText` (raw text, before the output parsers) and one
`events.Final` (why it ended, the runner's counts); the scheduler's
`RunnerSpec` becomes the runner's `LoadOptions`. Keeping the translation
here means the runner protocol can evolve without touching the API layer.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.errors import BadRequest
from server.inference.events import Final, Logprob, Stats
from server.inference.requests import GenerationFields
from server.jsontypes import JSONObject
from server.options import Options
from server.runner.grammar import Gbnf, grammar_for_format, grammar_for_tool_call
from server.runner.interface import Runner
from server.scheduler import RunnerSpec

if TYPE_CHECKING:
    from server.runner.client import RunnerClient

log = logging.getLogger("pollama.runner")

#: What holds a completion's output to a shape: a request's `format` ("json" or a JSON schema),
#: a grammar already written (a forced tool call, `forced_tool_call`), or nothing.
Format = str | JSONObject | Gbnf | None


@dataclass(frozen=True, slots=True)
class RunnerText:
    """New raw text of a running completion (thinking and tool calls not yet split off),
    its logprobs, and how many tokens have been generated so far (`eval_count`), which is
    what a completion the client gave up on is logged with."""

    text: str
    logprobs: tuple[Logprob, ...] = ()
    eval_count: int = 0


async def start_runner(spec: RunnerSpec, load_timeout: float | None) -> RunnerClient:
    from server.runner.client import LoadOptions, RunnerClient

    options = LoadOptions(
        model_path=spec.model_path,
        num_ctx=spec.num_ctx,
        num_parallel=spec.num_parallel,
        num_batch=spec.num_batch,
        num_thread=spec.num_thread,
        num_gpu=spec.num_gpu,
        main_gpu=spec.main_gpu,
        use_mmap=spec.use_mmap,
        flash_attention=spec.flash_attention,
        kv_cache_type=spec.kv_cache_type or None,
        embedding=spec.embedding,
        lora_paths=tuple(spec.adapters),
        projector_path=spec.projectors[0] if spec.projectors else None,
        draft_path=spec.draft,
        aligned_cache=spec.aligned_cache,
        repack=spec.repack,
    )
    return await RunnerClient.start(options, load_timeout=load_timeout, log=log)


def _base64(image: bytes | str) -> str:
    """The runner protocol is JSON, so image bytes travel base64-encoded (as they arrived)."""
    return image if isinstance(image, str) else base64.b64encode(image).decode("ascii")


def forced_tool_call(tag: str, tools: list[JSONObject], name: str | None) -> Gbnf:
    """The grammar (`Gbnf`) that holds a reply to one call of *tools*; passed where a `format` goes."""
    try:
        return grammar_for_tool_call(tag, tools, name=name)
    except ValueError as exc:
        raise BadRequest(f"invalid tool_choice: {exc}") from None


def _grammar(fmt: Format) -> str | None:
    if fmt is None:
        return None
    if isinstance(fmt, Gbnf):
        return fmt.text

    try:
        return grammar_for_format(fmt)
    except Exception as exc:
        raise BadRequest(f"invalid format: {exc}") from None


async def completion(
    runner: Runner,
    prompt: str,
    options: Options,
    fmt: Format,
    req: GenerationFields,
    *,
    images: Sequence[bytes | str],
) -> AsyncIterator[RunnerText | Final]:
    """The runner's chunks as `RunnerText`, then one `Final` (its `tail` empty: the text of the
    runner's last chunk comes as a `RunnerText` before it) with the runner's counts; the
    durations of the whole request (total, load) are the service's to add."""
    from server.runner.client import CompletionRequest

    request = CompletionRequest(
        prompt=prompt,
        images=tuple(_base64(image) for image in images),
        temperature=float(options["temperature"]),
        top_k=int(options["top_k"]),
        top_p=float(options["top_p"]),
        min_p=float(options["min_p"]),
        typical_p=float(options["typical_p"]),
        repeat_last_n=int(options["repeat_last_n"]),
        repeat_penalty=float(options["repeat_penalty"]),
        presence_penalty=float(options["presence_penalty"]),
        frequency_penalty=float(options["frequency_penalty"]),
        seed=int(options["seed"]),
        stop=tuple(options.get("stop") or ()),
        num_predict=int(options["num_predict"]),
        num_keep=int(options["num_keep"]),
        grammar=_grammar(fmt),
        shift=bool(req.shift),
        truncate=bool(req.truncate),
        logprobs=bool(req.logprobs),
        top_logprobs=int(req.top_logprobs),
        draft_num_predict=int(options.get("draft_num_predict", -1)),
        draft_ngram=int(options.get("draft_ngram") or 0),
    )
    stream = runner.completion(request)
    try:
        async for chunk in stream:
            if chunk.done:
                if chunk.content or chunk.logprobs:
                    yield RunnerText(chunk.content, tuple(chunk.logprobs or ()), chunk.eval_count)
                # Ollama documents prompt_eval_count as the prompt's size; the runner counts
                # only what it evaluated, which is ~1 when the prefix was cached.
                stats = Stats(
                    prompt_eval_count=max(chunk.prompt_count, chunk.prompt_eval_count),
                    prompt_eval_duration=chunk.prompt_eval_duration,
                    eval_count=chunk.eval_count,
                    eval_duration=chunk.eval_duration,
                    draft_count=chunk.draft_count,
                    draft_accepted_count=chunk.draft_accepted_count,
                )
                yield Final(
                    done_reason=chunk.done_reason or "stop",
                    stats=stats,
                    truncated_tokens=chunk.truncated_tokens,
                    context=tuple(chunk.context) if chunk.context is not None else None,
                    stop_sequence=chunk.stop_sequence,
                )
                return
            yield RunnerText(chunk.content, tuple(chunk.logprobs or ()), chunk.eval_count)
    finally:
        await stream.aclose()


async def embed(
    runner: Runner, inputs: list[str], *, truncate: bool, normalize: bool, dimensions: int | None, num_ctx: int
) -> tuple[list[list[float]], int]:
    result = await runner.embed(inputs, truncate=truncate, normalize=normalize, dimensions=dimensions)
    return [list(v) for v in result.vectors], int(result.prompt_eval_count)
