"""Progress display for pull, push and create: the server's NDJSON progress, shown to a person.

On a terminal (stdout and stderr both TTYs) it draws, on stderr as Ollama
does, one rich line per status and one bar per layer with size, speed and
ETA:

    pulling manifest
    pulling 8eeb52dfb3bb:  45% ▕████████        ▏ 909 MB/2.0 GB  25 MB/s  43s
    verifying sha256 digest

Otherwise (a pipe, a log file, a CI job) it prints plain lines, each status
once and each layer once when it completes, so logs stay short and greppable.
The display consumes the same events either way; only rendering differs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any, Protocol

from app.formatting import human_bytes


def fancy_output() -> bool:
    """Bars only when a person is watching both streams (the issue's 'plain when not a TTY')."""
    return _isatty(sys.stdout) and _isatty(sys.stderr)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Display(Protocol):
    def update(self, event: dict[str, Any]) -> None: ...
    def status(self, text: str) -> None: ...
    def stop(self, *, clear: bool = False) -> None: ...


def layer_label(event: dict[str, Any], verb: str) -> str:
    """`pulling 8eeb52dfb3bb` — the server's status, or one derived from the digest."""
    status = str(event.get("status") or "")
    if status:
        return status
    digest = str(event.get("digest") or "")
    return f"{verb} {digest[7:19]}..."


class PlainDisplay:
    """Line output for pipes and logs."""

    live = False

    def __init__(self, stream: IO[str] | None = None, verb: str = "pulling") -> None:
        self.stream = stream or sys.stderr
        self.verb = verb
        self.last_status = ""
        self.finished: set[str] = set()

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, event: dict[str, Any]) -> None:
        digest = event.get("digest")
        if digest:
            total = int(event.get("total") or 0)
            completed = int(event.get("completed") or 0)
            if digest not in self.finished and total and completed >= total:
                self.finished.add(digest)
                self._print(f"{layer_label(event, self.verb)}: 100% {human_bytes(total)}")
            return
        self.status(str(event.get("status") or ""))

    def status(self, text: str) -> None:
        if text and text != self.last_status:
            self.last_status = text
            self._print(text)

    def stop(self, *, clear: bool = False) -> None:
        pass


class RichDisplay:
    """rich.progress bars on stderr, one task per status line or layer."""

    live = True

    def __init__(self, verb: str = "pulling") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        cols = _columns()
        self.verb = verb
        self.console = Console(stderr=True, highlight=False)
        self.progress = Progress(
            cols.Spinner(SpinnerColumn(style="")),
            TextColumn("{task.description}", markup=False),
            cols.OnlyBars(TextColumn("{task.percentage:>3.0f}%")),
            cols.OnlyBars(
                BarColumn(bar_width=None, style="grey50", complete_style="default", finished_style="default")
            ),
            cols.Sizes(),
            cols.Speed(),
            cols.Eta(),
            console=self.console,
            transient=False,
            expand=True,
            refresh_per_second=10,
        )
        self.tasks: dict[str, Any] = {}
        self.status_task: Any = None
        self.last_status = ""
        self.progress.start()

    def update(self, event: dict[str, Any]) -> None:
        digest = event.get("digest")
        if digest:
            total = int(event.get("total") or 0)
            completed = int(event.get("completed") or 0)
            self._end_status()
            task = self.tasks.get(digest)
            if task is None:
                task = self.progress.add_task(
                    layer_label(event, self.verb) + ":", total=total or None, completed=completed, kind="bar"
                )
                self.tasks[digest] = task
            else:
                self.progress.update(task, total=total or None, completed=completed)
            return
        self.status(str(event.get("status") or ""))

    def status(self, text: str) -> None:
        if not text or text == self.last_status:
            return
        self._end_status()
        self.last_status = text
        self.status_task = self.progress.add_task(text, total=None, kind="status")

    def _end_status(self) -> None:
        if self.status_task is not None:
            self.progress.update(self.status_task, total=1, completed=1)
            self.status_task = None

    def stop(self, *, clear: bool = False) -> None:
        self._end_status()
        if clear:
            for task in list(self.progress.task_ids):
                self.progress.remove_task(task)
        self.progress.stop()


def _columns() -> Any:
    """rich columns that draw bars, sizes, speed and ETA only for layer tasks, Ollama-style."""
    from types import SimpleNamespace

    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    def is_bar(task: Task) -> bool:
        return task.fields.get("kind") == "bar"

    class OnlyBars(ProgressColumn):
        def __init__(self, inner: ProgressColumn) -> None:
            super().__init__()
            self.inner = inner

        def render(self, task: Task) -> Any:
            return self.inner.render(task) if is_bar(task) else Text("")

        def get_table_column(self) -> Any:
            return self.inner.get_table_column()

    class Spinner(ProgressColumn):
        """A spinner for a status still in progress; nothing once done or for bars."""

        def __init__(self, inner: ProgressColumn) -> None:
            super().__init__()
            self.inner = inner

        def render(self, task: Task) -> Any:
            if is_bar(task) or task.finished:
                return Text("")
            return self.inner.render(task)

    class Sizes(ProgressColumn):
        def render(self, task: Task) -> Text:
            if not is_bar(task) or not task.total:
                return Text("")
            if task.finished:
                return Text(human_bytes(task.total))
            return Text(f"{human_bytes(task.completed)}/{human_bytes(task.total)}")

    class Speed(ProgressColumn):
        def render(self, task: Task) -> Text:
            if not is_bar(task) or task.finished or not task.speed:
                return Text("")
            return Text(f"{human_bytes(task.speed)}/s")

    class Eta(ProgressColumn):
        def render(self, task: Task) -> Text:
            if not is_bar(task) or task.finished or task.time_remaining is None:
                return Text("")
            return Text(_eta(task.time_remaining))

    return SimpleNamespace(OnlyBars=OnlyBars, Spinner=Spinner, Sizes=Sizes, Speed=Speed, Eta=Eta)


def _eta(seconds: float) -> str:
    """Go's Duration rounded to the second (`43s`, `2m5s`, `1h2m0s`), as Ollama's bar shows it."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def make_display(verb: str = "pulling", fancy: bool | None = None) -> Display:
    if fancy is None:
        fancy = fancy_output()
    if fancy:
        return RichDisplay(verb)
    return PlainDisplay(verb=verb)


def consume(events: Iterable[dict[str, Any]], display: Display) -> dict[str, Any]:
    """Feed every event to the display; the last one is returned (normally `success`)."""
    last: dict[str, Any] = {}
    try:
        for event in events:
            display.update(event)
            last = event
    finally:
        display.stop()
    return last


class Spinner:
    """A transient spinner on stderr while waiting for the first token (TTY only)."""

    def __init__(self, text: str = "") -> None:
        self._status: Any = None
        self.text = text
        self.started = time.monotonic()

    def start(self) -> Spinner:
        if _isatty(sys.stderr):
            from rich.console import Console

            console = Console(stderr=True, highlight=False)
            self._status = console.status(self.text, spinner="dots")
            self._status.start()
        return self

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
