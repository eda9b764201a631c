"""Live Hugging Face search for GGUF repositories, off the UI thread, answered through Qt signals.

`huggingface_hub` is the Hub's own client: `HfApi.list_models(search=...,
filter="gguf")` is the search and `HfApi.list_repo_tree(recursive=True)` the
repository's files with their sizes. Its calls block (HTTP), so each one runs
on a thread pool and its answer comes back as a signal, delivered on the
thread that owns this object (the UI's), where widgets may be touched.

`HF_ENDPOINT` and `HF_TOKEN` are read when each call is made (not when the
library is imported, as its own defaults are), so a mirror, a private hub or
a token set after start-up is honoured; without `HF_TOKEN` the library's own
token file is used, as every Hugging Face tool does. The server's `hf.co/...`
pulls honour the same `HF_ENDPOINT`, so what this finds is what gets pulled.

Each answer carries the sequence number of its request, so a page that has
sent a newer search can drop an older answer that arrives late.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ui.gguf_files import RepoFile, RepoModels, group_gguf

log = logging.getLogger("pollama.ui.hf")

DEFAULT_LIMIT = 40


@dataclass(frozen=True)
class HfRepo:
    """One search hit."""

    id: str
    downloads: int = 0
    likes: int = 0
    updated: str = ""


@dataclass(frozen=True)
class HfSettings:
    endpoint: str | None
    token: str | None

    @classmethod
    def from_env(cls) -> HfSettings:
        return cls(os.environ.get("HF_ENDPOINT") or None, os.environ.get("HF_TOKEN") or None)


def _api(settings: HfSettings) -> Any:
    # Imported here, on the worker: the library takes a while to import and most starts never search.
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.endpoint, token=settings.token, library_name="pollama")


def search_repos(settings: HfSettings, query: str, limit: int = DEFAULT_LIMIT) -> list[HfRepo]:
    """GGUF repositories matching `query`, most downloaded first (blocking)."""
    found = _api(settings).list_models(search=query or None, filter="gguf", sort="downloads", limit=limit)
    return [
        HfRepo(
            m.id,
            int(m.downloads or 0),
            int(m.likes or 0),
            m.last_modified.date().isoformat() if m.last_modified else "",
        )
        for m in found
    ]


def repo_models(settings: HfSettings, repo_id: str) -> RepoModels:
    """The repository's GGUF models by quantization, with sizes (blocking)."""
    entries = _api(settings).list_repo_tree(repo_id, recursive=True)
    return group_gguf(RepoFile(e.path, int(e.size)) for e in entries if getattr(e, "size", None) is not None)


def describe(exc: BaseException, settings: HfSettings) -> str:
    """A failure in words: which hub, and what went wrong."""
    where = settings.endpoint or "huggingface.co"
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if "Connect" in name or "Timeout" in name:
        return f"cannot reach {where}: {text}"
    if "RepositoryNotFound" in name:
        return f"{where} has no such repository (or it is private and HF_TOKEN is not set)"
    return f"{where}: {text}"


class _Signals(QObject):
    done = Signal(int, object)
    failed = Signal(int, str)


class _Job(QRunnable):
    def __init__(self, seq: int, work: Callable[[], object], settings: HfSettings, signals: _Signals) -> None:
        super().__init__()
        self.seq, self.work, self.settings, self.signals = seq, work, settings, signals

    def run(self) -> None:
        try:
            result = self.work()
        except Exception as exc:  # a worker must answer whatever the library raises
            log.info("Hugging Face call failed: %r", exc)
            self.signals.failed.emit(self.seq, describe(exc, self.settings))
            return
        self.signals.done.emit(self.seq, result)


class HfSearch(QObject):
    """`search(query)` → `found(seq, query, [HfRepo])`; `files(repo)` → `listed(seq, repo, RepoModels)`."""

    found = Signal(int, str, object)
    listed = Signal(int, str, object)
    failed = Signal(int, str)  # seq, message

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self.pool = pool or QThreadPool.globalInstance()
        self._seq = 0
        # One signals object for every job, owned by this object's (the UI's) thread, connected to
        # bound methods: a worker's emit is queued to this thread, where the answer may touch widgets.
        self._signals = _Signals(self)
        self._signals.done.connect(self._done)
        self._signals.failed.connect(self._failed)
        self._pending: dict[int, tuple[str, str]] = {}  # seq → (kind, what)

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def search(self, query: str, limit: int = DEFAULT_LIMIT) -> int:
        settings = HfSettings.from_env()
        return self._start("search", query, lambda: search_repos(settings, query, limit), settings)

    def files(self, repo_id: str) -> int:
        settings = HfSettings.from_env()
        return self._start("files", repo_id, lambda: repo_models(settings, repo_id), settings)

    def _start(self, kind: str, what: str, work: Callable[[], object], settings: HfSettings) -> int:
        self._seq += 1
        self._pending[self._seq] = (kind, what)
        self.pool.start(_Job(self._seq, work, settings, self._signals))
        return self._seq

    def _done(self, seq: int, result: object) -> None:
        kind, what = self._pending.pop(seq, ("", ""))
        if kind == "search":
            self.found.emit(seq, what, result)
        elif kind == "files":
            self.listed.emit(seq, what, result)

    def _failed(self, seq: int, message: str) -> None:
        self._pending.pop(seq, None)
        self.failed.emit(seq, message)
