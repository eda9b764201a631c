"""Pulls not finished yet, remembered across restarts in the platformdirs state folder.

The server resumes the bytes (its partial files are checkpointed); the app
only has to remember *which* pulls to ask for again. A pull leaves this list
when it succeeds or the person cancels it, never because the app quit.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from server import atomicfile

APP_NAME = "pollama"


def default_path() -> Path:
    return Path(platformdirs.user_state_dir(APP_NAME)) / "pulls.json"


@dataclass(frozen=True)
class PendingPull:
    model: str
    insecure: bool = False
    started_at: str = ""


class PendingPulls:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    def items(self) -> list[PendingPull]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        out = []
        for entry in data.get("pulls", []) if isinstance(data, dict) else []:
            if isinstance(entry, dict) and isinstance(entry.get("model"), str) and entry["model"]:
                out.append(
                    PendingPull(entry["model"], bool(entry.get("insecure", False)), str(entry.get("started_at", "")))
                )
        return out

    def add(self, model: str, *, insecure: bool = False) -> None:
        entries = [p for p in self.items() if p.model != model]
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        entries.append(PendingPull(model, insecure, started))
        self._write(entries)

    def remove(self, model: str) -> None:
        entries = self.items()
        kept = [p for p in entries if p.model != model]
        if len(kept) != len(entries):
            self._write(kept)

    def _write(self, entries: list[PendingPull]) -> None:
        atomicfile.write_text(self.path, json.dumps({"pulls": [asdict(p) for p in entries]}, indent=2), mode=0o600)
