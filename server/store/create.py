"""`/api/create`: build a model from uploaded GGUF blobs or from another model.

Everything that can be checked is checked before the first byte is written
(name, file paths, digests, GGUF validity, template syntax, parameter types,
quantization type and source type), so a bad request leaves the store as it was.
So is the disk's free space, against all that the create will write (the
quantized output, text layers, config, manifest); a create that fails even
so (another program filled the disk) takes back the blobs it wrote.
Quantizing runs in a child process (`server.store.quantize`). The new manifest
is written last; until then, the blobs this create relies on are pinned
against collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import BadRequest, InvalidModelName, NotFound, TemplateError
from server.options import coerce_options
from server.store import manifest as mt
from server.store.blobs import parse_digest, sha256_digest
from server.store.diskspace import disk_space, require
from server.store.draft_vocabulary import check_draft_vocabulary
from server.store.gguf_info import GGUFInfo, InvalidGGUF, check_magic, human_parameter_count, read_gguf
from server.store.legacy_modelfile import legacy_fields
from server.store.manifest import Layer, Manifest
from server.store.names import Name
from server.store.quantize import (
    SOURCE_ERROR,
    Quantized,
    check_source,
    expected_size,
    parse_quant_type,
    quantize_blob,
)
from server.store.store import Model, Store

Progress = dict[str, Any]
#: Pulls a missing `from` model; yields progress. Provided by the registry service.
PullHook = Callable[[Name], AsyncIterator[Progress]]


@dataclass
class CreateRequest:
    name: Name
    from_: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    #: The draft model for speculative decoding (Modelfile `DRAFT`), as Ollama's `CreateRequest.DraftFiles`.
    draft_files: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    licenses: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None
    #: Canonical upper-case type (`Q4_K_M`), validated by `parse_quant_type`.
    quantize: str | None = None


def _str_or_none(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def _digest_map(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be an object of file name to digest")
    out: dict[str, str] = {}
    for path, digest in value.items():
        if not isinstance(digest, str) or not digest:
            raise BadRequest("invalid digest format")
        clean = posixpath.normpath(path.replace("\\", "/"))
        if path.startswith(("/", "\\")) or clean.startswith("..") or clean != path.replace("\\", "/") or ":" in path:
            raise BadRequest("file path must be relative")
        out[path] = parse_digest(digest)
    return out


def parse_create_request(body: dict[str, Any]) -> CreateRequest:
    """Validate a create body (structured form, or the older `modelfile` text).

    Nothing here, nor later in `create_model`, opens a path named by the request: model files
    are blobs uploaded beforehand (`files`, `adapters`, or `@sha256:` in the old text).
    """
    raw_name = body.get("model") or body.get("name")
    if not isinstance(raw_name, str) or not raw_name:
        raise InvalidModelName()
    name = Name.parse(raw_name)
    req = CreateRequest(name=name)
    modelfile = body.get("modelfile")
    if isinstance(modelfile, str) and modelfile and not body.get("files") and not body.get("from"):
        body = {**legacy_fields(modelfile), **{k: v for k, v in body.items() if k not in ("modelfile", "path")}}
    req.from_ = _str_or_none(body, "from")
    req.files = _digest_map(body.get("files"), "files")
    req.adapters = _digest_map(body.get("adapters"), "adapters")
    req.draft_files = _digest_map(body.get("draft_files"), "draft_files")
    for key in ("template", "system", "renderer", "parser", "requires"):
        setattr(req, key, _str_or_none(body, key))
    quantize = _str_or_none(body, "quantize") or _str_or_none(body, "quantization")
    req.quantize = parse_quant_type(quantize) if quantize else None
    lic = body.get("license")
    if isinstance(lic, str):
        req.licenses = [lic]
    elif isinstance(lic, list) and all(isinstance(x, str) for x in lic):
        req.licenses = list(lic)
    elif lic is not None:
        raise BadRequest("license must be a string or a list of strings")
    req.parameters = coerce_options(body.get("parameters"), BadRequest)
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content", ""), str)
            for m in messages
        ):
            raise BadRequest("messages must be a list of {role, content} objects")
        req.messages = [{"role": m["role"], "content": m.get("content", "")} for m in messages]
    if req.template is not None:
        _check_template(req.template)
    if len(req.adapters) > 1:
        raise BadRequest("only one adapter is currently supported")
    if _str_or_none(body, "draft_quantize"):
        # Ollama's `CreateHandler` wording when there is no draft; pollama does not quantize drafts
        # yet, and an accepted option that did nothing would be a lie.
        if not req.draft_files:
            raise BadRequest("--draft-quantize requires a DRAFT model")
        raise BadRequest("draft_quantize is not supported: quantize the draft GGUF before creating the model")
    if len(req.draft_files) > 1:
        raise BadRequest("only one draft model file is supported (a single GGUF)")
    if not req.from_ and not req.files:
        raise BadRequest("neither 'from' or 'files' was specified")
    return req


def _check_template(text: str) -> None:
    from server.prompt import ChatTemplate

    try:
        ChatTemplate.parse(text)
    except TemplateError as exc:
        raise BadRequest(f"template error: {exc.message}") from None


def model_config(
    info: GGUFInfo | None,
    *,
    base: dict[str, Any] | None,
    req: CreateRequest,
    projector_archs: list[str],
    draft: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config blob, in Ollama's field order (`types/model/config.go` `ConfigV2`)."""
    base = base or {}
    cfg: dict[str, Any] = {
        "model_format": base.get("model_format", "gguf"),
        "model_family": base.get("model_family", ""),
        "model_families": base.get("model_families"),
        "model_type": base.get("model_type", ""),
        "file_type": base.get("file_type", ""),
    }
    if info is not None:
        families = [info.architecture, *[a for a in projector_archs if a != info.architecture]]
        cfg.update(
            model_format="gguf",
            model_family=info.architecture,
            model_families=families,
            model_type=human_parameter_count(info.parameter_count),
            file_type=info.file_type,
        )
    for key in ("renderer", "parser", "requires"):
        value = getattr(req, key) or base.get(key)
        if value:
            cfg[key] = value
    ctx = info.context_length if info else base.get("context_length")
    embd = info.embedding_length if info else base.get("embedding_length")
    if ctx:
        cfg["context_length"] = int(ctx)
    if embd:
        cfg["embedding_length"] = int(embd)
    if draft:
        cfg["draft"] = draft  # Ollama's `model.Draft`: the draft GGUF's format and architecture
    cfg["architecture"] = "amd64"
    cfg["os"] = "linux"
    cfg["rootfs"] = {"type": "layers", "diff_ids": []}
    return cfg


