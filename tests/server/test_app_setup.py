"""How `create_app` puts a server together: every API surface registered, every service started and stopped.

A blueprint that fails to import, or is left out of `server.app.BLUEPRINTS`,
drops a whole API; these tests see that as routes of docs/openapi.yaml that
the app does not route. The serving lifetime is watched through what it
leaves behind: a log handler attached and removed, runner processes ended,
the registry's threads stopped, even when a stop before them fails.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from server.app import BLUEPRINTS, build_services, create_app
from server.config import load_config
from tests.support.openapi import HTTP_METHODS, OpenAPISpec

#: A value for each path parameter of the spec, so that a template becomes a path to route.
SAMPLE = {"digest": "sha256:" + "0" * 64, "model": "library/m:latest"}


def documented_operations() -> list[tuple[str, str]]:
    """(METHOD, concrete path) for every operation in docs/openapi.yaml."""
    out = []
    for template, item in OpenAPISpec.load().document["paths"].items():
        path = re.sub(r"\{([^{}]+)\}", lambda m: SAMPLE[m.group(1)], template)
        out += [(method.upper(), path) for method in HTTP_METHODS if method in item]
    return out


def unrouted(app: Any, operations: list[tuple[str, str]]) -> list[str]:
    adapter = app.url_map.bind("localhost")
    missing = []
    for method, path in operations:
        try:
            adapter.match(path, method=method)
        except (NotFound, MethodNotAllowed):
            missing.append(f"{method} {path}")
    return missing


def test_every_documented_route_is_served() -> None:
    operations = documented_operations()
    assert len(operations) > 30 and ("POST", "/v1/messages") in operations
    app = create_app(load_config(settings={}))
    assert unrouted(app, operations) == []


def test_a_missing_blueprint_is_seen_as_unrouted_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the test above catches: here the Anthropic surface is left out, as a failed import once did."""
    import server.app
    from server.api import anthropic

    monkeypatch.setattr(server.app, "BLUEPRINTS", tuple(bp for bp in BLUEPRINTS if bp is not anthropic.bp))
    app = create_app(load_config(settings={}))
    assert unrouted(app, documented_operations()) == ["POST /v1/messages", "POST /v1/messages/count_tokens"]


def test_every_surface_is_registered_once_by_its_name() -> None:
    app = create_app(load_config(settings={}))
    assert sorted(app.blueprints) == sorted(bp.name for bp in BLUEPRINTS)
    assert set(app.blueprints) == {
        "native",
        "inference",
        "openai",
        "anthropic",
        "pollama_ext",
        "transfer",
        "developer",
        "metrics",
    }


async def _load_a_runner(client: Any, model_path: Path) -> None:
    import hashlib

    data = model_path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await client.post(f"/api/blobs/{digest}", data=data)).status_code in (200, 201)
    r = await client.post("/api/create", json={"model": "m", "files": {"m.gguf": digest}, "stream": False})
    assert r.status_code == 200, await r.get_data()
    r = await client.post(
        "/api/generate", json={"model": "m", "prompt": "x", "stream": False, "options": {"num_predict": 1}}
    )
    assert r.status_code == 200, await r.get_data()


async def test_the_serving_lifetime_starts_and_stops_every_service(
    models_dir: Path, tiny_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = load_config(settings={})
    svc = build_services(config)
    app = create_app(config, services=svc)
    root = logging.getLogger()
    assert svc.logs not in root.handlers
    async with app.test_app() as test_app:
        assert svc.logs in root.handlers, "the Developer view's log ring is attached while serving"
        assert (config.ollama_home / "id_ed25519").exists(), "the registry made its key at start-up"
        assert models_dir.is_dir(), "the store was prepared"
        await _load_a_runner(test_app.test_client(), tiny_model_path)
        assert [entry["name"] for entry in svc.scheduler.ps()] == ["m:latest"]
        runner = next(iter(svc.scheduler._loaded.values())).client
        assert runner.alive
        logs, _ = svc.logs.since(0)
        assert any(record.message.startswith("loading m:latest") for record in logs)
    assert not runner.alive, "the runner process ended with the server"
    assert svc.scheduler.ps() == []
    assert svc.logs not in root.handlers
    assert svc.registry.executor._shutdown  # type: ignore[attr-defined]


async def test_a_failing_stop_leaves_the_others_to_run(
    models_dir: Path, tiny_model_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(settings={})
    svc = build_services(config)
    app = create_app(config, services=svc)

    async def broken_close() -> None:
        raise RuntimeError("registry would not close")

    monkeypatch.setattr(svc.registry, "close", broken_close)
    async with app.test_app() as test_app:
        await _load_a_runner(test_app.test_client(), tiny_model_path)
        runner = next(iter(svc.scheduler._loaded.values())).client
    # the registry stops first (the reverse of start-up), fails, and the runners still stop
    assert "error stopping the registry during shutdown" in caplog.text
    assert not runner.alive
    assert svc.logs not in logging.getLogger().handlers
