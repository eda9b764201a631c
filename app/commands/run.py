"""`run MODEL [PROMPT]`: one-shot generation, piped stdin, embeddings, or the interactive REPL.

The model is looked up first (`/api/show`), and pulled if the server does
not have it, exactly as `ollama run` does; the capabilities it reports
decide the rest: embedding models print a vector, thinking models think by
default, vision models take image paths inside the prompt.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.client import APIError, Client, ClientError
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


def parse_keep_alive(value: str | None) -> str | None:
    if not value:
        return None
    from server.duration import DurationError, parse_go_duration

    try:
        parse_go_duration(value)
    except DurationError as exc:
        raise ClientError(str(exc)) from None
    return value


def show_or_pull(client: Client, model: str, insecure: bool) -> dict[str, Any]:
    """`ollama run` on a missing model pulls it first, then carries on."""
    try:
        return client.show(model)
    except APIError as exc:
        if exc.status != 404:
            raise
    from app.commands.transfer import pull

    pull(client, model, insecure=insecure)
    return client.show(model)


def cmd_run(args: argparse.Namespace, client: Client) -> int:
    opts = RunOptions(
        model=args.model,
        format=args.format or "",
        keep_alive=parse_keep_alive(args.keepalive),
        think=parse_think(args.think),
        think_explicit=args.think is not None,
        hide_thinking=args.hidethinking,
        word_wrap=not args.nowordwrap,
        verbose=args.verbose,
        insecure=args.insecure,
    )
    prompts = list(args.prompt or [])
    interactive = True
    if not _isatty(sys.stdin):
        data = sys.stdin.read()
        if data:
            prompts.insert(0, data)
        interactive = False
    opts.prompt = " ".join(prompts)
    if prompts or not _isatty(sys.stdout):
        interactive = False

    info = show_or_pull(client, opts.model, opts.insecure)
    caps = list(info.get("capabilities") or [])
    if not opts.think_explicit and "thinking" in caps:
        opts.think = True
    opts.multimodal = "vision" in caps or "audio" in caps or bool(info.get("projector_info"))
    opts.parent_model = str((info.get("details") or {}).get("parent_model") or "")

    if "embedding" in caps:
        return embed(client, opts, truncate=args.truncate, dimensions=args.dimensions)

    if interactive:
        load_model(client, opts)
        for msg in info.get("messages") or []:
            if msg.get("role") == "user":
                print(f">>> {msg.get('content', '')}")
            elif msg.get("role") == "assistant":
                ResponseWriter(word_wrap=opts.word_wrap).feed(content=str(msg.get("content") or ""))
                print("\n")
        from app.repl import Repl

        return Repl(client, opts).run()
    return generate(client, opts)


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


def embed(client: Client, opts: RunOptions, *, truncate: bool | None, dimensions: int) -> int:
    if not opts.prompt:
        raise ClientError(f'embedding models require input text. Usage: pollama run {opts.model} "your text here"')
    body: dict[str, Any] = {"model": opts.model, "input": opts.prompt}
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if truncate is not None:
        body["truncate"] = truncate
    if dimensions and dimensions > 0:
        body["dimensions"] = dimensions
    resp = client.embed(body)
    vectors = resp.get("embeddings") or []
    if not vectors:
        raise ClientError("no embeddings returned")
    from app.formatting import float32_json

    print("[" + ",".join(float32_json(float(x)) for x in vectors[0]) + "]")
    return 0


def generate(client: Client, opts: RunOptions) -> int:
    """One-shot `/api/generate`, streamed to stdout."""
    body: dict[str, Any] = {"model": opts.model, "prompt": opts.prompt}
    if opts.multimodal:
        body["prompt"], images = extract_images(opts.prompt)
        if images:
            body["images"] = images
    _common_fields(body, opts)
    writer = ResponseWriter(word_wrap=opts.word_wrap, hide_thinking=opts.hide_thinking)
    latest = stream_to(writer, client.generate(body), opts, key=None)
    if latest is None:
        return 0
    if opts.prompt:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if latest.get("done") and opts.verbose:
        sys.stderr.write(metrics_summary(latest))
    return 0


def chat(client: Client, opts: RunOptions) -> dict[str, Any] | None:
    """One REPL turn over `/api/chat`; the assistant message, or None if interrupted."""
    body: dict[str, Any] = {"model": opts.model, "messages": opts.messages}
    _common_fields(body, opts)
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


def _common_fields(body: dict[str, Any], opts: RunOptions) -> None:
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


_IMAGE_PATH = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|webp)\b")
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
    for found in _IMAGE_PATH.findall(text):
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


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
