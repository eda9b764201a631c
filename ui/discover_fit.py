"""Fits / tight / does not fit: the verdict the Discover page shows beside every model and file.

Two sources, told apart on screen:
- the server's estimate (`/api/pollama/estimate`, which for a model not
  pulled reads its manifest and GGUF header over the network): weights, KV
  cache at the chosen context and compute, against this machine's free
  memory — the real answer;
- before that, a guess from the download size alone (what other apps show),
  marked "≈" until the estimate arrives.

"Tight" is the scheduler's own margin (`server/scheduler.py`, `fits`): with
another model loaded, pollama loads a new one beside it only if it takes at
most 80 % of the free memory; above that it unloads the other first. So a
model between 80 % and 100 % of the free memory loads, but alone, and other
programs may push it out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ui.api_types import Estimate
from ui.format import human_size

#: The share of free memory a model may take and still load beside another (the scheduler's rule).
HEADROOM_SHARE = 0.8


class Fit(enum.Enum):
    FITS = "fits"
    TIGHT = "tight"
    NO = "does not fit"
    UNKNOWN = "unknown"


LABELS = {Fit.FITS: "Fits", Fit.TIGHT: "Tight", Fit.NO: "Does not fit", Fit.UNKNOWN: "—"}

TIGHT_MEANS = (
    "Tight: it fits in the memory free now, but takes more than 80 % of it, so pollama runs it only "
    "with no other model loaded, and other programs may push it out of memory."
)


def verdict(total: int, free: int) -> Fit:
    if free <= 0 or total <= 0:
        return Fit.UNKNOWN
    if total <= free * HEADROOM_SHARE:
        return Fit.FITS
    if total <= free:
        return Fit.TIGHT
    return Fit.NO


@dataclass(frozen=True)
class FitView:
    """What one row shows: the verdict, whether it is a guess, and the tooltip that explains it."""

    fit: Fit
    guessed: bool
    tooltip: str

    @property
    def label(self) -> str:
        text = LABELS[self.fit]
        return f"≈ {text}" if self.guessed and self.fit is not Fit.UNKNOWN else text


def from_size(size: int, free: int, where: str = "memory") -> FitView:
    fit = verdict(size, free)
    if fit is Fit.UNKNOWN:
        return FitView(fit, True, "Free memory is not known yet.")
    tip = (
        f"A guess from the download size ({human_size(size)}) against {human_size(free)} of free {where}. "
        "Select it to have the server read the model's header and estimate weights, KV cache and compute "
        "before anything is downloaded.\n" + TIGHT_MEANS
    )
    return FitView(fit, True, tip)


def from_estimate(est: Estimate) -> FitView:
    fit = verdict(est.total, est.free_memory)
    where = "VRAM" if est.device == "gpu" else "RAM"
    tip = (
        f"Needs {human_size(est.total)} at a context of {est.context_length:,} tokens: weights "
        f"{human_size(est.weights)}, KV cache {human_size(est.kv_cache)}, compute {human_size(est.compute)}; "
        f"{human_size(est.free_memory)} of {where} is free."
    )
    if est.download_size:
        tip += f" Download: {human_size(est.download_size)}."
    return FitView(fit, False, tip + "\n" + TIGHT_MEANS)