async def create_model(store: Store, req: CreateRequest, *, pull: PullHook | None = None) -> AsyncIterator[Progress]:
    """Create (or replace) `req.name`, yielding Ollama's progress objects."""
    name = store.resolve(req.name)
    layers: list[Layer] = []
    base_config: dict[str, Any] | None = None
    base_params: dict[str, Any] = {}
    model_info: GGUFInfo | None = None
    projector_archs: list[str] = []
    draft_arch: str | None = None
    detected_template: tuple[str, dict[str, Any]] | None = None
    #: Blobs this request itself wrote (quantized output, text layers): "creating new layer".
    fresh: set[str] = set()

    if req.from_ and not req.files:
        base_name = Name.parse_lenient(req.from_)
        if not base_name.is_valid:
            raise BadRequest(
                f"invalid model name {req.from_!r} in from; the server does not read files from its disk: "
                "upload a model file with POST /api/blobs/<digest> and name it in 'files'"
            )
        base = store.get(base_name)
        if base is None:
            if pull is None:
                raise NotFound(f"model '{base_name.display}' not found")
            async for progress in pull(base_name):
                yield progress
            base = store.require(base_name)
        base_config = dict(base.config)
        base_params = dict(base.parameters)
        for layer in base.manifest.layers:
            if layer.media_type == mt.PARAMS:
                continue
            from_ = layer.from_ or (
                base.name.display if layer.media_type in (mt.MODEL, mt.PROJECTOR, mt.ADAPTER, mt.DRAFT) else None
            )
            layers.append(Layer(layer.media_type, layer.digest, layer.size, from_, layer.name))
        model_info = await asyncio.to_thread(_safe_gguf, base)

    try:
        with store.pinned(layer.digest for layer in layers) as pins:
            for filename, digest in {**req.files, **req.adapters, **req.draft_files}.items():
                pins.add(digest)
                if not store.blobs.exists(digest):
                    raise BadRequest(
                        f"blob {digest} for {filename} not found; upload it with POST /api/blobs/{digest} first"
                    )

            if req.files:
                yield {"status": "parsing GGUF"}
                model_layers: list[Layer] = []
                for filename, digest in req.files.items():
                    path = store.blobs.path(digest)
                    if not (filename.lower().endswith(".gguf") or check_magic(path)):
                        raise BadRequest(f"{filename}: unsupported file type; pollama imports GGUF files")
                    info = await asyncio.to_thread(_read_named, path, filename)
                    size = path.stat().st_size
                    if info.is_projector:
                        projector_archs.append(info.architecture)
                        layers.append(Layer(mt.PROJECTOR, digest, size))
                    elif info.is_adapter:
                        layers.append(Layer(mt.ADAPTER, digest, size))
                    else:
                        if model_info is not None and model_layers:
                            raise BadRequest("more than one model GGUF given in files")
                        model_info = info
                        model_layers.append(Layer(mt.MODEL, digest, size))
                if not model_layers:
                    raise BadRequest("no model GGUF in files (only projectors or adapters)")
                layers = [layer for layer in layers if layer.media_type != mt.MODEL]
                layers = model_layers + layers
                if model_info and model_info.chat_template and req.template is None:
                    detected_template = _detect_template(model_info.chat_template)

            for filename, digest in req.adapters.items():
                path = store.blobs.path(digest)
                await asyncio.to_thread(_read_named, path, filename)
                layers = [layer for layer in layers if layer.media_type != mt.ADAPTER]
                layers.append(Layer(mt.ADAPTER, digest, path.stat().st_size))

            for filename, digest in req.draft_files.items():
                path = store.blobs.path(digest)
                if not (filename.lower().endswith(".gguf") or check_magic(path)):
                    raise BadRequest(f"{filename}: unsupported draft file type; pollama drafts with GGUF models")
                draft_info = await asyncio.to_thread(_read_named, path, filename)
                if draft_info.is_projector or draft_info.is_adapter or draft_info.is_embedding:
                    raise BadRequest(f"{filename}: a draft model must be a text-generation GGUF")
                draft_arch = draft_info.architecture
                layers = [layer for layer in layers if layer.media_type != mt.DRAFT]
                layers.append(Layer(mt.DRAFT, digest, path.stat().st_size))

            draft_layer = next((layer for layer in layers if layer.media_type == mt.DRAFT), None)
            if draft_layer is not None and (req.draft_files or req.files):
                target = next((layer for layer in layers if layer.media_type == mt.MODEL), None)
                if target is None:
                    raise BadRequest("a draft model needs a model to draft for")
                await asyncio.to_thread(
                    check_draft_vocabulary,
                    store.blobs.path(target.digest),
                    store.blobs.path(draft_layer.digest),
                    draft_name=next(iter(req.draft_files), "the draft model"),
                )

            source: Layer | None = None
            if req.quantize:
                # Checked before anything is written; Ollama skips a quantize to the type the model has.
                source = next((layer for layer in layers if layer.media_type == mt.MODEL), None)
                if source is None or model_info is None:
                    raise BadRequest(SOURCE_ERROR)
                check_source(model_info.file_type)
                if model_info.file_type == req.quantize:
                    source = None

            template = req.template
            params = dict(base_params)
            if detected_template is not None:
                template = template if template is not None else _bundled_text(detected_template[0])
                params = {**detected_template[1], **params}
            params.update(req.parameters)
            texts = _texts(req, template, params)
            _check_space(store, name, layers, texts, source, model_info, req.quantize)

            if source is not None and model_info is not None and req.quantize:
                result: Quantized | None = None
                events = quantize_blob(
                    store.blobs, store.blobs.path(source.digest), model_info.file_type, req.quantize, pin=pins.add
                )
                async with contextlib.aclosing(events):
                    async for event in events:
                        if isinstance(event, Quantized):
                            result = event
                        else:
                            yield event
                assert result is not None
                if result.created:
                    fresh.add(result.digest)
                model_info = result.info
                layers = [Layer(mt.MODEL, result.digest, result.size) if layer is source else layer for layer in layers]

            if detected_template is not None:
                yield {"status": f"using autodetected template {detected_template[0]}"}

            def text_layer(text: _Text) -> Layer:
                digest = sha256_digest(text.data)
                pins.add(digest)  # pin first: a concurrent delete may be collecting it
                if not store.blobs.exists(digest):
                    fresh.add(digest)
                return Layer(text.media_type, store.blobs.write_bytes(text.data), len(text.data))

            def replace(media_types: tuple[str, ...], new: Layer | None) -> None:
                nonlocal layers
                layers = [layer for layer in layers if layer.media_type not in media_types]
                if new is not None:
                    layers.append(new)

            for text in texts:
                replace(text.replaces, text_layer(text))
            if not params:
                replace((mt.PARAMS,), None)

            draft_cfg: dict[str, Any] | None = None
            if draft_arch is not None:
                draft_cfg = {"model_format": "gguf", "architecture": draft_arch}
            elif draft_layer is not None and base_config and isinstance(base_config.get("draft"), dict):
                draft_cfg = base_config["draft"]
            cfg = model_config(model_info, base=base_config, req=req, projector_archs=projector_archs, draft=draft_cfg)
            cfg["rootfs"]["diff_ids"] = [layer.digest for layer in layers]
            cfg_bytes = json.dumps(cfg, separators=(",", ":")).encode()
            pins.add(sha256_digest(cfg_bytes))
            cfg_digest = store.blobs.write_bytes(cfg_bytes)
            config_layer = Layer(mt.CONFIG_MEDIA_TYPE, cfg_digest, len(cfg_bytes))

            # As in Ollama, a layer is new only if this request wrote its blob; uploaded `files`
            # (`NewLayerFromLayer`) and blobs already in the store are existing ones.
            existed_before = {layer.digest for layer in layers} - fresh
            for layer in layers:
                verb = "using existing" if layer.digest in existed_before else "creating new"
                yield {"status": f"{verb} layer {layer.digest}"}
            yield {"status": "writing manifest"}
            manifest = Manifest.build(config_layer, layers)
            await asyncio.to_thread(store.write_manifest, name, manifest)
    except BaseException:
        # A create that failed (a full disk, a bad file, a client gone) takes back the blobs it wrote,
        # unless a manifest or another operation in flight uses them now: they would only fill the disk.
        store.collect(fresh)
        raise
    yield {"status": "success"}


