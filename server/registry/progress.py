"""Progress lines of pull and push, exactly as Ollama writes them (`server/images.go` `PullModel`, `PushModel`; `server/download.go` `blobDownload.Wait`).

The reporter is fed snapshots of how many bytes each blob has and answers
with the lines to send: only blobs whose numbers changed, so a client sees
one line per tick per moving layer, and `total`/`completed` are left out when
zero as Go's `omitempty` does.
"""

from __future__ import annotations

from typing import Any

Progress = dict[str, Any]


def short(digest: str) -> str:
    """The 12 hex digits Ollama shows for a blob (`sha256:` stripped)."""
    return digest.split(":", 1)[-1][:12]


def status(text: str) -> Progress:
    return {"status": text}


def layer_line(verb: str, digest: str, total: int, completed: int) -> Progress:
    line: Progress = {"status": f"{verb} {short(digest)}", "digest": digest}
    if total:
        line["total"] = total
    if completed:
        line["completed"] = completed
    return line


class Reporter:
    """Turns per-blob byte counts into the lines a client has not seen yet."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self._seen: dict[str, tuple[int, int]] = {}

    def update(self, digest: str, total: int, completed: int) -> Progress | None:
        completed = max(0, min(completed, total)) if total else completed
        if self._seen.get(digest) == (total, completed):
            return None
        self._seen[digest] = (total, completed)
        return layer_line(self.verb, digest, total, completed)
