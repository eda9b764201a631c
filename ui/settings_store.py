"""The settings file the server reads: `<user config dir>/pollama/config.json`.

It holds `{"OLLAMA_*": "value"}` strings, exactly the environment variables
the server understands, so one file serves `pollama serve` and the tray alike.
The server gives environment variables precedence over this file; the window
needs to know which values the environment fixes, so that is answered here
too. The key names are repeated here on purpose: `ui/` speaks to the server
through HTTP and this file, never through `server/` imports.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

from server import atomicfile

APP_NAME = "pollama"

HOST = "OLLAMA_HOST"
MODELS = "OLLAMA_MODELS"
ORIGINS = "OLLAMA_ORIGINS"
KEEP_ALIVE = "OLLAMA_KEEP_ALIVE"
NUM_PARALLEL = "OLLAMA_NUM_PARALLEL"
MAX_LOADED_MODELS = "OLLAMA_MAX_LOADED_MODELS"
CONTEXT_LENGTH = "OLLAMA_CONTEXT_LENGTH"
#: pollama's own: keys a client must send (comma-separated, or the path of a file of keys).
API_KEYS = "POLLAMA_API_KEYS"
#: pollama's own: `pollama worker` machines (host:port, comma-separated) a model may be split across.
RPC_WORKERS = "POLLAMA_RPC_WORKERS"

#: The settings the window edits; each one changes how the server runs.
WINDOW_KEYS = (
    MODELS,
    HOST,
    ORIGINS,
    KEEP_ALIVE,
    NUM_PARALLEL,
    MAX_LOADED_MODELS,
    CONTEXT_LENGTH,
    API_KEYS,
    RPC_WORKERS,
)

DEFAULT_PORT = 11434


def config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.json"


def clean(value: str) -> str:
    """Trim spaces and one pair of quotes, as the server does before deciding a variable is set."""
    return value.strip().strip("'\"").strip()


class SettingsError(ValueError):
    """The settings file exists but cannot be read as settings."""


class SettingsStore:
    """Reads and atomically rewrites the settings file; keys it does not edit are kept."""

    def __init__(self, path: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.path = path or config_path()
        self._environ = environ

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{self.path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{self.path} must hold a JSON object")
        return {str(k): str(v) for k, v in data.items() if v is not None}

    def save(self, changes: Mapping[str, str | None]) -> dict[str, str]:
        """Apply changes (None or "" removes the key) and return the keys whose value changed."""
        current = self.load()
        updated = dict(current)
        for key, value in changes.items():
            if value is None or clean(value) == "":
                updated.pop(key, None)
            else:
                updated[key] = value
        changed = {k: updated.get(k, "") for k in set(current) | set(updated) if current.get(k) != updated.get(k)}
        if changed or not self.path.exists():
            self._write(updated)
        return changed

    def env_fixed(self) -> dict[str, str]:
        """Settings the environment sets; these win over the file, so the window greys them out."""
        return {k: v for k in WINDOW_KEYS if (v := self.environ.get(k)) is not None and clean(v) != ""}

    def effective(self) -> dict[str, str]:
        """What the server will use for each window key (env over file); missing = default."""
        return {**self.load(), **self.env_fixed()}

    def _write(self, values: Mapping[str, str]) -> None:
        atomicfile.write_text(self.path, json.dumps(dict(sorted(values.items())), indent=2) + "\n", mode=0o600)