@dataclass(frozen=True)
class _Text:
    """A small layer a create writes: its media type, bytes, and the media types it takes the place of."""

    media_type: str
    data: bytes
    replaces: tuple[str, ...]


def _texts(req: CreateRequest, template: str | None, params: dict[str, Any]) -> list[_Text]:
    """The text layers the request asks for, in the order they are written (licenses add; the rest replace)."""
    out: list[_Text] = []
    if template is not None:
        out.append(_Text(mt.TEMPLATE, template.encode("utf-8"), (mt.TEMPLATE, mt.PROMPT)))
    if req.system:
        out.append(_Text(mt.SYSTEM, req.system.encode("utf-8"), (mt.SYSTEM,)))
    out.extend(_Text(mt.LICENSE, lic.encode("utf-8"), ()) for lic in req.licenses)
    if req.messages:
        out.append(_Text(mt.MESSAGES, json.dumps(req.messages, separators=(",", ":")).encode(), (mt.MESSAGES,)))
    if params:
        out.append(_Text(mt.PARAMS, json.dumps(params, separators=(",", ":")).encode(), (mt.PARAMS,)))
    return out


#: Bytes of a config blob and of a manifest, at most, before their layers: each layer adds about one digest line.
_CONFIG_BASE, _MANIFEST_BASE, _PER_LAYER = 2048, 1024, 256


