"""Helpers for the registry tests: an in-process registry service and random test models.

Registry servers themselves come from `tests/support/registry_plugin.py`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from server.errors import PollamaError
from server.registry.parts import PartSizing, RetryPolicy
from server.registry.service import RegistryService
from server.registry.settings import TransferSettings
from server.store.manifest import MODEL, Layer, Manifest
from server.store.names import Name
from server.store.store import Store

#: Small parts and quick retries, so fault tests take a second, not minutes.
FAST = TransferSettings(
    sizing=PartSizing(fixed_size=1_000_000),
    retry=RetryPolicy(max_tries=6, backoff_base=0.05, stall_timeout=1.0),
    checkpoint_interval=0.05,
)

MakeService = Callable[..., RegistryService]


@pytest.fixture
def store(models_dir: Path) -> Store:
    s = Store(models_dir)
    s.prepare(prune=False)
    return s


@pytest.fixture
async def make_service(store: Store, temp_home: Path) -> AsyncIterator[MakeService]:
    made: list[RegistryService] = []

    def make(
        environ: dict[str, str] | None = None, settings: TransferSettings = FAST, **changes: Any
    ) -> RegistryService:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_PROXY") and not k.endswith("_proxy")}
        env.update(environ or {})
        service = RegistryService(
            store, ollama_home=temp_home / ".ollama", environ=env, settings=replace(settings, **changes)
        )
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()


async def run(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every progress line; an error is raised as it would end the stream."""
    return [event async for event in events]


async def run_error(events: AsyncIterator[dict[str, Any]]) -> tuple[list[dict[str, Any]], PollamaError]:
    lines: list[dict[str, Any]] = []
    try:
        async for event in events:
            lines.append(event)
    except PollamaError as exc:
        return lines, exc
    raise AssertionError(f"no error; got {lines}")


def random_bytes(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest() * 128
        counter += 1
    return bytes(out[:size])


def local_model(store: Store, name: str, weights: bytes, config: bytes = b'{"model_format":"gguf"}') -> Manifest:
    wd = store.blobs.write_bytes(weights)
    cd = store.blobs.write_bytes(config)
    manifest = Manifest.build(
        Layer("application/vnd.docker.container.image.v1+json", cd, len(config)), [Layer(MODEL, wd, len(weights))]
    )
    store.write_manifest(Name.parse(name), manifest)
    return manifest
