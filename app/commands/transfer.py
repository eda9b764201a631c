"""`pull` and `push`: stream the registry progress the server reports."""

from __future__ import annotations

import argparse

from app.client import APIError, Client, ClientError
from app.progress import consume, make_display


def pull(client: Client, model: str, *, insecure: bool = False) -> None:
    """Pull with progress; shared by `pull` and by `run` when the model is missing."""
    consume(client.pull(model, insecure=insecure), make_display("pulling"))


def cmd_pull(args: argparse.Namespace, client: Client) -> int:
    pull(client, args.model, insecure=args.insecure)
    return 0


def cmd_push(args: argparse.Namespace, client: Client) -> int:
    from server.store.names import Name

    name = Name.parse_lenient(args.model)
    try:
        consume(client.push(args.model, insecure=args.insecure), make_display("pushing"))
    except APIError as exc:
        text = exc.message.lower()
        if "access denied" in text or "unauthorized" in text:
            raise ClientError(
                "you are not authorized to push to this namespace, create the model under a namespace you own"
            ) from None
        raise
    host = name.host.lower()
    if host.endswith(".ollama.ai") or host.endswith(".ollama.com") or host in ("ollama.com", "registry.ollama.ai"):
        short = name.display.removesuffix(":latest")
        destination = f"https://ollama.com/{short}"
    else:
        destination = name.full
    print("\nYou can find your model at:\n")
    print(f"\t{destination}")
    return 0
