"""The runner protocol's vocabulary: every message either side can send.

Both ends import this module and nothing else to agree on the wire format, so
it must stay free of llama.cpp and of asyncio. Messages are frozen dataclasses;
`to_wire` / `from_wire` turn them into plain JSON-able dicts and back (the
framing of those dicts is `protocol.py`'s job). Sequences travel as tuples on
the Python side so the dataclasses stay hashable and immutable.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Union, get_args, get_origin

# ---- payloads shared with the client's public API ---------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    """How a runner loads its model; any change to these means a new runner process."""

    model_path: str
    num_ctx: int = 4096  # per request (per slot); the context holds num_ctx × num_parallel
    num_parallel: int = 1
    num_batch: int = 512
    num_thread: int = 0  # 0 = physical cores
    num_gpu: int = -1  # layers to offload; -1 = all
    main_gpu: int = 0
    use_mmap: bool | None = None  # None = llama.cpp decides
    flash_attention: bool | None = None  # None = auto
    kv_cache_type: str | None = None  # "f16" | "q8_0" | "q4_0"
    embedding: bool = False  # load as an embedding model (no generation)
    lora_paths: tuple[str, ...] = ()
    projector_path: str | None = None
    draft_path: str | None = None  # a draft model (same vocabulary) for speculative decoding
    #: Sliding-window layers get a cache as large as the context (llama.cpp's default): it can
    #: be shifted and keeps old positions for prefix reuse. False keeps only the window (less
    #: memory on long contexts); shifting then re-evaluates the kept tokens.
    swa_full: bool = True
    #: Evaluate prompts in chunks at fixed absolute positions (multiples of the micro-batch) and
    #: reuse a cached prefix only in whole chunks computed so (`POLLAMA_ALIGNED_CACHE`): greedy
    #: output then no longer depends on what was cached before, for up to a micro-batch of
    #: prompt evaluated again per request (`server/runner/slots.py` `aligned_reuse`).
    aligned_cache: bool = False
    #: Repacked CPU weights (llama.cpp's default); False is llama-server's --no-repack
    #: (`POLLAMA_NO_REPACK`), for a CPU whose AMX or other repacked kernels fail.
    repack: bool = True


@dataclass(frozen=True)
class CompletionRequest:
    """One generation: the prompt, Ollama's sampling options, and the limits (defaults: Ollama's `api/types.go` `DefaultOptions`)."""

    prompt: str | tuple[int, ...]
    images: tuple[str, ...] = ()  # base64, in `[img-n]` order
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1
    stop: tuple[str, ...] = ()
    num_predict: int = -1
    num_keep: int = 4
    grammar: str | None = None
    shift: bool = True
    truncate: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    parse_special: bool = True  # templates put control tokens in the prompt as text
    #: Speculative decoding (`server.runner.speculative`): tokens drafted per step, -1 for the
    #: drafter's default, 0 for none (Ollama's `draft_num_predict`); and prompt lookup's n-gram
    #: size, 0 to draft with the draft model if the runner has one (pollama's `draft_ngram`).
    draft_num_predict: int = -1
    draft_ngram: int = 0


@dataclass(frozen=True)
class RunnerInfo:
    """What the runner measured after loading: sizes for /api/ps and limits for requests."""

    model_path: str
    architecture: str
    description: str
    n_ctx: int  # per request (slot)
    n_ctx_total: int
    n_ctx_train: int
    num_parallel: int
    n_batch: int
    n_threads: int
    n_vocab: int
    n_embd: int
    n_layer: int
    bos: int | None
    eos: int | None
    add_bos: bool
    pooling: str  # "none" | "mean" | "cls" | "last" | "rank"
    embedding_only: bool
    can_shift: bool
    vision: bool
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    size: int  # all of the above: what the model costs while loaded
    size_vram: int  # the part of `size` that lives on accelerators
    load_duration: int  # ns
    pid: int
    #: Bytes per device llama.cpp put the model on (`RPC0[host:port]` for a worker's device).
    device_bytes: dict[str, int] = field(default_factory=dict)
    #: Whether llama.cpp runs flash attention (after resolving "auto"); None where it did not say.
    flash_attention: bool | None = None
    n_swa: int = 0  # sliding window of the model's SWA layers; 0 when it has none

    @property
    def memory_total(self) -> int:
        return self.size


# ---- server → runner ----------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    options: LoadOptions


@dataclass(frozen=True)
class Completion:
    id: int
    request: CompletionRequest


@dataclass(frozen=True)
class Embed:
    id: int
    inputs: tuple[str, ...]
    truncate: bool = True
    normalize: bool = True
    dimensions: int | None = None


@dataclass(frozen=True)
class Rerank:
    """Score each document against the query (a reranker model: rank pooling)."""

    id: int
    query: str
    documents: tuple[str, ...]
    truncate: bool = True


@dataclass(frozen=True)
class Tokenize:
    id: int
    text: str
    add_special: bool = True
    parse_special: bool = True
    with_pieces: bool = False  # answer each token's text too (`/api/tokenize`'s `with_pieces`)


@dataclass(frozen=True)
class Detokenize:
    id: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Cancel:
    id: int


@dataclass(frozen=True)
class Health:
    id: int


# ---- runner → server ----------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    info: RunnerInfo


@dataclass(frozen=True)
class Piece:
    """Text (possibly empty) and logprobs of one or more new tokens of a running completion."""

    id: int
    content: str
    logprobs: tuple[dict[str, Any], ...] | None = None
    eval_count: int = 0  # tokens generated so far (a canceled request is logged with it)


@dataclass(frozen=True)
class Done:
    """The last message of a completion; `content` is whatever text was still held back."""

    id: int
    done_reason: str
    content: str = ""
    logprobs: tuple[dict[str, Any], ...] | None = None
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0  # ns
    eval_count: int = 0
    eval_duration: int = 0  # ns
    context: tuple[int, ...] | None = None
    prompt_count: int = 0  # positions of the whole prompt (images included), cached or not
    stop_sequence: str | None = None  # which of the request's stop strings ended it
    draft_count: int = 0  # tokens drafted for speculative decoding
    draft_accepted_count: int = 0  # of those, tokens the model accepted
    truncated_tokens: int = 0  # prompt tokens cut to fit the slot's context (after num_keep)


@dataclass(frozen=True)
class Embedded:
    id: int
    vectors: tuple[tuple[float, ...], ...]
    prompt_eval_count: int


@dataclass(frozen=True)
class Ranked:
    """The relevance score of each document of a `Rerank`, in the request's order."""

    id: int
    scores: tuple[float, ...]
    prompt_eval_count: int


