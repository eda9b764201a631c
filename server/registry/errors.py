"""Registry failures, worded for a person and mapped to statuses once (server/errors.py).

Ollama reports pull and push failures with status 500 (`server/routes.go`
`PullHandler`, `PushHandler`) and fixed phrases some clients match on
(`file does not exist`, `unauthorized`, `digest mismatch, file must be
downloaded again`); those phrases are kept, and pollama adds what to do
about it. Two statuses differ, so that a 5xx always means something failed:
a registry that cannot be reached is 502 (the upstream failed), a model the
registry does not have is 404.
"""

from __future__ import annotations

from server.errors import PollamaError


class RegistryError(PollamaError):
    """Any failure talking to a registry."""


class Unauthorized(RegistryError):
    pass


class Unreachable(RegistryError):
    """The registry could not be reached or stopped answering (no network, DNS, refused, TLS, timeout).

    502 (Bad Gateway) wherever it reaches a client before a stream has started (pull, push,
    create from a model to pull, the estimate of a model not pulled): the registry the request
    depends on failed, not the request and not pollama, and a client can tell the two apart
    by the status. Ollama answers 500 here (`server/routes.go` `PullHandler`); the message
    is the same. `docs/openapi.yaml` documents it as the `RegistryUnreachable` response.
    """

    status = 502


class NotOnRegistry(RegistryError):
    """The registry has no such manifest (Ollama: `file does not exist`).

    404, not Ollama's 500 (`server/routes.go` `PullHandler` answers every pull failure so):
    the registry answered, and what was asked for is not there; nothing failed. The
    message is Ollama's, which clients match on. Found by the fuzz.
    """

    status = 404

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
