"""Private registries: htpasswd (Basic) and distribution's token auth, with and without credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from server.store.names import Name
from server.store.store import Store
from tests.server.registry.conftest import MakeService, local_model, random_bytes, run, run_error
from tests.support.registry import RegistryServer, TokenServer
from tests.support.registry_plugin import REGISTRY_PASSWORD, REGISTRY_USER

WEIGHTS = random_bytes(1_500_000, seed=7)
CREDS = {"POLLAMA_REGISTRY_USERNAME": REGISTRY_USER, "POLLAMA_REGISTRY_PASSWORD": REGISTRY_PASSWORD}


async def round_trip(store: Store, make_service: MakeService, host: str, environ: dict[str, str]) -> None:
    name = Name.parse(f"{host}/team/private:v1")
    manifest = local_model(store, f"{host}/team/private:v1", WEIGHTS)
    pushed = await run(make_service(environ).push(name, insecure=True))
    assert pushed[-1] == {"status": "success"}
    store.delete(name)
    assert not store.blobs.exists(manifest.layers[0].digest)
    pulled = await run(make_service(environ).pull(name, insecure=True))
    assert pulled[-1] == {"status": "success"}
    assert store.require(name).manifest.raw == manifest.raw


async def refused(store: Store, make_service: MakeService, host: str, environ: dict[str, str]) -> None:
    name = Name.parse(f"{host}/team/other:v1")
    local_model(store, f"{host}/team/other:v1", WEIGHTS)
    _, push_error = await run_error(make_service(environ).push(name, insecure=True))
    assert "unauthorized" in str(push_error)
    _, pull_error = await run_error(make_service(environ).pull(Name.parse(f"{host}/team/private:v1"), insecure=True))
    assert str(pull_error).startswith("pull model manifest: unauthorized")
    return None


async def test_basic_auth_with_env_credentials(
    store: Store, make_service: MakeService, basic_registry: RegistryServer
) -> None:
    await round_trip(store, make_service, basic_registry.host, CREDS)


async def test_basic_auth_with_docker_config(
    store: Store, make_service: MakeService, basic_registry: RegistryServer, temp_home: Path
) -> None:
    (temp_home / ".docker").mkdir()
    auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    (temp_home / ".docker" / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    await round_trip(store, make_service, basic_registry.host, {})


async def test_basic_auth_without_credentials_fails_clearly(
    store: Store, make_service: MakeService, basic_registry: RegistryServer
) -> None:
    await refused(store, make_service, basic_registry.host, {})
    _, error = await run_error(make_service({}).pull(Name.parse(f"{basic_registry.host}/team/x"), insecure=True))
    assert "requires a user name and password" in str(error) and "POLLAMA_REGISTRY_USERNAME" in str(error)


async def test_basic_auth_with_wrong_password(
    store: Store, make_service: MakeService, basic_registry: RegistryServer
) -> None:
    env = {**CREDS, "POLLAMA_REGISTRY_PASSWORD": "wrong"}
    _, error = await run_error(make_service(env).pull(Name.parse(f"{basic_registry.host}/team/x"), insecure=True))
    assert "unauthorized" in str(error)


async def test_token_auth_with_credentials(
    store: Store, make_service: MakeService, token_registry: RegistryServer, token_server: TokenServer
) -> None:
    await round_trip(store, make_service, token_registry.host, CREDS)
    scopes = {s for r in token_server.requests for s in r["query"].get("scope", [])}
    assert "repository:team/private:pull,push" in scopes or "repository:team/private:push,pull" in scopes
    assert all(r["query"]["service"] == [token_server.service] for r in token_server.requests)


async def test_token_auth_without_credentials_fails_clearly(
    store: Store, make_service: MakeService, token_registry: RegistryServer
) -> None:
    await refused(store, make_service, token_registry.host, {})


@pytest.mark.parametrize("user", ["nobody"])
async def test_token_auth_with_unknown_user(
    store: Store, make_service: MakeService, token_registry: RegistryServer, user: str
) -> None:
    env = {**CREDS, "POLLAMA_REGISTRY_USERNAME": user}
    _, error = await run_error(make_service(env).pull(Name.parse(f"{token_registry.host}/team/x"), insecure=True))
    assert "unauthorized: access denied" in str(error)
