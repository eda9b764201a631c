"""A model on a registry, looked at without pulling it: its manifest, its params and its GGUF header.

`/api/pollama/estimate` answers "will it fit?" for a model that is not here
yet. What the estimate needs is small: the manifest (layer sizes), the params
layer (a `num_ctx` the model sets), and the metadata at the front of the
weights file (`RangedBlob` reads it with ranged requests, a few MB of a file
of many GB). The same registry client as a pull is used (its transport,
credentials and `HF_ENDPOINT` map), so what can be pulled can be looked at,
on the Ollama registry, any OCI registry and hf.co alike.

Errors say what is wrong in words: a model the registry does not have is a
404 naming it; a manifest without a weights layer, or weights that are not
GGUF, a 400 saying so; an unreachable registry the transport's own message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from server.errors import BadRequest, ModelNotFound
from server.registry.endpoints import Endpoints
from server.registry.errors import NotOnRegistry, RegistryError
from server.registry.pull import ACCEPT_HEADER, parse_manifest
from server.registry.ranged_source import RangedBlob
from server.registry.transport import Repository, Transport, check_status
from server.store import manifest as mt
from server.store.gguf_header import read_header
from server.store.gguf_info import GGUFInfo, info_from_header
from server.store.manifest import Layer, Manifest
from server.store.names import Name

#: A params layer is a small JSON object of options; anything bigger is not one.
MAX_PARAMS_BYTES = 64 * 1024
#: How much the header parser asks for at a time; `RangedBlob` reads ahead on its own.
PARSE_CHUNK = 16 * 1024


@dataclass(frozen=True)
class RemoteModel:
    name: Name
    manifest: Manifest
    info: GGUFInfo
    #: The params layer's options (`{}` without one), as a pulled model's `Model.parameters`.
    parameters: dict[str, Any] = field(default_factory=dict)
    #: Bytes fetched to read the weights' header.
    header_bytes: int = 0

    @property
    def model_layer(self) -> Layer:
        return self.manifest.layers_of(mt.MODEL)[0]

    @property
    def projector_sizes(self) -> tuple[int, ...]:
        return tuple(layer.size for layer in self.manifest.layers_of(mt.PROJECTOR))

    @property
    def adapter_sizes(self) -> tuple[int, ...]:
        return tuple(layer.size for layer in self.manifest.layers_of(mt.ADAPTER))

    @property
    def file_sizes(self) -> int:
        """What the local estimate counts as weights: model, projectors and adapters on disk."""
        return self.model_layer.size + sum(self.projector_sizes) + sum(self.adapter_sizes)

    @property
    def download_size(self) -> int:
        """Every blob a pull would fetch (each digest once), config included."""
        seen: dict[str, int] = {}
        for layer in (*self.manifest.layers, self.manifest.config):
            seen.setdefault(layer.digest, layer.size)
        return sum(seen.values())


def inspect(
    transport: Transport, name: Name, *, insecure: bool = False, endpoints: Endpoints | None = None
) -> RemoteModel:
    """Read `name`'s manifest, params and GGUF header from its registry (blocking: call on a worker thread)."""
    repo = Repository.of(name, insecure=insecure, endpoints=endpoints)
    manifest = fetch_manifest(transport, repo, name)
    models = manifest.layers_of(mt.MODEL)
    if not models:
        kinds = ", ".join(sorted({layer.media_type.removeprefix(mt.MEDIA_PREFIX) for layer in manifest.layers}))
        raise BadRequest(
            f"'{name.display}' on {repo.host} has no model layer (its layers: {kinds or 'none'}); "
            "it is not a GGUF model pollama can run"
        )
    weights = models[0]
    source = RangedBlob(transport, repo, weights.digest, weights.size)
    header = read_header(source, name=f"the model layer of '{name.display}'", chunk=PARSE_CHUNK)
    return RemoteModel(
        name=name,
        manifest=manifest,
        info=info_from_header(header),
        parameters=_parameters(transport, repo, manifest),
        header_bytes=source.bytes_fetched,
    )


def fetch_manifest(transport: Transport, repo: Repository, name: Name) -> Manifest:
    """`name`'s manifest from `repo`; a 404 is `ModelNotFound` naming the model and the registry."""
    try:
        response = transport.request(
            "GET", repo.manifest_url(name.tag), headers={"Accept": ACCEPT_HEADER}, follow_redirects=True
        )
        check_status(response)
    except NotOnRegistry:
        raise ModelNotFound(f"model '{name.display}' not found on {repo.host}") from None
    try:
        return parse_manifest(response.content, response.headers.get("content-type"))
    except RegistryError as exc:
        raise RegistryError(f"{name.display}: {str(exc).removeprefix('pull model manifest: ')}") from None


def _parameters(transport: Transport, repo: Repository, manifest: Manifest) -> dict[str, Any]:
    """The last params layer's JSON object; a missing, oversized or broken one counts as none (as locally)."""
    layers = manifest.layers_of(mt.PARAMS)
    if not layers or layers[-1].size > MAX_PARAMS_BYTES:
        return {}
    try:
        response = transport.request("GET", repo.blob_url(layers[-1].digest), follow_redirects=True)
        check_status(response)
        data = json.loads(response.content)
    except (RegistryError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
