"""A Hugging Face repository's files → the GGUF models in it, one per quantization.

A GGUF repository holds one file per quantization (`Model-Q4_K_M.gguf`,
`Model-Q8_0.gguf`), sometimes split into parts (`-00001-of-00003.gguf`, one
model: llama.cpp loads the first and finds the rest), sometimes in a folder
per quantization, and for vision models `mmproj-*.gguf` projector files,
which are not models to run on their own (Hugging Face's registry adds them
to the model as a projector layer). The Discover page lists what this
returns: one choice per quantization with its total size, pulled as
`hf.co/<user>/<repo>:<quant>` (the tag Hugging Face's registry matches
against the file names, case-insensitively). No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: A quantization name in a file name: llama.cpp's types (Q4_K_M, IQ3_XXS, Q8_0, F16, BF16, TQ1_0,
#: MXFP4), optionally with Unsloth's dynamic `UD-` prefix. The last match in the name wins.
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q\d(?:_[A-Z0-9]+)*|TQ\d_\d|MXFP4(?:_MOE)?|BF16|F16|F32|FP16))(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})$", re.IGNORECASE)


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int


@dataclass(frozen=True)
class GgufChoice:
    """One model of the repository: a quantization, its files (several when split) and their total size."""

    quant: str
    files: tuple[str, ...]
    size: int

    @property
    def parts(self) -> int:
        return len(self.files)

    def pull_name(self, repo_id: str) -> str:
        return f"hf.co/{repo_id}:{self.quant}"


@dataclass(frozen=True)
class RepoModels:
    choices: tuple[GgufChoice, ...] = ()
    projectors: tuple[RepoFile, ...] = ()

    @property
    def projector_size(self) -> int:
        return max((p.size for p in self.projectors), default=0)


def is_projector(path: str) -> bool:
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def quant_of(path: str) -> str:
    """The quantization a file name says (upper case, as tags are written), else the file's stem."""
    stem = path.rsplit("/", 1)[-1]
    stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
    stem = _SPLIT.sub("", stem)
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else stem


def group_gguf(files: Iterable[RepoFile]) -> RepoModels:
    """The repository's models by quantization (smallest first) and its projector files."""
    by_quant: dict[str, list[RepoFile]] = {}
    projectors = []
    for f in files:
        if not f.path.lower().endswith(".gguf"):
            continue
        if is_projector(f.path):
            projectors.append(f)
            continue
        by_quant.setdefault(quant_of(f.path), []).append(f)
    choices = [
        GgufChoice(quant, tuple(sorted(f.path for f in group)), sum(f.size for f in group))
        for quant, group in by_quant.items()
    ]
    choices.sort(key=lambda c: (c.size, c.quant))
    return RepoModels(tuple(choices), tuple(sorted(projectors, key=lambda p: p.path)))
