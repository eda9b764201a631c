"""Pytest plugin: loopback registries for the pull/push tests.

Enable with ``pytest_plugins = ["tests.support.registry_plugin"]`` (or
``-p tests.support.registry_plugin``). Every fixture starts its servers on
free ports with temporary storage and stops them afterwards; tests that need
the `docker-registry` binary are skipped where it is not installed (CI
installs it from `.ci/apt-packages-registry.txt`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.registry import (
    FaultProxy,
    Faults,
    RegistryServer,
    TokenServer,
    registry_available,
    write_htpasswd,
)

REGISTRY_USER = "pollama"
REGISTRY_PASSWORD = "s3cret-pass"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow_pull: a pull of the ~260 MB bench blob (~30 s); deselect with -m 'not slow_pull'"
    )


@pytest.fixture
def needs_registry() -> None:
    if not registry_available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")


@pytest.fixture
def registry(tmp_path: Path, needs_registry: None) -> Iterator[RegistryServer]:
    """An open distribution registry."""
    server = RegistryServer(tmp_path / "registry").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def basic_registry(tmp_path: Path, needs_registry: None) -> Iterator[RegistryServer]:
    """A registry that wants htpasswd (Basic) credentials: REGISTRY_USER / REGISTRY_PASSWORD."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", REGISTRY_USER, REGISTRY_PASSWORD)
    auth = {"htpasswd": {"realm": "pollama-test", "path": str(htpasswd)}}
    server = RegistryServer(tmp_path / "registry-basic", auth=auth).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path / "token", {REGISTRY_USER: REGISTRY_PASSWORD}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def token_registry(tmp_path: Path, needs_registry: None, token_server: TokenServer) -> Iterator[RegistryServer]:
    """A registry with distribution's token auth, tokens issued by `token_server`."""
    server = RegistryServer(tmp_path / "registry-token", auth=token_server.registry_auth()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    """A TCP proxy in front of `registry`; set `proxy.faults` to inject failures."""
    proxy = FaultProxy(("127.0.0.1", registry.port), Faults()).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def registry_client() -> Iterator[httpx.Client]:
    """Plain HTTP to loopback registries, never through an environment proxy."""
    with httpx.Client(trust_env=False, timeout=60) as client:
        yield client
