"""The templates Ollama ships, and matching a GGUF's Jinja template to one.

`templates/` holds Ollama's bundled Go templates (`<name>.gotmpl`), their
parameters (`<name>.json`, mostly `stop`) and `index.json`, which pairs known
Jinja chat templates with a bundled name (MIT, see templates/LICENSE). At
create time a model with a `tokenizer.chat_template` and no TEMPLATE gets the
bundled template whose Jinja is closest by Levenshtein distance, if that
distance is under 100 — Ollama's `template.Named`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from server.prompt import levenshtein

MATCH_THRESHOLD = 100


@dataclass(frozen=True, slots=True)
class BundledTemplate:
    """A bundled template: its name, Go template text and parameters."""

    name: str
    template_text: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def stop(self) -> list[str]:
        """The stop list Ollama stores with the template (its only parameter)."""
        return list(self.parameters.get("stop", []))


@dataclass(frozen=True, slots=True)
class _IndexEntry:
    name: str
    jinja: str


def _read(name: str) -> str:
    return (resources.files("server.prompt") / "templates" / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _bundled() -> dict[str, BundledTemplate]:
    out: dict[str, BundledTemplate] = {}
    folder = resources.files("server.prompt") / "templates"
    on_disk = sorted(p.name[: -len(".gotmpl")] for p in folder.iterdir() if p.name.endswith(".gotmpl"))
    for name in [e.name for e in _index()] + on_disk:
        if name in out:
            continue
        text = _read(f"{name}.gotmpl").replace("\r\n", "\n")
        try:
            params = json.loads(_read(f"{name}.json"))
        except FileNotFoundError:
            params = {}
        out[name] = BundledTemplate(name, text, params)
    return out


@lru_cache(maxsize=1)
def _index() -> tuple[_IndexEntry, ...]:
    return tuple(_IndexEntry(e["name"], e["template"]) for e in json.loads(_read("index.json")))


def bundled_templates() -> list[BundledTemplate]:
    """Every bundled template (those in index.json first, in its order)."""
    return list(_bundled().values())


def bundled_template(name: str) -> BundledTemplate | None:
    return _bundled().get(name)


def detect_bundled_template(jinja_text: str) -> BundledTemplate | None:
    """The bundled template Ollama picks for this Jinja template, or None.

    Closest index entry by edit distance (first one wins a tie, as in Go),
    accepted only when the distance is below 100. Entries whose length alone
    puts them further away than the best so far are skipped unmeasured.
    """
    best: _IndexEntry | None = None
    best_score = -1
    for entry in _index():
        if best is not None and abs(len(entry.jinja) - len(jinja_text)) >= best_score:
            continue
        score = levenshtein.distance(jinja_text, entry.jinja)
        if best is None or score < best_score:
            best, best_score = entry, score
    if best is None or best_score >= MATCH_THRESHOLD:
        return None
    return _bundled()[best.name]
