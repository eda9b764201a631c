"""Errors of the prompt layer, each carrying its HTTP status.

They subclass the project's vocabulary in `server/errors.py`, so the API layer
maps them without knowing this package: a template that does not parse is the
client's fault at create time (400), one that breaks while rendering is ours
(500), and a malformed tool in a request is a 400.
"""

from __future__ import annotations

from server.errors import BadRequest, TemplateError


class TemplateParseError(TemplateError):
    """The template text is not a valid Go template (create answers 400).

    `line`/`column` (1-based) and `position` (character offset) point at the
    place the parser gave up, when it said.
    """

    status = 400

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.position = position


class TemplateRenderError(TemplateError):
    """A valid template failed while executing (the request answers 500)."""

    status = 500


class InvalidTool(BadRequest):
    """A tool definition in a request that is not the shape Ollama decodes."""


class InvalidMessage(BadRequest):
    """A chat message that is not the shape Ollama decodes."""
