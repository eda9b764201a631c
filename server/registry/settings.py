"""Transfer settings: part sizing, parallelism, retries, stall detection.

Defaults are Ollama's (`server/download.go`: `numDownloadParts`, `minDownloadPartSize`, `maxRetries`). Each can be changed with a `POLLAMA_PULL_*`
variable, read once when the service is built:

| variable | default | meaning |
| --- | --- | --- |
| `POLLAMA_PULL_PART_SIZE` | computed | fixed part size in bytes (else total/64 clamped to 32 MB…1000 MB) |
| `POLLAMA_PULL_PARALLEL` | 16 | most connections for one blob (starts at 1, widens while each is slow) |
| `POLLAMA_PULL_STALL_TIMEOUT` | 30 | seconds without a byte before a request is restarted |
| `POLLAMA_PULL_RETRIES` | 6 | consecutive failed tries of one request before the pull fails |
| `POLLAMA_PULL_BACKOFF` | 1 | first retry delay in seconds (doubles each try) |
| `POLLAMA_PULL_CHECKPOINT` | 0.5 | seconds between persisted progress checkpoints |
| `POLLAMA_PULL_DIRECT_IO` | auto | 1: write blobs past the page cache (`O_DIRECT`, local disks on Linux); 0: never; auto: for a blob larger than half the available memory, and for every blob on a VM whose host reclaims free memory |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from server.config import ConfigError, parse_bool
from server.registry.parts import PartSizing, RetryPolicy


@dataclass(frozen=True)
class TransferSettings:
    sizing: PartSizing = field(default_factory=PartSizing)
    parallel: int = 16
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    checkpoint_interval: float = 0.5
    #: Bytes of one lane's copy buffer: filled from the response, then written out (`PartialFile.write_at`
    #: splits the write into smaller pieces).
    chunk_size: int = 1024 * 1024
    #: Seconds between progress lines (Ollama ticks every ~60 ms).
    tick: float = 0.06
    connect_timeout: float = 30.0
    #: Write whole aligned blocks of a download past the page cache where the OS allows (`partial.py`);
    #: None: only blobs too big to stay cached, or on a VM whose host reclaims memory (`direct_for`).
    direct_io: bool | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TransferSettings:
        def num(name: str, default: float, kind: type = float, minimum: float = 0) -> float:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}: {raw!r} is not a number") from None
            if value < minimum:
                raise ConfigError(f"{name}: must be at least {minimum}")
            return value

        def flag(name: str, default: bool | None) -> bool | None:
            raw = environ.get(name, "").strip()
            return default if not raw or raw.lower() == "auto" else parse_bool(raw)

        base = cls()
        sizing = PartSizing(fixed_size=int(num("POLLAMA_PULL_PART_SIZE", 0, int, 0)))
        retry = RetryPolicy(
            max_tries=int(num("POLLAMA_PULL_RETRIES", base.retry.max_tries, int, 1)),
            backoff_base=num("POLLAMA_PULL_BACKOFF", base.retry.backoff_base),
            stall_timeout=num("POLLAMA_PULL_STALL_TIMEOUT", base.retry.stall_timeout, float, 0.1),
        )
        return cls(
            sizing=sizing,
            parallel=int(num("POLLAMA_PULL_PARALLEL", base.parallel, int, 1)),
            retry=retry,
            checkpoint_interval=num("POLLAMA_PULL_CHECKPOINT", base.checkpoint_interval, float, 0.01),
            direct_io=flag("POLLAMA_PULL_DIRECT_IO", base.direct_io),
        )

    def direct_for(self, size: int, available_memory: Callable[[], int], host_reclaims: Callable[[], bool]) -> bool:
        """Whether a blob of `size` bytes is written past the page cache.

        Cached writes leave a freshly pulled model in memory, so the load
        that usually follows (`pollama run` pulls, then loads) reads no
        disk. Two kinds of blob go direct all the same:

        - one bigger than half the memory available, which would not stay
          cached anyway: writing it through the cache would only evict what
          the machine was using (a model being served included);
        - any blob on a VM whose host takes back free memory
          (`server.host_reclaim`): there each new page-cache page faults in
          the host on first touch, so cached writes ran at half curl's
          speed or less in `benchmarks/bench_pull.py`, and twice the CPU,
          while direct ones kept pace. The load after such a pull reads
          the file from disk into memory it would have had to touch anyway:
          measured with the 262 MB bench model, pull plus first load took
          the same 2.9-3.4 s either way.
        """
        if self.direct_io is not None:
            return self.direct_io
        return size > available_memory() // 2 or host_reclaims()