@dataclass(frozen=True)
class Tokens:
    id: int
    tokens: tuple[int, ...]
    pieces: tuple[str, ...] | None = None  # with `with_pieces`: each token's text, as output renders it


@dataclass(frozen=True)
class Text:
    id: int
    text: str


@dataclass(frozen=True)
class HealthReply:
    id: int
    status: str  # "ok" | "loading" | "error"
    active: int = 0
    waiting: int = 0


@dataclass(frozen=True)
class Error:
    """A request failed (id) or loading failed (id 0). `kind` picks the server's error class."""

    id: int
    message: str
    kind: str = "runner"  # "bad_request" | "runner"


@dataclass(frozen=True)
class Shutdown:
    """Not a wire message: the reader puts it in the engine's inbox when stdin closes."""


ToRunner = Load | Completion | Embed | Rerank | Tokenize | Detokenize | Cancel | Health
FromRunner = Loaded | Piece | Done | Embedded | Ranked | Tokens | Text | HealthReply | Error

MESSAGE_TYPES: dict[str, type] = {
    cls.__name__.lower(): cls
    for cls in (
        Load,
        Completion,
        Embed,
        Rerank,
        Tokenize,
        Detokenize,
        Cancel,
        Health,
        Loaded,
        Piece,
        Done,
        Embedded,
        Ranked,
        Tokens,
        Text,
        HealthReply,
        Error,
    )
}
_TYPE_NAMES: dict[type, str] = {cls: name for name, cls in MESSAGE_TYPES.items()}


class MessageError(ValueError):
    """A frame that is JSON but not a message we know (bad type, missing field)."""


def merge_pieces(first: Piece, later: Piece) -> Piece:
    """Two consecutive pieces of one completion as one: the text and logprobs of both, in
    order, and the later count. What a reader behind the engine gets instead of a frame,
    a queue wake-up and an HTTP chunk per token (the tokens are all there either way)."""
    logprobs = None
    if first.logprobs is not None or later.logprobs is not None:
        logprobs = (first.logprobs or ()) + (later.logprobs or ())
    return Piece(first.id, first.content + later.content, logprobs, later.eval_count)


def coalesce(messages: list[Any]) -> list[Any]:
    """`messages` with each completion's pieces that follow one another (no other message of
    that completion between them) merged into its first. Messages of one id keep their
    order; those of different ids are independent streams, so a merged piece may pass
    another completion's messages."""
    out: list[Any] = []
    open_piece: dict[int, int] = {}  # id → index in `out` of the piece later ones merge into
    for msg in messages:
        rid = getattr(msg, "id", None)
        if type(msg) is Piece:
            at = open_piece.get(msg.id)
            if at is not None:
                out[at] = merge_pieces(out[at], msg)
                continue
            open_piece[msg.id] = len(out)
        elif rid is not None:
            open_piece.pop(rid, None)
        out.append(msg)
    return out


def to_wire(message: Any) -> dict[str, Any]:
    """A message as a JSON-able dict with its type under "type" (shallow, fast for pieces)."""
    out: dict[str, Any] = {"type": _TYPE_NAMES[type(message)]}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if dataclasses.is_dataclass(value):
            value = {g.name: getattr(value, g.name) for g in dataclasses.fields(value)}
        out[f.name] = value
    return out


def from_wire(data: dict[str, Any]) -> Any:
    """The message a dict from `to_wire` describes; raises MessageError if it is not one."""
    if not isinstance(data, dict):
        raise MessageError("a message must be a JSON object")
    cls = MESSAGE_TYPES.get(str(data.get("type")))
    if cls is None:
        raise MessageError(f"unknown message type {data.get('type')!r}")
    try:
        return _build(cls, data)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"bad {cls.__name__} message: {exc}") from None


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    """JSON lists become tuples and nested dicts become dataclasses, as the hint says."""
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for arm in get_args(hint):
            if arm is type(None):
                continue
            if isinstance(arm, type) and dataclasses.is_dataclass(arm) and isinstance(value, dict):
                return _build(arm, value)
            if get_origin(arm) is tuple and isinstance(value, list):
                return _convert(arm, value)
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = get_args(hint)
        inner = args[0] if args else Any
        return tuple(_convert(inner, v) for v in value)
    return value