def _check_space(
    store: Store,
    name: Name,
    layers: list[Layer],
    texts: list[_Text],
    source: Layer | None,
    info: GGUFInfo | None,
    target: str | None,
) -> None:
    """Refuse (`NotEnoughSpace`) a create whose writes do not fit, before the first: the quantized
    output (`expected_size`), the new text layers, the config and the manifest, in whole blocks."""
    space = disk_space(store.blobs.root)
    if space is None:
        return
    new = {sha256_digest(text.data): len(text.data) for text in texts}
    needed = sum(space.on_disk(size) for digest, size in new.items() if not store.blobs.exists(digest))
    count = len(layers) + len(texts) + 1
    needed += space.on_disk(_CONFIG_BASE + _PER_LAYER * count) + space.on_disk(_MANIFEST_BASE + _PER_LAYER * count)
    if source is not None and info is not None and target:
        needed += space.on_disk(expected_size(info, source.size, target))
    require(store.blobs.root, needed, f"creating {name.display}", space=space)


def _read_named(path: Path, filename: str) -> GGUFInfo:
    """Read an uploaded blob; errors name the file as the request named it, not by its digest."""
    try:
        return read_gguf(path)
    except InvalidGGUF as exc:
        raise exc.renamed(filename) from None


def _safe_gguf(model: Model) -> GGUFInfo | None:
    try:
        return model.gguf()
    except InvalidGGUF:
        return None


def _detect_template(chat_template: str) -> tuple[str, dict[str, Any]] | None:
    from server.prompt import detect_bundled_template

    found = detect_bundled_template(chat_template)
    if found is None:
        return None
    return found.name, dict(found.parameters)


def _bundled_text(name: str) -> str:
    from server.prompt import bundled_templates

    for t in bundled_templates():
        if t.name == name:
            return t.template_text
    raise KeyError(name)
