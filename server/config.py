"""Every `OLLAMA_*` setting, parsed once into one typed object.

Precedence: environment variable > settings file (written by the desktop
settings window) > Ollama's default. Values are trimmed of spaces and
surrounding quotes as Ollama does. Unlike Ollama, which quietly falls back to
the default on a value it cannot parse, an invalid value stops start-up with a
message naming the variable: a typo in `OLLAMA_NUM_PARALLEL` should not be
discovered a week later as mysterious slowness.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from server.duration import DurationError, parse_env_duration
from server.netaddr import is_loopback_host

APP_NAME = "pollama"
DEFAULT_PORT = 11434

#: The variables a person can set, with the ones the settings file may carry.
ENV_VARS = (
    "OLLAMA_HOST",
    "OLLAMA_ORIGINS",
    # pollama's own: API keys, who may scrape /metrics, the log format (server/api/api_keys.py, server/metrics.py)
    "POLLAMA_API_KEYS",
    "POLLAMA_METRICS",
    "POLLAMA_LOG_FORMAT",
    "OLLAMA_MODELS",
    "OLLAMA_KEEP_ALIVE",
    "OLLAMA_LOAD_TIMEOUT",
    "OLLAMA_NUM_PARALLEL",
    "OLLAMA_MAX_LOADED_MODELS",
    "OLLAMA_MAX_QUEUE",
    "OLLAMA_CONTEXT_LENGTH",
    "OLLAMA_FLASH_ATTENTION",
    "OLLAMA_KV_CACHE_TYPE",
    "OLLAMA_GPU_OVERHEAD",
    "OLLAMA_SCHED_SPREAD",
    "OLLAMA_NOPRUNE",
    "OLLAMA_NOHISTORY",
    "OLLAMA_DEBUG",
    "OLLAMA_LLM_LIBRARY",
    "OLLAMA_REMOTES",
    "OLLAMA_NO_CLOUD",
    "OLLAMA_AUTH",
    "OLLAMA_GO_TEMPLATE",
    "OLLAMA_MAX_TRANSFER_STREAMS",
    "OLLAMA_EDITOR",
    "OLLAMA_DEBUG_LOG_REQUESTS",
    "POLLAMA_RPC_WORKERS",
    "POLLAMA_ALIGNED_CACHE",
    "POLLAMA_NO_REPACK",
)


class ConfigError(ValueError):
    """A setting that cannot be parsed; the message names the variable."""


@dataclass(frozen=True)
class HostAddress:
    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class Config:
    host: HostAddress = HostAddress("http", "127.0.0.1", DEFAULT_PORT)
    origins: tuple[str, ...] = ()
    #: Keys a request must present (`Authorization: Bearer` or `x-api-key`); empty = no check, as Ollama.
    #: Kept out of `repr` so a logged Config never shows them.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Whether `/metrics` also answers clients beyond loopback (loopback clients always get it).
    metrics: bool = False
    #: `text` (Ollama's key=value lines) or `json` (one object per line, for log shippers).
    log_format: str = "text"
    models: Path = field(default_factory=lambda: Path.home() / ".ollama" / "models")
    keep_alive: float = 300.0
    load_timeout: float = 300.0
    num_parallel: int = 1
    max_loaded_models: int = 0
    max_queue: int = 512
    context_length: int = 0
    #: None = automatic, as Ollama v0.33 (`llm/llama_server.go` `LlamaServerFlashAttention`)
    #: passes `--flash-attn auto` to llama.cpp unless the variable is set: llama.cpp then turns
    #: it on where every device of the model supports it (`llama_context` `resolve_fused_ops`).
    flash_attention: bool | None = None
    kv_cache_type: str = ""
    gpu_overhead: int = 0
    sched_spread: bool = False
    noprune: bool = False
    nohistory: bool = False
    debug: int = 0
    llm_library: str = ""
    remotes: tuple[str, ...] = ("ollama.com",)
    no_cloud: bool = False
    auth: bool = False
    go_template: bool = True
    max_transfer_streams: int = 4
    editor: str = ""
    debug_log_requests: bool = False
    #: pollama's own: llama.cpp RPC workers (`pollama worker`) whose devices runners add.
    rpc_workers: tuple[str, ...] = ()
    #: pollama's own: prompts in aligned chunks, whole chunks reused, so that greedy output does
    #: not depend on what was cached before (`server/runner/slots.py`); costs prefix reuse.
    aligned_cache: bool = False
    #: pollama's own: llama-server's --no-repack, CPU weights used as stored (see README).
    no_repack: bool = False
    #: pollama's own: largest JSON request body accepted (blob uploads are streamed, not limited).
    max_json_body: int = 64 * 1024 * 1024
    #: Where logs and resumable state live (platformdirs), not configurable by env.
    log_dir: Path = field(default_factory=lambda: Path(platformdirs.user_log_dir(APP_NAME)))
    state_dir: Path = field(default_factory=lambda: Path(platformdirs.user_state_dir(APP_NAME)))
    #: Which settings came from the environment (the settings window greys these out).
    from_env: frozenset[str] = frozenset()

    @property
    def ollama_home(self) -> Path:
        """`~/.ollama`, where the registry key pair lives."""
        return Path.home() / ".ollama"


def settings_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.json"


def load_settings_file(path: Path | None = None) -> dict[str, str]:
    """Read the settings file written by the desktop app; missing file = no settings."""
    path = path or settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"settings file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold a JSON object")
    return {k: str(v) for k, v in data.items() if k in ENV_VARS and v is not None}


def clean(value: str) -> str:
    """Trim spaces and one pair of surrounding quotes, as Ollama's envconfig does."""
    return value.strip().strip("'\"").strip()


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool; anything unparseable but non-empty counts as true (Ollama's rule)."""
    v = clean(value)
    if v in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return bool(v)


def parse_host(value: str) -> HostAddress:
    """OLLAMA_HOST rules: scheme optional; bare host → :11434; http → :80; https → :443."""
    s = clean(value)
    if not s:
        return HostAddress("http", "127.0.0.1", DEFAULT_PORT)
    default_port = DEFAULT_PORT
    if "://" in s:
        scheme, hostport = s.split("://", 1)
        scheme = scheme.lower()
        if scheme == "http":
            default_port = 80
        elif scheme == "https":
            default_port = 443
    elif s == "ollama.com":
        scheme, hostport, default_port = "https", "ollama.com:443", 443
    else:
        scheme, hostport = "http", s
    hostport = hostport.split("/", 1)[0]
    try:
        parts = urlsplit(f"//{hostport}")
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise ConfigError(f"OLLAMA_HOST: invalid address {value!r}: {exc}") from exc
    if host is None or host == "":
        host = "127.0.0.1" if hostport in ("", ":" + str(port)) or hostport.startswith(":") else hostport
    if port is None:
        port = default_port
    if not 0 <= port <= 65535:
        raise ConfigError(f"OLLAMA_HOST: port {port} is out of range")
    return HostAddress(scheme, host.strip("[]"), port)


def _int(name: str, minimum: int = 0) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(clean(value))
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a whole number") from None
        if n < minimum:
            raise ConfigError(f"{name}: must be at least {minimum}, got {n}")
        return n

    return parse


def _duration(name: str, nonpositive_is_forever: bool = False) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            seconds = parse_env_duration(clean(value))
        except DurationError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        if nonpositive_is_forever and seconds <= 0:
            return math.inf
        return seconds

    return parse


def _list(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in clean(value).split(",") if p.strip())


def _rpc_workers(value: str) -> tuple[str, ...]:
    from server.runner.rpc_endpoints import parse_workers

    try:
        return tuple(str(endpoint) for endpoint in parse_workers(clean(value)))
    except ValueError as exc:
        raise ConfigError(f"POLLAMA_RPC_WORKERS: {exc}") from None


def _debug_level(value: str) -> int:
    v = clean(value)
    if v.isdigit():
        return int(v)
    return 1 if parse_bool(v) else 0


def _kv_cache_type(value: str) -> str:
    v = clean(value).lower()
    if v not in ("", "f16", "q8_0", "q4_0"):
        raise ConfigError(f"OLLAMA_KV_CACHE_TYPE: {value!r} is not one of f16, q8_0, q4_0")
    return v


def parse_api_keys(value: str) -> tuple[str, ...]:
    """`POLLAMA_API_KEYS`: comma-separated keys, or the path of a file of keys.

    A value that starts like a path (`/`, `~`, `./`, `../`, `C:\\`) names a file: one key
    per line, blank lines and `#` comments ignored. A file that cannot be read stops
    start-up: a server meant to be locked must not start open. Messages never quote a key.
    """
    v = clean(value)
    if _looks_like_path(v):
        path = Path(v).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"POLLAMA_API_KEYS: cannot read the key file {path}: {reason}") from None
        keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        where = f"the key file {path}"
        if not keys:
            raise ConfigError(f"POLLAMA_API_KEYS: {where} holds no key")
    else:
        keys = [k.strip() for k in v.split(",") if k.strip()]
        where = "the value"
    for n, key in enumerate(keys, 1):
        if not all(33 <= ord(c) <= 126 for c in key):
            raise ConfigError(
                f"POLLAMA_API_KEYS: key {n} in {where} has a space or a character outside printable ASCII, "
                "which an Authorization header cannot carry"
            )
    return tuple(dict.fromkeys(keys))


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../", ".\\", "..\\")) or (
        len(value) > 2 and value[0].isalpha() and value[1] == ":" and value[2] in "/\\"
    )


