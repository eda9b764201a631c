"""`create MODEL -f Modelfile`: parse locally, upload local files as blobs, then the structured create.

The server no longer reads Modelfiles (`/api/create` takes the structured
form), so parsing, path resolution and blob upload happen here, with the
same parser the server uses to render Modelfiles (`server.store.modelfile`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from app.client import Client, ClientError, file_digest
from app.progress import Display, consume, make_display


def cmd_create(args: argparse.Namespace, client: Client) -> int:
    from server.errors import ModelfileError
    from server.store import modelfile as mf
    from server.store.names import Name

    if not Name.parse_lenient(args.model).is_valid:
        raise ClientError(f"invalid model name: {args.model}")

    text, base_dir = _read_modelfile(args.file)
    try:
        parsed = mf.parse(text)
        req = parsed.create_request(base_dir)
    except ModelfileError as exc:
        raise ClientError(exc.message) from None

    paths: dict[str, Path] = req.pop("_paths", {})
    adapter_paths: dict[str, Path] = req.pop("_adapter_paths", {})
    draft_paths: dict[str, Path] = req.pop("_draft_paths", {})
    body: dict[str, Any] = {"model": args.model, **req}
    if args.quantize:
        body["quantize"] = args.quantize

    display = make_display("pulling")
    try:
        display.status("gathering model components")
        if paths:
            body["files"] = _upload_all(client, paths, display)
        if adapter_paths:
            body["adapters"] = _upload_all(client, adapter_paths, display)
        if draft_paths:
            body["draft_files"] = _upload_all(client, draft_paths, display)
    except BaseException:
        display.stop()
        raise
    consume(client.create(body), display)
    return 0


def _read_modelfile(option: str | None) -> tuple[str, Path]:
    """The Modelfile text and the folder its relative paths start from.

    Like Ollama: `-f -` reads stdin; no `-f` and no `./Modelfile` means `FROM .`.
    """
    if option == "-":
        return sys.stdin.read(), Path.cwd()
    if option is None:
        path = Path("Modelfile").resolve()
        if not path.exists():
            return "FROM .\n", Path.cwd()
    else:
        path = Path(option).expanduser().resolve()
        if not path.exists():
            raise ClientError(f"specified Modelfile wasn't found: {option}")
        if path.is_dir():
            raise ClientError(f"{option} is a directory, not a Modelfile")
    try:
        return _decode(path.read_bytes()), path.parent
    except OSError as exc:
        raise ClientError(f"reading {option or 'Modelfile'}: {exc.strerror or exc}") from None


def _decode(data: bytes) -> str:
    from server.errors import ModelfileError
    from server.store.modelfile import decode

    try:
        return decode(data)
    except ModelfileError as exc:
        raise ClientError(exc.message) from None


def _upload_all(client: Client, paths: dict[str, Path], display: Display) -> dict[str, str]:
    """Hash and upload each file (`copying file sha256:… NN%`); returns name → digest."""
    out: dict[str, str] = {}
    for name, path in paths.items():
        real = Path(os.path.realpath(path))
        size = real.stat().st_size or 1
        digest = file_digest(real)
        last = [-1]

        def progress(sent: int, digest: str = digest, size: int = size, last: list[int] = last) -> None:
            pct = int(100 * sent / size)
            if pct < 100 and not getattr(display, "live", False):
                return  # logs get one line per file, not a hundred
            if pct != last[0]:
                last[0] = pct
                display.status(f"copying file {digest} {pct}%")

        progress(0)
        client.create_blob(real, digest, progress)
        progress(size)
        out[name] = digest
    return out
