"""What a chat session with a model is, shared by `pollama run` and its REPL.

`RunOptions` is the session state that flags set and `/set` changes; the
functions here turn it into requests (`load_model`, `chat`), print a
response stream (`stream_to`), and attach image files named in a prompt
(`extract_images`). `app/commands/run.py` (one-shot runs) and `app/repl.py`
(the interactive loop) both build on it, so neither imports the other's
internals and the import graph has no cycle.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.client import Client, ClientError
from app.commands.render import ResponseWriter
from app.formatting import metrics_summary
from app.progress import Spinner

THINK_LEVELS = ("high", "medium", "low", "max")


@dataclass
class RunOptions:
    """The session state a `run` carries from flags into requests (and the REPL mutates)."""

    model: str
    prompt: str = ""
    parent_model: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    format: str = ""
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    multimodal: bool = False
    keep_alive: str | None = None
    think: bool | str | None = None
    think_explicit: bool = False
    hide_thinking: bool = False
    word_wrap: bool = True
    verbose: bool = False
    insecure: bool = False


def parse_think(value: str | None) -> bool | str | None:
    if value is None:
        return None
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    if value in THINK_LEVELS:
        return value
    raise ClientError(f'invalid value for --think: "{value}" (must be true, false, high, medium, low, or max)')


def load_model(client: Client, opts: RunOptions) -> None:
    """An empty generate loads the model (and checks think support) before the first prompt."""
    body: dict[str, Any] = {"model": opts.model}
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        body["think"] = opts.think
    spinner = Spinner().start()
    try:
        for _ in client.generate(body):
            pass
    finally:
        spinner.stop()


def chat(client: Client, opts: RunOptions) -> dict[str, Any] | None:
    """One REPL turn over `/api/chat`; the assistant message, or None if interrupted."""
    body: dict[str, Any] = {"model": opts.model, "messages": opts.messages}
    common_fields(body, opts)
    writer = ResponseWriter(word_wrap=opts.word_wrap, hide_thinking=opts.hide_thinking)
    latest = stream_to(writer, client.chat(body), opts, key="message")
    if latest is None:
        return None
    if opts.messages:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if opts.verbose:
        sys.stderr.write(metrics_summary(latest))
    role = ((latest.get("message") or {}).get("role")) or "assistant"
    return {"role": role, "content": writer.content}


def common_fields(body: dict[str, Any], opts: RunOptions) -> None:
    if opts.format:
        body["format"] = opts.format
    if opts.options:
        body["options"] = opts.options
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        body["think"] = opts.think


def stream_to(
    writer: ResponseWriter, events: Iterator[dict[str, Any]], opts: RunOptions, key: str | None
) -> dict[str, Any] | None:
    """Print a response stream; Ctrl+C stops it (closing the connection) and returns None."""
    spinner = Spinner().start()
    latest: dict[str, Any] = {}
    try:
        for event in events:
            latest = event
            part = (event.get(key) or {}) if key else event
            content = str(part.get("content" if key else "response") or "")
            thinking = str(part.get("thinking") or "")
            if content or not opts.hide_thinking:
                spinner.stop()
            writer.feed(
                content=content, thinking=thinking, tool_calls=part.get("tool_calls") or event.get("tool_calls")
            )
    except KeyboardInterrupt:
        spinner.stop()
        close = getattr(events, "close", None)
        if close:
            close()
        writer.finish_interrupted()
        return None
    finally:
        spinner.stop()
    return latest


IMAGE_PATH = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|webp)\b")
_UNESCAPE = [
    ("\\ ", " "),
    ("\\(", "("),
    ("\\)", ")"),
    ("\\[", "["),
    ("\\]", "]"),
    ("\\{", "{"),
    ("\\}", "}"),
    ("\\$", "$"),
    ("\\&", "&"),
    ("\\;", ";"),
    ("\\'", "'"),
    ("\\\\", "\\"),
    ("\\*", "*"),
    ("\\?", "?"),
    ("\\~", "~"),
    ("'\\''", "'"),
]
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


def extract_images(text: str) -> tuple[str, list[str]]:
    """Attach image files named in a prompt (vision models), as `ollama run` does.

    Paths that do not exist are left in the text; files that exist but are
    not JPEG/PNG/WebP are an error, so a typo does not silently drop an image.
    """
    images: list[str] = []
    for found in IMAGE_PATH.findall(text):
        path = found
        for old, new in _UNESCAPE:
            path = path.replace(old, new)
        p = Path(os.path.expanduser(path))
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ClientError(f"Couldn't process image: {exc}") from None
        if not (data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
            raise ClientError(f"invalid image type: {p}")
        if len(data) > 100 * 1024 * 1024:
            raise ClientError("file size exceeds maximum limit (100MB)")
        print(f"Added image '{path}'", file=sys.stderr)
        for variant in (f"'{path}'", f"'{found}'", found):
            text = text.replace(variant, "")
        images.append(base64.b64encode(data).decode("ascii"))
    return text.strip(), images


def names_a_file(line: str, first: str) -> bool:
    """Does `line` name an image file that starts with `first` (the REPL's slash-command check)?"""
    return any(found.startswith(first) for found in IMAGE_PATH.findall(line))
