"""Regenerate `resources/catalog.json` (the Discover page's Ollama library list) from a registry's manifests.

    python packaging/make_catalog.py                          # registry.ollama.ai, sizes only
    python packaging/make_catalog.py --headers                # also each default tag's GGUF header
    python packaging/make_catalog.py --registry http://127.0.0.1:5000 --insecure --in my.json --out out.json

The curated part of the catalog (which models, which tags, their one-line
descriptions and capabilities) is written by people; the numbers are not. For
every model and tag of the input catalog this reads the tag's manifest and
writes its download size: every blob of the manifest once, config included,
which is what a pull fetches. With `--headers` it also reads the GGUF header
of each model's default tag through ranged requests (a few MB, pollama's own
`RangedBlob`) for the context length, and adds the capabilities the files
prove (`embedding` for a model with a pooling type, `vision` for one with a
projector layer). A tag the registry does not have is dropped with a warning;
a model left with no tag is dropped too.

It works against any OCI registry that serves models the way Ollama's does
(`--registry URL`), with pollama's registry client (proxies, credentials,
tokens), so it is tested against a loopback docker-registry. The catalog
shipped in the repository was written from knowledge of the library, without
a network (its `source` says "knowledge"); running this where the registry can
be reached replaces those rounded numbers with exact ones (`source: registry`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from server.errors import PollamaError  # noqa: E402
from server.registry import keys  # noqa: E402
from server.registry.auth import Authenticator  # noqa: E402
from server.registry.remote_model import fetch_manifest, inspect  # noqa: E402
from server.registry.settings import TransferSettings  # noqa: E402
from server.registry.transport import Repository, Transport  # noqa: E402
from server.store import manifest as mt  # noqa: E402
from server.store.manifest import Manifest  # noqa: E402
from server.store.names import Name  # noqa: E402

DEFAULT_REGISTRY = "https://registry.ollama.ai"
CATALOG = REPO / "resources" / "catalog.json"


@dataclass(frozen=True)
class Registry:
    scheme: str
    host: str

    @classmethod
    def parse(cls, url: str) -> Registry:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SystemExit(f"--registry: {url!r} is not an http(s) URL")
        return cls(parts.scheme, parts.netloc)

    def name(self, model: str, tag: str) -> Name:
        path = model if "/" in model else f"library/{model}"
        return Name.parse(f"{self.host}/{path}:{tag}")


def download_size(manifest: Manifest) -> int:
    """Every blob a pull fetches, each digest once (the same count as `/api/pollama/estimate`)."""
    seen: dict[str, int] = {}
    for layer in (*manifest.layers, manifest.config):
        seen.setdefault(layer.digest, layer.size)
    return sum(seen.values())


def make_transport() -> Transport:
    home = Path(os.environ.get("HOME") or Path.home())
    ollama_home = home / ".ollama"
    auth = Authenticator(home=home, environ=os.environ, key_source=lambda: keys.load(ollama_home))
    return Transport(TransferSettings(), auth, environ=os.environ)


def refresh(
    catalog: dict[str, Any], transport: Transport, registry: Registry, *, insecure: bool, headers: bool
) -> tuple[dict[str, Any], list[str]]:
    """The catalog with sizes (and, with `headers`, context lengths and proven capabilities) from the registry."""
    warnings: list[str] = []
    models = []
    for entry in catalog.get("models") or []:
        name = str(entry.get("name") or "")
        tags = []
        for tag in entry.get("tags") or []:
            ref = registry.name(name, str(tag["tag"]))
            try:
                repo = Repository.of(ref, insecure=insecure)
                manifest = fetch_manifest(transport, repo, ref)
            except PollamaError as exc:
                warnings.append(f"{name}:{tag['tag']}: {exc}; tag dropped")
                continue
            tags.append({"tag": str(tag["tag"]), "size": download_size(manifest)})
        if not tags:
            warnings.append(f"{name}: no tag left; model dropped")
            continue
        out = {**entry, "tags": tags}
        if out.get("default_tag") not in {t["tag"] for t in tags}:
            out["default_tag"] = tags[0]["tag"]
        if headers:
            out = _with_header(out, transport, registry, insecure, warnings)
        models.append(out)
    when = dt.date.today().isoformat()
    about = (
        "Curated Ollama library models for pollama's Discover page. Sizes are download bytes, read from "
        f"the manifests of {registry.scheme}://{registry.host} on {when} by packaging/make_catalog.py"
        + (", context lengths from the GGUF headers." if headers else ".")
    )
    return {
        **catalog,
        "about": about,
        "registry": f"{registry.scheme}://{registry.host}",
        "source": "registry",
        "models": models,
    }, warnings


def _with_header(
    entry: dict[str, Any], transport: Transport, registry: Registry, insecure: bool, warnings: list[str]
) -> dict[str, Any]:
    ref = registry.name(entry["name"], entry["default_tag"])
    try:
        remote = inspect(transport, ref, insecure=insecure)
    except PollamaError as exc:
        warnings.append(f"{ref.display}: header not read ({exc})")
        return entry
    caps = list(entry.get("capabilities") or [])
    proven = []
    if remote.info.is_embedding:
        proven.append("embedding")
    if remote.manifest.layers_of(mt.PROJECTOR):
        proven.append("vision")
    caps += [c for c in proven if c not in caps]
    context = remote.info.context_length
    return {**entry, "capabilities": caps, "context_length": int(context or entry.get("context_length") or 0)}


def render(catalog: dict[str, Any]) -> str:
    """The file as it is kept in the repository: one model a block, one tag a line (small diffs)."""
    head = {k: v for k, v in catalog.items() if k != "models"}
    lines = ["{"]
    for key, value in head.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines.append('  "models": [')
    for i, model in enumerate(catalog.get("models") or []):
        fields = [f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in model.items() if k != "tags"]
        tags = ",\n".join(f"      {json.dumps(t)}" for t in model.get("tags") or [])
        fields.append(f'    "tags": [\n{tags}\n    ]')
        lines.append("   {\n" + ",\n".join(fields) + "\n   }" + ("," if i < len(catalog["models"]) - 1 else ""))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default=DEFAULT_REGISTRY, help="registry base URL (default: %(default)s)")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP to the registry")
    parser.add_argument("--headers", action="store_true", help="also read each default tag's GGUF header")
    parser.add_argument("--in", dest="source", type=Path, default=CATALOG, help="the curated catalog to refresh")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the --in file)")
    args = parser.parse_args(argv)
    registry = Registry.parse(args.registry)
    insecure = args.insecure or registry.scheme == "http"
    catalog = json.loads(args.source.read_text(encoding="utf-8"))
    transport = make_transport()
    try:
        fresh, warnings = refresh(catalog, transport, registry, insecure=insecure, headers=args.headers)
    finally:
        transport.close()
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    out = args.out or args.source
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(fresh), encoding="utf-8")
    os.replace(tmp, out)
    n_tags = sum(len(m["tags"]) for m in fresh["models"])
    print(f"{out}: {len(fresh['models'])} models, {n_tags} tags from {registry.scheme}://{registry.host}")
    return 0 if fresh["models"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
