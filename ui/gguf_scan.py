"""Where GGUF files already sit on this computer, and which of them can become models.

The first-run screen offers to import what other tools downloaded: the
Hugging Face cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
`~/.cache/huggingface/hub`: `models--<user>--<repo>/snapshots/<rev>/…gguf`,
symlinks into the cache's `blobs/`), LM Studio's model folders
(`~/.lmstudio/models`, `~/.cache/lm-studio/models`, `<publisher>/<repo>/…gguf`),
GPT4All's (its platformdirs data folder `nomic.ai/GPT4All`) and `~/Downloads`.
Each file's header is read (`ui/gguf_peek.py`) to show what it is and to set
aside what cannot be imported on its own, with the reason. The same file
reached twice (two snapshots of one blob) is listed once. No network, no
writes; the walk is bounded in depth, never follows directory symlinks, and
stops when asked (`cancelled`), so it can run off the GUI thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ui.gguf_peek import GgufSummary, NotAModel, peek, why_not_importable
from ui.model_names import propose


@dataclass(frozen=True)
class Source:
    label: str  # "Hugging Face cache", "LM Studio" …
    folder: Path
    depth: int  # how many folder levels below `folder` the walk goes
    kind: str  # "hf" (repository from `models--user--repo`), "lmstudio" (publisher/repo/file), "plain"


@dataclass(frozen=True)
class Found:
    path: Path  # as found (a snapshot link in the Hugging Face cache)
    real_path: Path  # what it resolves to: the bytes that are imported
    source: str
    size: int
    repo: str  # "user/repo" where the folder says, else ""
    summary: GgufSummary | None
    skip: str  # "" when importable, else why not
    proposed: str  # a valid model name

    @property
    def importable(self) -> bool:
        return not self.skip


def hf_cache(env: Mapping[str, str], home: Path) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    return home / ".cache" / "huggingface" / "hub"


def default_sources(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Source]:
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    return [
        Source("Hugging Face cache", hf_cache(env, home), 4, "hf"),
        Source("LM Studio", home / ".lmstudio" / "models", 3, "lmstudio"),
        Source("LM Studio", home / ".cache" / "lm-studio" / "models", 3, "lmstudio"),
        Source("GPT4All", Path(platformdirs.user_data_dir("GPT4All", "nomic.ai")), 1, "plain"),
        Source("Downloads", home / "Downloads", 2, "plain"),
    ]


def _gguf_files(folder: Path, depth: int, cancelled: Callable[[], bool]) -> Iterator[Path]:
    """`.gguf` files under `folder`, at most `depth` levels down; file symlinks count, folder symlinks are not entered."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if cancelled():
            return
        try:
            if entry.is_dir(follow_symlinks=False):
                if depth > 0 and not entry.name.startswith("."):
                    yield from _gguf_files(Path(entry.path), depth - 1, cancelled)
            elif entry.name.lower().endswith(".gguf") and entry.is_file():
                yield Path(entry.path)
        except OSError:
            continue


def repo_of(path: Path, source: Source) -> str:
    """`user/repo` from the folder layout: `models--user--repo/snapshots/<rev>/…` or LM Studio's `publisher/repo/…`."""
    try:
        rel = path.relative_to(source.folder).parts
    except ValueError:
        return ""
    if source.kind == "hf" and rel and rel[0].startswith("models--"):
        return "/".join(rel[0].split("--")[1:])
    if source.kind == "lmstudio" and len(rel) >= 3:
        return f"{rel[0]}/{rel[1]}"
    return ""


def describe(path: Path, source: str = "Dropped", repo: str = "") -> Found:
    """One file, read: what it is, whether it can be imported, and a name for it."""
    real = path.resolve()
    try:
        size = real.stat().st_size
    except OSError:
        size = 0
    summary: GgufSummary | None = None
    try:
        summary = peek(real)
        skip = why_not_importable(summary)
    except NotAModel as exc:
        skip = str(exc)
    proposed = propose(path.name, repo, summary.file_type if summary else "")
    return Found(path, real, source, size, repo, summary, skip, proposed)


def scan(
    sources: list[Source],
    *,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Found]:
    """Every `.gguf` under `sources`, read, in the order found; one entry per distinct file."""
    seen: set[Path] = set()
    found: list[Found] = []
    for source in sources:
        if not source.folder.is_dir():
            continue
        progress(f"Looking in {source.label} ({source.folder})…")
        for path in _gguf_files(source.folder, source.depth, cancelled):
            if cancelled():
                return found
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            progress(f"Reading {path.name}…")
            found.append(describe(path, source.label, repo_of(path, source)))
    return found
