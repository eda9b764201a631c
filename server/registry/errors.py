"""Registry failures, worded for a person and mapped to statuses once (server/errors.py).

Ollama reports pull and push failures with status 500 (`server/routes.go` `PullHandler`, `PushHandler`) and fixed
phrases some clients match on (`file does not exist`, `unauthorized`,
`digest mismatch, file must be downloaded again`); those phrases are kept,
and pollama adds what to do about it.
"""

from __future__ import annotations

from server.errors import PollamaError


class RegistryError(PollamaError):
    """Any failure talking to a registry."""


class Unauthorized(RegistryError):
    pass


class Unreachable(RegistryError):
    """The registry could not be reached or stopped answering (no network, DNS, refused, TLS, timeout).

    A pull reports it as any registry failure (500, as Ollama); the estimate of a model
    not pulled answers 502, since the registry it depends on failed, not the request.
    """


class NotOnRegistry(RegistryError):
    """The registry has no such manifest (Ollama: `file does not exist`)."""

    def __init__(self) -> None:
        super().__init__("file does not exist")


class DigestMismatch(RegistryError):
    def __init__(self, want: str, got: str) -> None:
        super().__init__(f"digest mismatch, file must be downloaded again: want {want}, got {got}")


class TransferFailed(RegistryError):
    """A part could not be fetched after every retry."""


class PartUnusable(RegistryError):
    """A response the part cannot use (wrong range, bad status): retried, then fatal."""


class Permanent(RegistryError):
    """A failure that retrying cannot fix (no space left, a 404): the download stops at once."""


class DiskRefused(Permanent):
    """The disk did not take a download's data (full, or a sync failed): that blob's partial download is dropped.

    Its bytes are what filled the disk, and what a failed sync leaves is not
    known to be on it; keeping the file would keep the disk full for a resume
    that must start over anyway once space is freed.
    """


class Cancelled(Exception):
    """The download was called off (every waiting pull went away); not a failure to report."""
