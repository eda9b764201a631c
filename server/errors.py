"""The one place where failures get their HTTP status.

Services raise these; `server/api` turns them into each API's error shape.
Keeping the status on the class means a service never thinks about HTTP, and
a handler never guesses a status from a message.
"""

from __future__ import annotations


class PollamaError(Exception):
    """Base class: a failure with a message meant for a person."""

    status: int = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class BadRequest(PollamaError):
    status = 400


class NotFound(PollamaError):
    status = 404


class RequestCanceled(PollamaError):
    status = 499


class ServerBusy(PollamaError):
    status = 503


class InvalidModelName(BadRequest):
    def __init__(self, message: str = "invalid model name") -> None:
        super().__init__(message)


class ModelNotFound(NotFound):
    """A name with no manifest. The message differs per endpoint, so it is passed in."""


class TemplateError(PollamaError):
    """A template that does not parse (400 at create) or fails while rendering (500)."""


class ModelfileError(BadRequest):
    """A Modelfile that does not parse; the message names the line."""


class RunnerError(PollamaError):
    """A runner process failed: it crashed, could not load, or broke the protocol."""


class StorageError(PollamaError):
    """The disk said no (full, read-only, permissions); nothing was half-written."""
