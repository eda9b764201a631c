"""`docs/openapi.yaml`: a valid OpenAPI 3.1 document, covering every route, matching real responses."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
import yaml
from jsonschema import Draft202012Validator
from quart import Quart
from quart.routing import QuartRule

from tests.support.live_server import LiveServer, free_port
from tests.support.openapi import SPEC_PATH, OpenAPISpec, install_httpx_hook, parse_sse
from tests.support.openapi_plugin import openapi, openapi_client  # noqa: F401  (usable without the plugin)

TEMPLATE = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"

#: Every route of Ollama's `server/routes.go` `GenerateRoutes` that pollama serves or will serve, and its extensions.
EXPECTED_ROUTES = {
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/api/version"),
    ("HEAD", "/api/version"),
    ("GET", "/api/status"),
    ("GET", "/api/tags"),
    ("HEAD", "/api/tags"),
    ("POST", "/api/show"),
    ("POST", "/api/create"),
    ("HEAD", "/api/blobs/{digest}"),
    ("POST", "/api/blobs/{digest}"),
    ("POST", "/api/copy"),
    ("DELETE", "/api/delete"),
    ("GET", "/api/ps"),
    ("POST", "/api/pull"),
    ("POST", "/api/push"),
    ("POST", "/api/generate"),
    ("POST", "/api/chat"),
    ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
    ("POST", "/api/rerank"),
    ("POST", "/api/tokenize"),
    ("POST", "/api/detokenize"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/rerank"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/api/pollama/count"),
    ("GET", "/api/pollama/version"),
    ("GET", "/api/pollama/devices"),
    ("POST", "/api/pollama/estimate"),
    ("GET", "/api/pollama/requests"),
    ("GET", "/api/pollama/logs"),
    ("GET", "/metrics"),
}


@pytest.fixture(scope="module")
def spec(openapi: OpenAPISpec) -> OpenAPISpec:  # noqa: F811
    return openapi


@pytest.fixture(scope="module")
def raw_document() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


# ---- (a) the document itself ----------------------------------------------------------------


def test_is_a_valid_openapi_31_document(raw_document: dict[str, Any]) -> None:
    assert raw_document["openapi"].startswith("3.1."), raw_document["openapi"]
    try:
        from openapi_spec_validator import validate
    except ImportError:  # structural checks below still run
        pytest.skip("openapi-spec-validator is not installed")
    validate(raw_document)


def _refs(node: Any, at: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield at, value
            else:
                yield from _refs(value, f"{at}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{at}/{i}")


def test_structure(raw_document: dict[str, Any], spec: OpenAPISpec) -> None:
    # every $ref is local and resolves
    for at, ref in _refs(raw_document):
        assert ref.startswith("#/"), f"{at}: non-local $ref {ref}"
        node: Any = raw_document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict) and part in node, f"{at}: $ref {ref} does not resolve"
            node = node[part]
    # every component schema is a valid JSON Schema 2020-12 schema
    for _name, schema in raw_document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    operation_ids = []
    for op in spec.operations():
        d = op.definition
        operation_ids.append(d.get("operationId"))
        assert d.get("summary"), f"{op}: no summary"
        assert d.get("tags"), f"{op}: no tags"
        assert any(s.startswith("2") for s in d["responses"]), f"{op}: no 2xx response"
        params = {p for p in op.template.split("/") if p.startswith("{")}
        every = [spec.deref(p, "")[0] for p in raw_document["paths"][op.template].get("parameters", [])]
        every += [spec.deref(p, "")[0] for p in d.get("parameters", [])]
        declared = {"{" + p["name"] + "}" for p in every if p.get("in") == "path"}  # a query parameter is no path's
        assert params == declared, f"{op}: path parameters {params} declared as {declared}"
        if op.method in ("POST", "PUT", "PATCH") and op.template != "/api/blobs/{digest}":
            assert "application/json" in d["requestBody"]["content"], f"{op}: no JSON request body"
        for status, response in d["responses"].items():
            response, _ = spec.deref(response, "")
            for media, media_def in (response.get("content") or {}).items():
                assert "schema" in media_def, f"{op} {status} {media}: no schema"
            if status.startswith(("4", "5")) and status != "403" and op.method != "HEAD":
                assert response.get("content"), f"{op} {status}: an error without a body schema"
        if op.template.startswith("/api/pollama/"):
            assert d.get("x-pollama-extension") is True, f"{op}: mark pollama extensions"
            assert "pollama" in d["tags"]
    assert len(operation_ids) == len(set(operation_ids)) and None not in operation_ids, operation_ids


def test_documents_every_reference_route(spec: OpenAPISpec) -> None:
    documented = {(op.method, op.template) for op in spec.operations()}
    assert EXPECTED_ROUTES <= documented, sorted(EXPECTED_ROUTES - documented)
    assert documented <= EXPECTED_ROUTES, (
        f"new routes: add them to EXPECTED_ROUTES: {sorted(documented - EXPECTED_ROUTES)}"
    )


def test_error_shapes_per_api_surface(spec: OpenAPISpec) -> None:
    """Native routes answer `{"error": "..."}`, /v1 the OpenAI shape, /v1/messages(/count_tokens) Anthropic's."""
    for op in spec.operations():
        for status, response in op.definition["responses"].items():
            if not status.startswith(("4", "5")) or status == "403":
                continue
            response, _ = spec.deref(response, "")
            for media_def in (response.get("content") or {}).values():
                name = media_def["schema"]["$ref"].rsplit("/", 1)[-1]
                if op.template.startswith("/v1/messages"):
                    assert name == "AnthropicError", (op, status)
                elif op.template.startswith("/v1/"):
                    assert name == "OpenAIError", (op, status)
                else:
                    assert name == "Error", (op, status)


