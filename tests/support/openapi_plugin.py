"""Pytest plugin: validate HTTP responses against `docs/openapi.yaml`.

Enable with ``pytest_plugins = ["tests.support.openapi_plugin"]`` in ``tests/conftest.py``
(or ``-p tests.support.openapi_plugin``). It provides:

* ``openapi``: the loaded `OpenAPISpec` (session-scoped). One-liners in a test::

      openapi.check(httpx.post(url + "/api/show", json={"model": "m"}))
      client = install_httpx_hook(ollama.Client(host=url))   # every response checked
      http = openapi_client(url)                              # an httpx.Client, checked

* ``openapi_client``: a factory of validating ``httpx.Client``s, closed after the test.
* the marker ``@pytest.mark.openapi_validate`` (on a test, a class, or a module via
  ``pytestmark``) and the option ``--openapi-validate`` (the whole run): every
  ``httpx.Client``/``httpx.AsyncClient`` created during the test validates the responses
  to documented paths, including those made by ``httpx.get``/``httpx.post`` and by
  ``ollama.Client``. Paths the spec does not know (a fake registry, a runner) are
  not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.openapi import OpenAPISpec, install_httpx_hook


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--openapi-validate",
        action="store_true",
        default=False,
        help="validate every HTTP response a test receives from a documented path against docs/openapi.yaml",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "openapi_validate: validate every httpx response to a documented path against docs/openapi.yaml",
    )


@pytest.fixture(scope="session")
def openapi() -> OpenAPISpec:
    """The API description, loaded once."""
    return OpenAPISpec.load()


@pytest.fixture
def openapi_client(openapi: OpenAPISpec) -> Iterator[Callable[..., httpx.Client]]:
    """`openapi_client(base_url, **httpx_kwargs)` → an httpx.Client that validates every response."""
    made: list[httpx.Client] = []

    def make(base_url: str = "", **kwargs: Any) -> httpx.Client:
        client = openapi.client(base_url, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(autouse=True)
def _openapi_validate_all(request: pytest.FixtureRequest) -> Iterator[None]:
    wanted = request.config.getoption("--openapi-validate", default=False) or (
        request.node.get_closest_marker("openapi_validate") is not None
    )
    if not wanted:
        yield
        return
    spec = request.getfixturevalue("openapi")
    mp = pytest.MonkeyPatch()
    for cls in (httpx.Client, httpx.AsyncClient):
        original = cls.__init__

        def init(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> None:
            __original(self, *args, **kwargs)
            install_httpx_hook(self, spec, only_documented=True)

        mp.setattr(cls, "__init__", init)
    try:
        yield
    finally:
        mp.undo()
