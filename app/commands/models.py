"""`list`, `ps`, `show`, `rm`, `cp`, `stop`: model management, printed as Ollama prints it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.client import APIError, Client, ClientError
from app.formatting import (
    go_g,
    go_value,
    head_lines,
    human_bytes,
    human_number,
    human_time,
    processor,
    table,
    until,
)

SHOW_FLAGS = ("license", "modelfile", "parameters", "system", "template")


def cmd_list(args: argparse.Namespace, client: Client) -> int:
    prefix = (args.prefix or "").lower()
    rows = []
    for m in client.list():
        name = str(m.get("name") or m.get("model") or "")
        if prefix and not name.lower().startswith(prefix):
            continue
        size = "-" if m.get("remote_model") else human_bytes(int(m.get("size") or 0))
        rows.append([name, str(m.get("digest") or "")[:12], size, human_time(m.get("modified_at"), "Never")])
    sys.stdout.write(table(rows, ["NAME", "ID", "SIZE", "MODIFIED"]))
    return 0


def cmd_ps(args: argparse.Namespace, client: Client) -> int:
    prefix = getattr(args, "prefix", None) or ""
    rows = []
    for m in client.ps():
        name = str(m.get("name") or m.get("model") or "")
        if prefix and not str(m.get("model") or name).startswith(prefix):
            continue
        size = int(m.get("size") or 0)
        rows.append(
            [
                name,
                str(m.get("digest") or "")[:12],
                human_bytes(size),
                processor(size, int(m.get("size_vram") or 0)),
                str(int(m.get("context_length") or 0)),
                until(m.get("expires_at")),
            ]
        )
    sys.stdout.write(table(rows, ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]))
    return 0


def cmd_show(args: argparse.Namespace, client: Client) -> int:
    chosen = [flag for flag in SHOW_FLAGS if getattr(args, flag, False)]
    if len(chosen) > 1:
        raise ClientError(
            "only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified"
        )
    resp = client.show(args.model, verbose=args.verbose)
    if chosen:
        print(str(resp.get(chosen[0]) or ""))
        return 0
    sys.stdout.write(render_show(resp, verbose=args.verbose))
    return 0


def render_show(resp: dict[str, Any], *, verbose: bool = False) -> str:
    """The default `ollama show` view: titled sections of borderless tables."""
    out: list[str] = []

    def section(header: str, rows: list[list[str]]) -> None:
        out.append(f"  {header}\n")
        out.append(table(rows))
        out.append("\n")

    details = resp.get("details") or {}
    info = resp.get("model_info")
    rows: list[list[str]] = []
    if resp.get("remote_host"):
        rows.append(["", "Remote model", str(resp.get("remote_model") or "")])
        rows.append(["", "Remote URL", str(resp["remote_host"])])
    if info is not None:
        arch = info.get("general.architecture") if isinstance(info.get("general.architecture"), str) else ""
        if arch:
            rows.append(["", "architecture", arch])
        params = str(details.get("parameter_size") or "")
        if not params and isinstance(info.get("general.parameter_count"), (int, float)):
            params = human_number(info["general.parameter_count"])
        if params:
            rows.append(["", "parameters", params])
        for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
            value = info.get(f"{arch}.{key}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append(["", label, _format_float(value)])
    else:
        rows.append(["", "architecture", str(details.get("family") or "")])
        rows.append(["", "parameters", str(details.get("parameter_size") or "")])
    rows.append(["", "quantization", str(details.get("quantization_level") or "")])
    if resp.get("requires"):
        rows.append(["", "requires", str(resp["requires"])])
    section("Model", rows)

    caps = resp.get("capabilities") or []
    if caps:
        section("Capabilities", [["", str(c)] for c in caps])

    projector = resp.get("projector_info")
    if projector:
        prow: list[list[str]] = []
        parch = projector.get("general.architecture") if isinstance(projector.get("general.architecture"), str) else ""
        if parch:
            prow.append(["", "architecture", parch])
        if isinstance(projector.get("general.parameter_count"), (int, float)):
            prow.append(["", "parameters", human_number(projector["general.parameter_count"])])
        for suffix, label in (("embedding_length", "embedding length"), ("projection_dim", "dimensions")):
            for modality in ("vision", "audio"):
                value = projector.get(f"{parch}.{modality}.{suffix}")
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    prow.append(["", label, _format_float(value)])
                    break
        section("Projector", prow)

    parameters = str(resp.get("parameters") or "")
    if parameters:
        section("Parameters", [["", *line.split()] for line in parameters.splitlines() if line])

    if info is not None and verbose:
        section("Metadata", [["", key, _metadata_value(info[key])] for key in sorted(info)])

    tensors = resp.get("tensors") or []
    if tensors and verbose:
        section(
            "Tensors",
            [["", str(t.get("name")), str(t.get("type")), go_value(list(t.get("shape") or []))] for t in tensors],
        )

    if resp.get("system"):
        section("System", [["", line] for line in head_lines(str(resp["system"]), 2)])
    if resp.get("license"):
        section("License", [["", line] for line in head_lines(str(resp["license"]), 2)])
    return "".join(out)


def _format_float(value: float) -> str:
    """Go's strconv.FormatFloat(f, 'f', -1, 64): no exponent, shortest digits."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _metadata_value(value: Any) -> str:
    """`show -v` Metadata cells: Go `%t`/`%g`/`%v`, long arrays cut to about 10 columns."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return go_g(float(value))
    if isinstance(value, list):
        shown = 0
        width = 1
        for i, item in enumerate(value):
            w = len(go_value(item)) + (2 if i > 0 else 0)
            if width + w > 10 and i > 0:
                break
            width += w
            shown += 1
        if shown < len(value):
            return go_value(value[:shown])[:-1] + f" ...+{len(value) - shown} more]"
        return go_value(value)
    if isinstance(value, dict):
        return "map[string]interface {}"
    return str(value)


def unload(client: Client, model: str) -> None:
    """Ask the server to unload a model now (an empty generate with keep_alive 0)."""
    for _ in client.generate({"model": model, "keep_alive": 0}):
        pass


def cmd_stop(args: argparse.Namespace, client: Client) -> int:
    try:
        client.show(args.model)
        unload(client, args.model)
    except APIError as exc:
        if "not found" in exc.message:
            raise ClientError(f'couldn\'t find model "{args.model}" to stop') from None
        raise
    return 0


def cmd_rm(args: argparse.Namespace, client: Client) -> int:
    for name in args.models:
        try:
            client.show(name)
            unload(client, name)
        except APIError as exc:
            if "not found" not in exc.message.lower() and exc.status != 404:
                print(f"Warning: unable to stop model '{name}'", file=sys.stderr)
        client.delete(name)
        print(f"deleted '{name}'")
    return 0


def cmd_cp(args: argparse.Namespace, client: Client) -> int:
    client.copy(args.source, args.destination)
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0
