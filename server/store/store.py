"""The on-disk model store, compatible with Ollama's: `manifests/` and `blobs/`.

Consistency rules:
* a manifest is written atomically, and only after every blob it names exists;
* a blob is removed only when no manifest references it and no operation in
  flight has pinned it, checked under one short lock, so concurrent creates,
  copies and deletes never leave a manifest pointing at a missing blob;
* deletes collect only the blobs of the manifest they removed: a blob that a
  client has just uploaded for a create it has not sent yet is never taken.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from server import atomicfile
from server.errors import NotFound, PollamaError
from server.jsontypes import JSONObject
from server.options import Options
from server.store import manifest as mt
from server.store.blobs import BlobStore, storage_error
from server.store.gguf_info import GGUFInfo, read_gguf
from server.store.manifest import Manifest, ManifestError
from server.store.names import Name

log = logging.getLogger(__name__)

PRUNE_MIN_AGE = 3600.0


@dataclass
class Model:
    """A resolved model: its name, manifest, config and the layers' contents."""

    name: Name
    manifest: Manifest
    manifest_path: Path
    modified: float
    blobs: BlobStore = field(repr=False)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @cached_property
    def config(self) -> JSONObject:
        try:
            data = json.loads(self.blobs.read_small(self.manifest.config.digest))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _layer_text(self, *media_types: str) -> str | None:
        layers = self.manifest.layers_of(*media_types)
        if not layers:
            return None
        try:
            return self.blobs.read_small(layers[-1].digest).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    @property
    def model_layer(self) -> mt.Layer | None:
        layers = self.manifest.layers_of(mt.MODEL)
        return layers[0] if layers else None

    @property
    def model_path(self) -> Path | None:
        layer = self.model_layer
        return self.blobs.path(layer.digest) if layer else None

    @property
    def projector_paths(self) -> list[Path]:
        return [self.blobs.path(layer.digest) for layer in self.manifest.layers_of(mt.PROJECTOR)]

    @property
    def adapter_paths(self) -> list[Path]:
        return [self.blobs.path(layer.digest) for layer in self.manifest.layers_of(mt.ADAPTER)]

    @property
    def draft_path(self) -> Path | None:
        """The draft model (Modelfile `DRAFT`) speculative decoding drafts with, if any."""
        layers = self.manifest.layers_of(mt.DRAFT)
        return self.blobs.path(layers[0].digest) if layers else None

    @cached_property
    def template(self) -> str | None:
        return self._layer_text(mt.TEMPLATE, mt.PROMPT)

    @cached_property
    def system(self) -> str | None:
        return self._layer_text(mt.SYSTEM)

    @cached_property
    def parameters(self) -> Options:
        text = self._layer_text(mt.PARAMS)
        if not text:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @cached_property
    def messages(self) -> list[JSONObject]:
        text = self._layer_text(mt.MESSAGES)
        if not text:
            return []
        try:
            data = json.loads(text)
        except ValueError:
            return []
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    @cached_property
    def licenses(self) -> list[str]:
        out = []
        for layer in self.manifest.layers_of(mt.LICENSE):
            try:
                out.append(self.blobs.path(layer.digest).read_text(encoding="utf-8"))
            except OSError:
                continue
        return out

    def gguf(self, *, verbose: bool = False) -> GGUFInfo | None:
        path = self.model_path
        if path is None or not path.exists():
            return None
        return read_gguf(path, verbose=verbose)

    def details(self) -> JSONObject:
        cfg = self.config
        layer = self.model_layer
        details: JSONObject = {
            "parent_model": (layer.from_ if layer and layer.from_ else ""),
            "format": cfg.get("model_format", "gguf") or "gguf",
            "family": cfg.get("model_family", ""),
            "families": cfg.get("model_families"),
            "parameter_size": cfg.get("model_type", ""),
            "quantization_level": cfg.get("file_type", ""),
        }
        if cfg.get("context_length"):
            details["context_length"] = cfg["context_length"]
        if cfg.get("embedding_length"):
            details["embedding_length"] = cfg["embedding_length"]
        return details


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests_dir = root / "manifests"
        self.blobs = BlobStore(root / "blobs")
        self._lock = threading.RLock()
        self._pins: Counter[str] = Counter()
        #: Blobs a delete or overwrite freed while pinned: collected when their last pin goes.
        self._deferred: set[str] = set()

    # ---- set-up -------------------------------------------------------------------------

    def prepare(self, *, prune: bool = True) -> None:
        """Create the folders, fix old blob names, and drop what a crash left behind."""
        try:
            self.manifests_dir.mkdir(parents=True, exist_ok=True)
            self.blobs.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, f"cannot create models folder {self.root}") from exc
        self.blobs.normalize_names()
        self.blobs.remove_temp_files()
        for tmp in self.manifests_dir.rglob(atomicfile.TEMP_PREFIX + "*"):
            tmp.unlink(missing_ok=True)
        if prune:
            self.prune(min_age=PRUNE_MIN_AGE)

    def prune(self, *, min_age: float = 0.0) -> list[str]:
        """Remove blobs nothing references (skipped if any manifest is unreadable)."""
        with self._lock:
            referenced: set[str] = set()
            for _, path in self._manifest_files():
                try:
                    referenced |= Manifest.parse(path.read_bytes()).blob_digests()
                except (OSError, ManifestError):
                    log.warning("not pruning: manifest %s cannot be read", path)
                    return []
            removed = self.blobs.prune(referenced, min_age=min_age, keep=set(self._pins))
            self._remove_empty_dirs(self.manifests_dir)
        if removed:
            log.info("pruned %d unused blobs", len(removed))
        return removed

    # ---- names --------------------------------------------------------------------------

    def manifest_path(self, name: Name) -> Path:
        if not name.is_valid:
            raise PollamaError("invalid model name", 400)
        return self.manifests_dir.joinpath(*name.parts)

    def resolve(self, name: Name) -> Name:
        """Give a name the casing of an existing manifest whose parts match ignoring case."""
        current = self.manifests_dir
        resolved: list[str] = []
        for part in name.parts:
            match = None
            with contextlib.suppress(OSError):
                if (current / part).exists():
                    match = part
                else:
                    lowered = part.lower()
                    for entry in current.iterdir():
                        if entry.name.lower() == lowered:
                            match = entry.name
                            break
            if match is None:
                return name
            resolved.append(match)
            current = current / match
        host, namespace, model, tag = resolved
        return Name(host, namespace, model, tag, name.scheme)

    # ---- reading ------------------------------------------------------------------------

    def _manifest_files(self) -> Iterator[tuple[Name, Path]]:
        root = self.manifests_dir
        if not root.is_dir():
            return
        for host in _subdirs(root):
            for ns in _subdirs(host):
                for model in _subdirs(ns):
                    for tag in model.iterdir():
                        if tag.name.startswith(".") or not tag.is_file():
                            continue
                        name = Name(host.name, ns.name, model.name, tag.name)
                        if name.is_valid:
                            yield name, tag

    def get(self, name: Name) -> Model | None:
        name = self.resolve(name)
        path = self.manifest_path(name)
        try:
            raw = path.read_bytes()
            mtime = path.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise storage_error(exc, f"reading manifest for {name}") from exc
        try:
            manifest = Manifest.parse(raw)
        except ManifestError as exc:
            raise PollamaError(f"manifest for {name} is damaged: {exc}") from None
        return Model(name, manifest, path, mtime, self.blobs)

    def require(self, name: Name, message: str | None = None) -> Model:
        model = self.get(name)
        if model is None:
            raise NotFound(message or f"model '{name.display}' not found")
        return model

    def list(self) -> list[Model]:
        models = []
        for name, path in self._manifest_files():
            try:
                raw = path.read_bytes()
                mtime = path.stat().st_mtime
                models.append(Model(name, Manifest.parse(raw), path, mtime, self.blobs))
            except (OSError, ManifestError) as exc:
                log.warning("skipping unreadable manifest %s: %s", path, exc)
        models.sort(key=lambda m: m.modified, reverse=True)
        return models

    # ---- writing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned(self, digests: Iterable[str] = ()) -> Iterator[PinSet]:
        """Keep blobs from being collected while an operation that will reference them runs."""
        pins = PinSet(self)
        for digest in digests:
            pins.add(digest)
        try:
            yield pins
        finally:
            pins.release()

    def write_manifest(self, name: Name, manifest: Manifest) -> set[str]:
        """Atomically point `name` at `manifest`; returns blobs the old manifest used that are now free."""
        with self._lock:
            for digest in manifest.blob_digests():
                if not self.blobs.exists(digest):
                    raise PollamaError(f"blob {digest} is missing; cannot write manifest for {name.display}")
            path = self.manifest_path(name)
            old = self._read_manifest(path)
            try:
                atomicfile.write_bytes(path, manifest.raw, mode=0o644)
            except OSError as exc:
                raise storage_error(exc, f"writing manifest for {name.display}") from exc
            if old is None:
                return set()
            return self._collect(old.blob_digests() - manifest.blob_digests())

    def _read_manifest(self, path: Path) -> Manifest | None:
        try:
            return Manifest.parse(path.read_bytes())
        except (OSError, ManifestError):
            return None

    def copy(self, source: Name, destination: Name) -> None:
        with self._lock:
            model = self.require(source, f'model "{source.display}" not found')
            self.write_manifest(self.resolve(destination), model.manifest)

    def delete(self, name: Name) -> set[str]:
        """Remove a manifest and the blobs only it used; returns the removed digests."""
        with self._lock:
            model = self.require(name)
            try:
                model.manifest_path.unlink()
            except FileNotFoundError:
                raise NotFound(f"model '{name.display}' not found") from None
            except OSError as exc:
                raise storage_error(exc, f"deleting {name.display}") from exc
            self._remove_empty_dirs(self.manifests_dir)
            return self._collect(model.manifest.blob_digests())

    def collect(self, digests: Iterable[str]) -> set[str]:
        """Delete those of `digests` that no manifest references and nobody has pinned; returns what went.

        For an operation that failed after writing blobs of its own (a create that met a full disk):
        what it wrote goes again, unless something took it up meanwhile.
        """
        with self._lock:
            return self._collect(set(digests))

    def _collect(self, candidates: set[str]) -> set[str]:
        """Delete candidate blobs that no manifest references and nobody has pinned."""
        if not candidates:
            return set()
        referenced: set[str] = set()
        for _, path in self._manifest_files():
            m = self._read_manifest(path)
            if m is None:
                return set()  # an unreadable manifest might reference anything: keep all
            referenced |= m.blob_digests()
        removed = set()
        self._deferred |= (candidates - referenced) & set(self._pins)
        for digest in candidates - referenced - set(self._pins):
            with contextlib.suppress(OSError):
                self.blobs.path(digest).unlink()
                removed.add(digest)
        return removed

    def _remove_empty_dirs(self, root: Path) -> None:
        for dirpath, _, _ in os.walk(root, topdown=False):
            p = Path(dirpath)
            if p != root:
                with contextlib.suppress(OSError):
                    p.rmdir()  # fails, harmlessly, unless the folder is empty


def _subdirs(path: Path) -> Iterator[Path]:
    with contextlib.suppress(OSError):
        for entry in path.iterdir():
            if entry.is_dir() and not entry.name.startswith("."):
                yield entry


class PinSet:
    """The blobs one operation has pinned; released together when it ends."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._digests: set[str] = set()

    def add(self, digest: str) -> None:
        if digest in self._digests:
            return
        with self._store._lock:
            self._store._pins[digest] += 1
        self._digests.add(digest)

    def __contains__(self, digest: object) -> bool:
        return digest in self._digests

    def release(self) -> None:
        store = self._store
        with store._lock:
            store._pins.subtract(self._digests)
            store._pins += Counter()
            freed = {d for d in self._digests & store._deferred if d not in store._pins}
            store._deferred -= freed
            store._collect(freed)
        self._digests.clear()
