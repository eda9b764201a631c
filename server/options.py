"""The model options (`options` in requests, `PARAMETER` in Modelfiles) and their types.

One table serves the Modelfile parser, `/api/create`'s `parameters`, and the
per-request options, so a name or a type cannot mean one thing in one place
and another elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeAlias

from server.errors import BadRequest, PollamaError

#: Option name → value, each value of the type `OPTION_TYPES` names (`coerce_option` checks it):
#: a request's `options`, a Modelfile's parameters, and the merge of both the runner is given.
Options: TypeAlias = dict[str, Any]

#: name → type, as in Ollama's api.Options (runner options included).
OPTION_TYPES: dict[str, type] = {
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
    "draft_num_predict": int,
    "draft_ngram": int,  # pollama's: prompt-lookup drafting, the n-gram size (0: off)
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "repeat_last_n": int,
    "temperature": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": list,
}

#: Accepted and ignored (the Modelfile parser warns), as Ollama does.
DEPRECATED_OPTIONS = frozenset(
    "numa low_vram f16_kv logits_all vocab_only use_mlock mirostat mirostat_tau mirostat_eta "
    "penalize_newline tfs_z num_gqa".split()
)

#: Options that pick how a runner is loaded, Ollama's `api/types.go` `Runner`: a change reloads
#: the runner (`server/sched.go` `runnerRef.needsReload`; pollama's is `scheduler.needs_reload`).
RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")

DEFAULT_OPTIONS: Options = {
    "num_batch": 512,
    "num_gpu": -1,
    "num_thread": 0,
    "num_keep": 4,
    "seed": -1,
    "num_predict": -1,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}

_GO_TYPE = {int: "int", float: "float32", bool: "bool", list: "[]string"}


def coerce_option(name: str, value: Any, error: type[PollamaError] = BadRequest) -> Any:
    """Check and convert one JSON option value to its declared type (Ollama's words, in
    `api.Options.FromMap`; its generate and chat answer them with 500, pollama with 400)."""
    kind = OPTION_TYPES[name]
    bad = error(f'option "{name}" must be of type {_GO_TYPE[kind]}')
    if kind is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise bad
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        try:
            result = float(value)
        except OverflowError:  # an integer no float holds
            raise bad from None
        if not math.isfinite(result):
            raise bad
        return result
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad
    return list(value)


def coerce_options(options: Any, error: type[PollamaError] = BadRequest) -> Options:
    """Validate a whole options object; unknown and deprecated keys are dropped."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise BadRequest("options must be an object")
    out: Options = {}
    for key, value in options.items():
        if key in OPTION_TYPES and value is not None:
            out[key] = coerce_option(key, value, error)
    return out


def parse_option_text(name: str, values: list[str]) -> Any:
    """A Modelfile PARAMETER value (text) → typed value; errors read like Ollama's."""
    if name in DEPRECATED_OPTIONS:
        return None
    kind = OPTION_TYPES.get(name)
    if kind is None:
        raise BadRequest(f"unknown parameter '{name}'")
    if kind is list:
        return list(values)
    text = values[-1]
    try:
        if kind is int:
            return int(text)
        if kind is float:
            result = float(text)
            if not math.isfinite(result):
                raise ValueError
            return result
        lowered = text.lower()
        if lowered in ("1", "t", "true"):
            return True
        if lowered in ("0", "f", "false"):
            return False
        raise ValueError
    except ValueError:
        raise BadRequest(f"invalid {_GO_TYPE[kind].rstrip('32')} value [{text}]") from None


#: The least value with a meaning, for options where less has none (a context or a batch of
#: no tokens; num_predict -1 is "no limit" and -2 "fill the context", as in Ollama).
OPTION_MINIMUMS: dict[str, tuple[int, str]] = {
    "num_ctx": (1, "a positive number of tokens"),
    "num_batch": (1, "a positive number of tokens"),
    "num_predict": (-2, "-1 (no limit) or a number of tokens"),
}


def validate_options(options: Any) -> Options:
    """A request's `options`, typed (`coerce_options`) and refused with a 400 naming the option
    where a value has no meaning. Every other value is accepted: those past what llama.cpp
    takes are clamped where a runner is loaded (`server/scheduler.py`) and in the runner
    (`server/runner/limits.py`), as Ollama clamps them."""
    out = coerce_options(options, BadRequest)
    for name, (least, meaning) in OPTION_MINIMUMS.items():
        value = out.get(name)
        if value is not None and value < least:
            raise BadRequest(f"{name} must be {meaning}, got {value}")
    return out
