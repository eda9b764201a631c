"""The curated catalog of Ollama library models the Discover page lists, and how it is filtered.

A person who opens pollama for the first time does not know model names by
heart. `resources/catalog.json` lists popular models of the Ollama library
with their tags, download sizes, capabilities, context length and a line of
description; `packaging/make_catalog.py` regenerates it from the registry's
manifests. This module reads it into frozen types (a broken entry is
skipped, not fatal: the page still lists the rest) and filters it by text,
capability and the size that fits. No widgets and no I/O beyond reading the
file, so the filtering is tested on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ui.resources import resource_path

log = logging.getLogger("pollama.ui.catalog")

#: Capabilities a person can filter on (what `/api/show` calls them); "completion" goes without saying.
CAPABILITIES: tuple[str, ...] = ("tools", "vision", "thinking", "embedding")


@dataclass(frozen=True)
class CatalogTag:
    tag: str
    #: Download bytes (every blob of the manifest).
    size: int


@dataclass(frozen=True)
class CatalogModel:
    name: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    context_length: int = 0
    default_tag: str = ""
    tags: tuple[CatalogTag, ...] = ()

    def pull_name(self, tag: str) -> str:
        return f"{self.name}:{tag}"

    def text_matches(self, words: Iterable[str]) -> bool:
        """Every word appears in the name, a tag, a capability or the description (case-insensitive)."""
        haystack = " ".join((self.name, self.description, *self.capabilities, *(t.tag for t in self.tags))).lower()
        return all(w in haystack for w in words)

    @classmethod
    def from_json(cls, obj: Any) -> CatalogModel:
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
            raise ValueError("an entry without a name")
        tags = tuple(
            CatalogTag(str(t["tag"]), int(t["size"]))
            for t in obj.get("tags") or ()
            if isinstance(t, dict) and isinstance(t.get("tag"), str) and isinstance(t.get("size"), int)
        )
        if not tags:
            raise ValueError(f"{obj['name']}: no tags with sizes")
        caps = obj.get("capabilities") or ()
        default = obj.get("default_tag")
        return cls(
            name=obj["name"],
            description=str(obj.get("description") or ""),
            capabilities=tuple(str(c) for c in caps) if isinstance(caps, list) else (),
            context_length=int(obj.get("context_length") or 0),
            default_tag=default if isinstance(default, str) and default in {t.tag for t in tags} else tags[0].tag,
            tags=tags,
        )


@dataclass(frozen=True)
class Catalog:
    models: tuple[CatalogModel, ...] = ()
    about: str = ""
    #: Where the numbers came from: "registry" (make_catalog.py read the manifests) or "knowledge".
    source: str = ""


def parse_catalog(text: str) -> Catalog:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ValueError("not a catalog: no 'models' list")
    models = []
    for entry in data["models"]:
        try:
            models.append(CatalogModel.from_json(entry))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("catalog entry skipped: %s", exc)
    return Catalog(tuple(models), str(data.get("about") or ""), str(data.get("source") or ""))


def load_catalog(path: Path | None = None) -> Catalog:
    """The shipped catalog (or `path`); an unreadable one is an empty catalog and a warning in the log."""
    path = path or resource_path("catalog.json")
    try:
        return parse_catalog(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("the model catalog %s cannot be read: %s", path, exc)
        return Catalog()


@dataclass(frozen=True)
class CatalogFilter:
    """What the person typed and ticked. `max_size` hides tags larger than it (None: every size)."""

    text: str = ""
    capabilities: frozenset[str] = field(default_factory=frozenset)
    max_size: int | None = None


@dataclass(frozen=True)
class CatalogRow:
    """A model that passed the filter, with the tags that did."""

    model: CatalogModel
    tags: tuple[CatalogTag, ...]


def filter_catalog(models: Iterable[CatalogModel], flt: CatalogFilter) -> list[CatalogRow]:
    words = flt.text.lower().split()
    rows = []
    for model in models:
        if words and not model.text_matches(words):
            continue
        if not flt.capabilities <= set(model.capabilities):
            continue
        tags = tuple(t for t in model.tags if flt.max_size is None or t.size <= flt.max_size)
        if tags:
            rows.append(CatalogRow(model, tags))
    return rows