def _log_format(value: str) -> str:
    v = clean(value).lower()
    if v not in ("text", "json"):
        raise ConfigError(f"POLLAMA_LOG_FORMAT: {value!r} is not one of text, json")
    return v


_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "OLLAMA_HOST": ("host", parse_host),
    "OLLAMA_ORIGINS": ("origins", _list),
    "POLLAMA_API_KEYS": ("api_keys", parse_api_keys),
    "POLLAMA_METRICS": ("metrics", parse_bool),
    "POLLAMA_LOG_FORMAT": ("log_format", _log_format),
    "OLLAMA_MODELS": ("models", lambda v: Path(clean(v)).expanduser()),
    "OLLAMA_KEEP_ALIVE": ("keep_alive", _duration("OLLAMA_KEEP_ALIVE")),
    "OLLAMA_LOAD_TIMEOUT": ("load_timeout", _duration("OLLAMA_LOAD_TIMEOUT", True)),
    "OLLAMA_NUM_PARALLEL": ("num_parallel", _int("OLLAMA_NUM_PARALLEL", 1)),
    "OLLAMA_MAX_LOADED_MODELS": ("max_loaded_models", _int("OLLAMA_MAX_LOADED_MODELS")),
    "OLLAMA_MAX_QUEUE": ("max_queue", _int("OLLAMA_MAX_QUEUE")),
    "OLLAMA_CONTEXT_LENGTH": ("context_length", _int("OLLAMA_CONTEXT_LENGTH")),
    "OLLAMA_FLASH_ATTENTION": ("flash_attention", parse_bool),
    "OLLAMA_KV_CACHE_TYPE": ("kv_cache_type", _kv_cache_type),
    "OLLAMA_GPU_OVERHEAD": ("gpu_overhead", _int("OLLAMA_GPU_OVERHEAD")),
    "OLLAMA_SCHED_SPREAD": ("sched_spread", parse_bool),
    "OLLAMA_NOPRUNE": ("noprune", parse_bool),
    "OLLAMA_NOHISTORY": ("nohistory", parse_bool),
    "OLLAMA_DEBUG": ("debug", _debug_level),
    "OLLAMA_LLM_LIBRARY": ("llm_library", clean),
    "OLLAMA_REMOTES": ("remotes", _list),
    "OLLAMA_NO_CLOUD": ("no_cloud", parse_bool),
    "OLLAMA_AUTH": ("auth", parse_bool),
    "OLLAMA_GO_TEMPLATE": ("go_template", parse_bool),
    "OLLAMA_MAX_TRANSFER_STREAMS": ("max_transfer_streams", _int("OLLAMA_MAX_TRANSFER_STREAMS", 1)),
    "OLLAMA_EDITOR": ("editor", clean),
    "OLLAMA_DEBUG_LOG_REQUESTS": ("debug_log_requests", parse_bool),
    "POLLAMA_RPC_WORKERS": ("rpc_workers", _rpc_workers),
    "POLLAMA_ALIGNED_CACHE": ("aligned_cache", parse_bool),
    "POLLAMA_NO_REPACK": ("no_repack", parse_bool),
}
assert set(_PARSERS) == set(ENV_VARS)
assert {f for f, _ in _PARSERS.values()} <= {f.name for f in fields(Config)}


def load_config(
    environ: Mapping[str, str] | None = None,
    settings: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config: env over settings file over default. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    settings = load_settings_file() if settings is None else settings
    values: dict[str, Any] = {}
    from_env: set[str] = set()
    for var, (attr, parse) in _PARSERS.items():
        raw = environ.get(var)
        if raw is not None and clean(raw) != "":
            from_env.add(var)
        else:
            raw = settings.get(var)
        if raw is None or clean(raw) == "":
            continue
        values[attr] = parse(raw)
    return Config(**values, from_env=frozenset(from_env))
