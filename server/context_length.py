"""Which context length a runner gets, and why (issue 23: "context length that fits").

An explicit `num_ctx` wins: the request's, then the model's parameters
(Modelfile), then `OLLAMA_CONTEXT_LENGTH`. Without one, Ollama picks 4096,
32768 or 262144 tokens by the machine's total VRAM (below 23 GiB, from 23,
from 47: the `OLLAMA_CONTEXT_LENGTH` row of the reference's environment
table), whatever the model.
pollama decides per model instead: the longest context on a ladder of powers
of two (4096 … 262144, never past the model's trained length) whose memory
estimate — weights, KV cache and compute, the scheduler's own
`estimate_memory` — fits in the free memory the model would load into, with
the headroom the scheduler keeps when other models are resident. So a small
model on a large GPU gets a long context and a large one on a laptop gets
4096, and `/api/ps` says which rule chose it.

Plain functions over plain data: the scheduler supplies the free memory and
the cost of a context, and tests fake either without processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: The lengths tried, longest first; Ollama's largest default is the top.
AUTO_LADDER = (262144, 131072, 65536, 32768, 16384, 8192, 4096)
#: The shortest context chosen from memory: Ollama's default below 23 GiB of VRAM.
AUTO_FLOOR = 4096
#: Share of free memory a chosen context may use (the scheduler's `fits` keeps 20 % free).
AUTO_HEADROOM = 0.8


@dataclass(frozen=True)
class ContextChoice:
    """A context length before the scheduler's clamps (trained length, projector minimum),
    where it came from ("request", "model", "env", "memory", "default") and why, in words."""

    num_ctx: int
    source: str
    reason: str


def explicit_context(
    options: Mapping[str, Any], model_params: Mapping[str, Any] | None, env_default: int
) -> ContextChoice | None:
    """The context a request, the model or `OLLAMA_CONTEXT_LENGTH` sets, or None if none does.
    `options` are the merged options (model parameters overlaid by the request's), so a
    value equal to the model's own parameter is credited to the model."""
    value = options.get("num_ctx")
    if value:
        if model_params is not None and model_params.get("num_ctx") == value:
            return ContextChoice(int(value), "model", f"num_ctx {int(value)} from the model's parameters")
        return ContextChoice(int(value), "request", f"num_ctx {int(value)} from the request")
    if env_default:
        return ContextChoice(env_default, "env", f"OLLAMA_CONTEXT_LENGTH={env_default}")
    return None


def fitting_context(trained: int | None, free: int, cost: Callable[[int], int]) -> ContextChoice:
    """The longest ladder length (at most `trained`) whose `cost` in bytes fits in `free`
    less the headroom; `AUTO_FLOOR` (or the trained length, if shorter) when none does."""
    budget = int(free * AUTO_HEADROOM)
    top = int(trained) if trained and trained > 0 else None
    candidates = sorted({min(n, top) if top else n for n in AUTO_LADDER}, reverse=True)
    floor = min(AUTO_FLOOR, top) if top else AUTO_FLOOR
    trained_note = f" (trained for {top})" if top else ""
    for n in candidates:
        if n < floor:
            break
        need = cost(n)
        if need <= budget:
            return ContextChoice(
                n,
                "memory",
                f"{n} tokens chosen from free memory: estimate {_mib(need)} of {_mib(free)} free{trained_note}",
            )
    return ContextChoice(
        floor,
        "memory",
        f"{floor} tokens, the shortest default: even it needs {_mib(cost(floor))} of {_mib(free)} free{trained_note}",
    )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n < (1 << 30) else f"{n / (1 << 30):.1f} GiB"
