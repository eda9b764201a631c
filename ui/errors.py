"""Failures in words a person understands, and what to do about them.

The server's messages are written for programs and terminals (`pull model
manifest: file does not exist`); the windows show these translations inline.
The original text stays available for the logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ApiError:
    """A request that did not succeed: HTTP status (0 = no answer), server text, network error."""

    status: int
    message: str
    network: str = ""

    def __str__(self) -> str:
        return friendly(self)


_RULES: tuple[tuple[str, str], ...] = (
    (
        "file does not exist",
        "There is no model with that name on the registry. Check the spelling, or pick one from the suggestions.",
    ),
    ("invalid model name", "That is not a valid model name. Names look like “llama3.2” or “user/model:tag”."),
    ("digest mismatch", "The download was damaged on the way. Press Retry to download it again."),
    ("insecure protocol", "That registry only speaks plain HTTP. Pull from a registry that supports HTTPS."),
    ("certificate", "The registry's security certificate could not be verified."),
    ("no space left", "The disk holding your models is full. Free some space, then press Retry."),
    ("unauthorized", "The registry refused access. The model may be private."),
    ("access denied", "The registry refused access. The model may be private."),
    ("not found", "That model does not exist (any more). Refresh the list."),
    ("already exists", "A model with that name already exists."),
    ("does not support", "This model cannot do that: {message}."),
    ("server busy", "The server is busy with other requests. Try again in a moment."),
    ("neither 'from' or 'files'", "The Modelfile needs a FROM line naming a model or a .gguf file."),
)


_UNREACHABLE = re.compile(r"cannot reach ([\w.\-]+(?::\d+)?)")


def friendly(error: ApiError) -> str:
    if error.status == 0:
        if "cancel" in error.network.lower():
            return "Cancelled."
        return "Cannot reach the pollama server. It may still be starting, or it has stopped" + (
            f" ({error.network})." if error.network else "."
        )
    if (
        error.status == 404
        and not error.message.strip().startswith(("model", "blob", "pull"))
        and ("page not found" in error.message or not error.message)
    ):
        return "The server does not offer this yet (it may be an older version)."
    lowered = error.message.lower()
    unreachable = _UNREACHABLE.search(lowered)
    if unreachable:
        return f"Cannot reach {unreachable.group(1)}. Check the internet connection, then press Retry."
    for needle, text in _RULES:
        if needle in lowered:
            return text.format(message=error.message.rstrip("."))
    if error.status >= 500:
        return f"The server ran into a problem: {error.message or 'no details'}."
    message = error.message.strip() or f"HTTP {error.status}"
    return message[0].upper() + message[1:] + ("" if message.endswith(".") else ".")
