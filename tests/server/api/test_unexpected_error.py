"""A bug in a native handler answers the spec's `Error500` JSON, not Quart's HTML page, and is logged."""

from __future__ import annotations

import logging

import pytest

from server.app import create_app
from server.config import load_config
from tests.support.openapi import OpenAPISpec


async def test_an_unexpected_exception_is_a_json_500_with_its_traceback_logged(
    models_dir: object, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(load_config(settings={}))

    async def broken() -> str:
        raise RuntimeError("the bug")

    app.view_functions["native.tags"] = broken  # a documented route, broken on purpose
    async with app.test_app() as test_app:
        with caplog.at_level(logging.ERROR, logger="pollama.server"):
            r = await test_app.test_client().get("/api/tags")
        body = await r.get_data()
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    OpenAPISpec.load().validate_response("GET", "/api/tags", 500, body, r.headers["content-type"])
    assert body == b'{"error":"internal error: the bug"}'
    failed = [rec for rec in caplog.records if rec.getMessage() == "GET /api/tags failed"]
    assert len(failed) == 1 and failed[0].exc_info is not None
    r = await app.test_client().get("/api/nope")  # other HTTP errors keep their own answers
    assert (r.status_code, await r.get_data()) == (404, b"404 page not found")
