"""`run MODEL [PROMPT]`: one-shot generation, piped stdin, embeddings, or the interactive REPL.

The model is looked up first (`/api/show`), and pulled if the server does
not have it, exactly as `ollama run` does; the capabilities it reports
decide the rest: embedding models print a vector, thinking models think by
default, vision models take image paths inside the prompt.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.client import APIError, Client, ClientError
from app.commands.render import ResponseWriter
from app.formatting import metrics_summary
from app.repl import Repl
from app.session import RunOptions, common_fields, extract_images, load_model, parse_think, stream_to


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
        return Repl(client, opts).run()
    return generate(client, opts)


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
    common_fields(body, opts)
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


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
