"""Model names for imported files: a proposal from the repository or file name, and the store's rules for a valid one.

The rules are those the server applies (Ollama's `types/model/name.go`
`isValidPart`, mirrored in `server/store/names.py`): a name is
`[host/][namespace/]model[:tag]`, each part starts with a letter, digit or
`_`, goes on with letters, digits, `_`, `.`, `-` (a host also `:`), a model or
tag is at most 80 characters. The UI cannot import the server, so the rules
are written again here, and the server still refuses what slips through.
A proposal is always valid; the person may edit it, and is told why an edit
is not. Names are compared as Ollama compares them: with `:latest` filled
in, without the default `registry.ollama.ai/library/`, ignoring case.
"""

from __future__ import annotations

import re

from ui.gguf_files import quant_of

DEFAULT_TAG = "latest"
DEFAULT_PREFIX = "registry.ollama.ai/library/"
_MAX = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
_FIRST = re.compile(r"[A-Za-z0-9_]")
_REST = {
    "host": re.compile(r"[A-Za-z0-9_.:-]*"),
    "namespace": re.compile(r"[A-Za-z0-9_-]*"),
    "model": re.compile(r"[A-Za-z0-9_.-]*"),
    "tag": re.compile(r"[A-Za-z0-9_.-]*"),
}
_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}$", re.IGNORECASE)
_GGUF_SUFFIX = re.compile(r"[-_.]?gguf$", re.IGNORECASE)


def _valid_part(kind: str, part: str) -> bool:
    return 1 <= len(part) <= _MAX[kind] and bool(_FIRST.fullmatch(part[0])) and bool(_REST[kind].fullmatch(part[1:]))


def name_problem(text: str) -> str:
    """ "" when `text` is a name the server takes, else what is wrong with it, in words."""
    text = text.strip()
    if not text:
        return "give the model a name"
    rest, tag = text, ""
    if text.rfind(":") > text.rfind("/"):
        rest, _, tag = text.rpartition(":")
        if not _valid_part("tag", tag):
            return "the tag (after ':') may hold letters, digits, '_', '.' and '-', and must not start with '.' or '-'"
    parts = rest.split("/")
    if len(parts) > 3:
        return "a name has at most three parts before the tag: host/namespace/model"
    kinds = ("host", "namespace", "model")[-len(parts) :]
    for kind, part in zip(kinds, parts, strict=True):
        if not _valid_part(kind, part):
            return (
                f"the {kind} '{part}' may hold letters, digits, '_', '.' and '-' (at most {_MAX[kind]}),"
                " and must start with a letter, a digit or '_'"
            )
    return ""


def canonical(name: str) -> str:
    """How two names compare: `Tiny` and `tiny:latest` and `registry.ollama.ai/library/tiny` are one."""
    name = name.strip().lower()
    if name.rfind(":") <= name.rfind("/"):
        name += ":" + DEFAULT_TAG
    return name.removeprefix(DEFAULT_PREFIX)


def _clean(text: str, limit: int) -> str:
    text = _BAD.sub("-", text).strip("-.")
    text = re.sub(r"-{2,}", "-", text)
    return text[:limit].strip("-.") or "model"


def propose(file_name: str, repo: str = "", file_type: str = "") -> str:
    """A valid name for a model made from `file_name` (found in repository `repo`, if any).

    The model part is the repository's name without a `-GGUF` suffix, else the file's stem
    without its quantization; the tag is the quantization (from the file name, else the
    header's file type), lower case as Ollama's library writes tags. `Llama-3.2-1B-Instruct-
    Q4_K_M.gguf` → `llama-3.2-1b-instruct:q4_k_m`.
    """
    stem = file_name[: -len(".gguf")] if file_name.lower().endswith(".gguf") else file_name
    stem = _SPLIT.sub("", stem)
    quant = quant_of(file_name)
    found_quant = quant != stem
    base = repo.rsplit("/", 1)[-1] if repo else stem
    base = _GGUF_SUFFIX.sub("", base)
    if not repo and found_quant:
        cut = base.upper().rfind(quant.upper())
        if cut > 0:
            base = base[:cut]
    model = _clean(base.lower(), _MAX["model"])
    tag = quant if found_quant else file_type
    return f"{model}:{_clean(tag.lower(), _MAX['tag'])}" if tag else model


def unique(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3` … (on the model part) when a name in `taken` (canonical) has it."""
    if canonical(name) not in taken:
        return name
    model, sep, tag = name.rpartition(":") if ":" in name else (name, "", "")
    for n in range(2, 1000):
        candidate = f"{model}-{n}{sep}{tag}"
        if canonical(candidate) not in taken:
            return candidate
    return name