def test_every_guarded_route_documents_the_api_key_refusal(spec: OpenAPISpec) -> None:
    """With `POLLAMA_API_KEYS` set every route but the liveness ones can answer 401 (server/api/api_keys.py)."""
    from server.api.api_keys import OPEN_ROUTES

    for op in spec.operations():
        if (op.method, op.template) in OPEN_ROUTES:
            assert "401" not in op.definition["responses"], f"{op} answers without a key"
        else:
            assert "401" in op.definition["responses"], f"{op}: document the 401 of a missing API key"


def test_streaming_media_types(spec: OpenAPISpec) -> None:
    def content(method: str, path: str) -> dict[str, Any]:
        op = spec.operation(method, path)
        return spec.deref(op.definition["responses"]["200"], "")[0]["content"]

    for path in ("/api/generate", "/api/chat", "/api/create", "/api/pull", "/api/push"):
        assert set(content("POST", path)) == {"application/json", "application/x-ndjson"}, path
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"):
        assert set(content("POST", path)) == {"application/json", "text/event-stream"}, path


# ---- the checker on canned responses (no server) --------------------------------------------


def _mock_client(spec: OpenAPISpec, status: int, body: bytes, content_type: str) -> httpx.Client:
    """A client on canned responses that arrive as a stream, like a real transport's."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, stream=httpx.ByteStream(body), headers={"content-type": content_type})

    return install_httpx_hook(httpx.Client(transport=httpx.MockTransport(handler), base_url="http://pollama"), spec)


DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": None,
    "parameter_size": "1M",
    "quantization_level": "F32",
}
TAG = {
    "name": "m:latest",
    "model": "m:latest",
    "modified_at": "2026-08-01T12:00:00.1234+02:00",
    "size": 10,
    "digest": "ab" * 32,
    "details": DETAILS,
}


def test_checker_accepts_and_rejects(spec: OpenAPISpec) -> None:
    good = json.dumps({"models": [TAG]}).encode()
    with _mock_client(spec, 200, good, "application/json; charset=utf-8") as http:
        assert http.get("/api/tags").json()["models"][0]["name"] == "m:latest"
    misspelled = json.dumps({"models": [{**TAG, "detail": TAG["details"]}]}).encode()
    with _mock_client(spec, 200, misspelled, "application/json") as http, pytest.raises(AssertionError) as info:
        http.get("/api/tags")
    assert "'detail' was unexpected" in str(info.value) and "$.models[0]" in str(info.value)
    bad_time = json.dumps({"models": [{**TAG, "modified_at": "2026-08-01 12:00:00"}]}).encode()
    with pytest.raises(AssertionError, match="date-time"):
        spec.validate_response("GET", "/api/tags", 200, bad_time, "application/json")
    with pytest.raises(AssertionError, match="status 418 is not documented"):
        spec.validate_response("GET", "/api/tags", 418, b"", "text/plain")
    with pytest.raises(AssertionError, match="content type 'text/html' is not documented"):
        spec.validate_response("GET", "/api/tags", 200, b"<html>", "text/html")
    with pytest.raises(AssertionError, match="documents no body"):
        spec.validate_response("POST", "/api/copy", 200, b'{"status":"success"}', "application/json")
    with pytest.raises(AssertionError, match="no path in"):
        spec.validate_response("GET", "/api/nothing", 200, b"{}", "application/json")
    # what Ollama answers for unknown paths and wrong methods is fine
    spec.validate_response("GET", "/api/nothing", 404, b"404 page not found", "text/plain")
    spec.validate_response("GET", "/api/show", 405, b"405 method not allowed", "text/plain")
    spec.validate_response("HEAD", "/api/ps", 200, b"", "application/json")  # HEAD answers like GET
    spec.validate_response("OPTIONS", "/api/chat", 204, b"", None)  # CORS preflight, any path
    with pytest.raises(AssertionError, match="expected an empty body"):
        spec.validate_response("OPTIONS", "/api/chat", 204, b"hello", "text/plain")


def test_checker_streams(spec: OpenAPISpec) -> None:
    lines = [
        {"model": "m", "created_at": "2026-08-01T12:00:00Z", "response": "Hi", "done": False},
        {
            "model": "m",
            "created_at": "2026-08-01T12:00:00.5Z",
            "response": "",
            "done": True,
            "done_reason": "stop",
            "eval_count": 1,
        },
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with _mock_client(spec, 200, body, "application/x-ndjson") as http:
        with http.stream("POST", "/api/generate", json={"model": "m"}) as r:
            assert [json.loads(x) for x in r.iter_lines() if x] == lines
    bad = (
        body + b'{"model":"m","created_at":"2026-08-01T12:00:00Z","response":"","done":true,"done_reason":"finished"}\n'
    )
    with _mock_client(spec, 200, bad, "application/x-ndjson") as http, pytest.raises(AssertionError) as info:
        with http.stream("POST", "/api/generate", json={"model": "m"}) as r:
            list(r.iter_lines())
    assert "line 3 of 3" in str(info.value) and "'finished' is not one of" in str(info.value)
    # a stream the client stops reading: the complete lines it got are still checked
    with _mock_client(spec, 200, bad, "application/x-ndjson") as http, pytest.raises(AssertionError, match="line 3"):
        with http.stream("POST", "/api/generate", json={"model": "m"}) as r:
            for line in r.iter_lines():
                if '"finished"' in line:
                    break
    with _mock_client(spec, 200, body + b'{"model":"m","crea', "application/x-ndjson") as http:
        with http.stream("POST", "/api/generate", json={"model": "m"}) as r:
            next(r.iter_lines())  # the incomplete last line is not judged
    # a mid-stream error line is allowed
    spec.validate_response(
        "POST", "/api/create", 200, b'{"status":"parsing GGUF"}\n{"error":"disk full"}\n', "application/x-ndjson"
    )

    chunk: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}],
    }
    sse = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    assert [data for _, data in parse_sse(sse.decode())][-1] == "[DONE]"
    spec.validate_response("POST", "/v1/chat/completions", 200, sse, "text/event-stream")
    chunk["choices"][0]["delta"]["reasoning_content"] = "x"
    with pytest.raises(AssertionError, match="reasoning_content"):
        spec.validate_response(
            "POST", "/v1/chat/completions", 200, f"data: {json.dumps(chunk)}\n\n".encode(), "text/event-stream"
        )
    with pytest.raises(AssertionError, match="differs from data type"):
        spec.validate_response(
            "POST", "/v1/messages", 200, b'event: message_stop\ndata: {"type":"ping"}\n\n', "text/event-stream"
        )


async def test_checker_async_and_wrapped_clients(spec: OpenAPISpec) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = b'{"version":1}' if request.url.path == "/api/version" else b'{"models":[]}'
        return httpx.Response(200, stream=httpx.ByteStream(body), headers={"content-type": "application/json"})

    client = install_httpx_hook(ollama.AsyncClient(host="http://pollama", transport=httpx.MockTransport(handler)), spec)
    assert (await client.list()).models == []
    with pytest.raises(AssertionError, match="1 is not of type 'string'"):
        await client._client.get("/api/version")


def test_openapi_client_fixture(openapi_client: Any) -> None:  # noqa: F811
    http = openapi_client(
        "http://pollama", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"models": [{}]}))
    )
    with pytest.raises(AssertionError, match="'name' is a required property"):
        http.get("/api/ps")


@pytest.mark.openapi_validate
def test_marker_validates_every_client(request: pytest.FixtureRequest) -> None:
    if not request.config.pluginmanager.hasplugin("tests.support.openapi_plugin"):
        pytest.skip("needs the plugin registered: -p tests.support.openapi_plugin")
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"versoin": "1"}))
    with httpx.Client(transport=transport, base_url="http://pollama") as http:
        with pytest.raises(AssertionError, match="'versoin' was unexpected"):
            http.get("/api/version")
        assert http.get("/v2/library/x/manifests/latest").json() == {"versoin": "1"}  # not ours: not checked


# ---- (b) every registered route is documented -----------------------------------------------


class _RecordingRule(QuartRule):
    """Remembers the methods a route was registered with, before HEAD is added to GET routes."""

    def __init__(self, string: str, *, methods: Iterable[str] | None = None, **kwargs: Any) -> None:
        self.explicit_methods = frozenset(m.upper() for m in methods or ())
        super().__init__(string, methods=methods, **kwargs)


def _build_app(monkeypatch: pytest.MonkeyPatch) -> Quart:
    from server.app import create_app
    from server.config import load_config

    monkeypatch.setattr(Quart, "url_rule_class", _RecordingRule)
    return create_app(load_config(settings={}))


def registered_routes(app: Quart) -> set[tuple[str, str]]:
    """(method, rule) for every route; OPTIONS never, HEAD only where registered explicitly."""
    out = set()
    for rule in app.url_map.iter_rules():
        explicit = getattr(rule, "explicit_methods", None)
        for method in rule.methods or ():
            if method == "OPTIONS":
                continue
            if method == "HEAD" and explicit is not None and "HEAD" not in explicit:
                continue
            out.add((method, rule.rule))
    return out


def undocumented(app: Quart, spec: OpenAPISpec) -> list[str]:
    return sorted(f"{m} {r}" for m, r in registered_routes(app) if not spec.has_route(m, r))


def test_every_registered_route_is_documented(monkeypatch: pytest.MonkeyPatch, spec: OpenAPISpec) -> None:
    app = _build_app(monkeypatch)
    routes = registered_routes(app)
    assert ("GET", "/api/version") in routes and ("HEAD", "/api/version") in routes
    assert ("HEAD", "/api/ps") not in routes, "implicit HEAD routes are not counted"
    missing = undocumented(app, spec)
    assert not missing, f"routes registered on the app but missing from docs/openapi.yaml: {missing}"


def test_an_undocumented_route_is_caught(monkeypatch: pytest.MonkeyPatch, spec: OpenAPISpec) -> None:
    app = _build_app(monkeypatch)

    async def secret() -> str:
        return "{}"

    app.add_url_rule("/api/secret/<thing>", "secret", secret, methods=["GET", "PUT"])
    app.add_url_rule("/api/ps", "ps_post", secret, methods=["POST"])
    assert undocumented(app, spec) == ["GET /api/secret/<thing>", "POST /api/ps", "PUT /api/secret/<thing>"]


# ---- (c) real responses from a live server --------------------------------------------------


class RecordingSpec(OpenAPISpec):
    """Validates like the spec, and remembers which operations and statuses it saw."""

    def __init__(self, base: OpenAPISpec) -> None:
        super().__init__(base.document, base.path)
        self.seen: set[tuple[str, str, int]] = set()

    def validate_response(
        self, method: str, path: str, status: int, body: bytes | str, content_type: str | None, **kw: Any
    ) -> None:
        super().validate_response(method, path, status, body, content_type, **kw)
        template = self.match_path(path)
        if template is not None:
            self.seen.add((method.upper(), template, status))


#: The management endpoints (and error statuses) the live scenario must exercise.
MANAGEMENT = {
    ("GET", "/", 200),
    ("HEAD", "/", 200),
    ("GET", "/api/version", 200),
    ("HEAD", "/api/version", 200),
    ("GET", "/api/tags", 200),
    ("HEAD", "/api/tags", 200),
    ("POST", "/api/show", 200),
    ("POST", "/api/show", 400),
    ("POST", "/api/show", 404),
    ("POST", "/api/create", 200),
    ("POST", "/api/create", 400),
    ("HEAD", "/api/blobs/{digest}", 200),
    ("HEAD", "/api/blobs/{digest}", 404),
    ("HEAD", "/api/blobs/{digest}", 400),
    ("POST", "/api/blobs/{digest}", 201),
    ("POST", "/api/blobs/{digest}", 200),
    ("POST", "/api/blobs/{digest}", 400),
    ("POST", "/api/copy", 200),
    ("POST", "/api/copy", 400),
    ("POST", "/api/copy", 404),
    ("DELETE", "/api/delete", 200),
    ("DELETE", "/api/delete", 400),
    ("DELETE", "/api/delete", 404),
    ("GET", "/api/ps", 200),
    ("GET", "/api/pollama/version", 200),
    ("GET", "/api/pollama/devices", 200),
    ("POST", "/api/pollama/estimate", 200),
    ("POST", "/api/pollama/estimate", 502),
    ("GET", "/api/pollama/requests", 200),
    ("GET", "/api/pollama/requests", 400),
    ("GET", "/api/pollama/logs", 200),
    ("GET", "/api/pollama/logs", 400),
}


def test_live_responses_match_the_spec(live_server: LiveServer, tiny_model_path: Path, spec: OpenAPISpec) -> None:
    recorder = RecordingSpec(spec)
    http = recorder.client(live_server.url, timeout=60)
    client = install_httpx_hook(ollama.Client(host=live_server.url), recorder)

    def expect(r: httpx.Response, status: int) -> httpx.Response:
        assert r.status_code == status, (r.request.method, r.request.url.path, r.status_code, r.text)
        return r

    with http:
        expect(http.get("/"), 200)
        expect(http.head("/"), 200)
        assert expect(http.get("/api/version"), 200).json()["version"]
        expect(http.head("/api/version"), 200)
        assert expect(http.get("/api/tags"), 200).json() == {"models": []}
        expect(http.head("/api/tags"), 200)
        assert expect(http.get("/api/ps"), 200).json() == {"models": []}
        expect(http.get("/api/pollama/version"), 200)
        expect(http.get("/api/pollama/devices"), 200)

        # blobs
        data = tiny_model_path.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        expect(http.head(f"/api/blobs/{digest}"), 404)
        expect(http.head("/api/blobs/sha256:short"), 400)
        expect(http.post(f"/api/blobs/{digest}", content=data), 201)
        # 200 without reading the body; the server then drops the connection, so don't reuse it
        expect(http.post(f"/api/blobs/{digest}", content=data, headers={"Connection": "close"}), 200)
        expect(http.head(f"/api/blobs/{digest.replace(':', '-')}"), 200)
        expect(http.post("/api/blobs/sha256:" + "a" * 64, content=b"not that"), 400)

        # create: streamed (every NDJSON line checked), then not streamed
        r = expect(
            http.post(
                "/api/create",
                json={
                    "model": "tiny",
                    "files": {"model.gguf": digest},
                    "template": TEMPLATE,
                    "system": "Be terse.",
                    "license": ["MIT", "Apache-2.0"],
                    "parameters": {"temperature": 0.2, "stop": ["<|im_end|>"], "num_ctx": 256},
                    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                },
            ),
            200,
        )
        assert r.headers["content-type"].startswith("application/x-ndjson")
        statuses = [json.loads(line)["status"] for line in r.text.splitlines()]
        assert len(statuses) >= 3 and statuses[-1] == "success", statuses
        r = expect(
            http.post(
                "/api/create", json={"model": "user/derived:v1", "from": "tiny", "system": "Other.", "stream": False}
            ),
            200,
        )
        assert r.json() == {"status": "success"}
        streamed = list(client.create(model="auto", files={"model.gguf": digest}, stream=True))  # ollama client, hooked
        assert streamed[-1].status == "success"

        # list, show, ps, estimate
        assert {m["name"] for m in expect(http.get("/api/tags"), 200).json()["models"]} == {
            "tiny:latest",
            "user/derived:v1",
            "auto:latest",
        }
        shown = expect(http.post("/api/show", json={"model": "tiny"}), 200).json()
        assert shown["details"]["family"] == "llama" and shown["license"] == "MIT\nApache-2.0"
        expect(http.post("/api/show", json={"model": "user/derived:v1", "verbose": True, "system": "Shown."}), 200)
        assert client.show("auto").modelfile
        client.list()
        client.ps()
        expect(http.post("/api/pollama/estimate", json={"model": "tiny", "options": {"num_ctx": 128}}), 200)

        # copy and delete answer 200 with an empty body
        assert expect(http.post("/api/copy", json={"source": "tiny", "destination": "tiny-copy"}), 200).content == b""
        assert expect(http.request("DELETE", "/api/delete", json={"model": "tiny-copy"}), 200).content == b""
        client.copy("auto", "auto2")
        client.delete("auto2")

        # errors are {"error": "..."} with the documented status
        expect(http.post("/api/show", json={"model": "ghost"}), 404)
        expect(http.post("/api/show", json={}), 400)
        expect(http.post("/api/show", content=b""), 400)
        expect(http.post("/api/show", content=b"{nope"), 400)
        expect(http.post("/api/create", json={"model": "m"}), 400)
        expect(http.post("/api/create", json={"model": "bad name", "from": "tiny"}), 400)
        expect(http.post("/api/create", json={"model": "m", "files": {"../x.gguf": digest}}), 400)
        expect(http.post("/api/copy", json={"source": "ghost", "destination": "x"}), 404)
        expect(http.post("/api/copy", json={"source": "../x", "destination": "y"}), 400)
        expect(http.request("DELETE", "/api/delete", json={"model": "ghost"}), 404)
        expect(http.request("DELETE", "/api/delete", json={"model": "a/../b"}), 400)
        # not local, and its registry is not there (the 404 of a registry without it: test_remote_estimate)
        ghost = f"127.0.0.1:{free_port()}/library/ghost"
        expect(http.post("/api/pollama/estimate", json={"model": ghost, "insecure": True}), 502)
        expect(http.post("/api/pollama/estimate", json={}), 400)
        expect(http.get("/api/pollama/requests"), 200)
        expect(http.get("/api/pollama/requests", params={"since": "x"}), 400)
        expect(http.get("/api/pollama/logs", params={"level": "info"}), 200)
        expect(http.get("/api/pollama/logs", params={"level": "loud"}), 400)
        with pytest.raises(ollama.ResponseError):
            client.show("ghost")
        # Ollama's answers for a wrong method and an unknown path
        expect(http.get("/api/show"), 405)
        expect(http.get("/api/nothing-here"), 404)

    missing = MANAGEMENT - recorder.seen
    assert not missing, f"the scenario did not exercise: {sorted(missing)}"


def test_live_inference_without_a_runner(live_server: LiveServer, tiny_model_path: Path, spec: OpenAPISpec) -> None:
    """Generation routes where no runner is needed: rendering only, and the request errors."""
    recorder = RecordingSpec(spec)
    client = install_httpx_hook(ollama.Client(host=live_server.url), recorder)
    digest = client.create_blob(tiny_model_path)
    client.create(model="tiny", files={"model.gguf": digest}, template=TEMPLATE, stream=False)
    with recorder.client(live_server.url, timeout=60) as http:
        messages = [{"role": "user", "content": "hi"}]
        r = http.post(
            "/api/chat", json={"model": "tiny", "messages": messages, "_debug_render_only": True, "stream": False}
        )
        assert r.status_code == 200 and "_debug_info" in r.json(), r.text
        r = http.post("/api/generate", json={"model": "tiny", "prompt": "hi", "_debug_render_only": True})
        # Rendering only answers one JSON object even when streaming is on, as Ollama does.
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
        assert http.post("/api/generate", json={"model": "ghost", "prompt": "x"}).status_code == 404
        assert http.post("/api/generate", json={"model": "tiny", "prompt": "x", "top_logprobs": 21}).status_code == 400
        assert http.post("/api/chat", content=b"").status_code == 400
        assert http.post("/api/chat", json={"model": "ghost", "messages": messages}).status_code == 404
        assert http.post("/api/chat", json={"model": "tiny", "messages": messages, "think": "loud"}).status_code == 400
        assert http.post("/api/embed", json={"model": "ghost", "input": "x"}).status_code == 404
        assert http.post("/api/embed", json={"model": "tiny", "input": 5}).status_code == 400
        assert http.post("/api/embeddings", json={"model": "ghost", "prompt": "x"}).status_code == 404
    wanted = {
        ("POST", "/api/chat", 200),
        ("POST", "/api/generate", 200),
        ("POST", "/api/generate", 404),
        ("POST", "/api/generate", 400),
        ("POST", "/api/chat", 400),
        ("POST", "/api/chat", 404),
        ("POST", "/api/embed", 404),
        ("POST", "/api/embed", 400),
        ("POST", "/api/embeddings", 404),
    }
    assert wanted <= recorder.seen, sorted(wanted - recorder.seen)
