"""Bad request JSON and bad options, on every route that reads a JSON body, against a live server.

JSON Go's `encoding/json` refuses (NaN, Infinity, 1e999) and values nested past the
server's bound are a 400 JSON error on every route, never a 500 or an HTML page; what
is nested up to the bound reaches the code that walks it (JSON-schema checks, the
grammar converter, tool schemas and arguments in Go templates) and is answered. A bad
option is a 400 naming it, but only once the model is known: an unknown model is a 404
first, on the native, OpenAI and Anthropic routes alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from server.strictjson import MAX_DEPTH
from tests.server.api.test_openai_api import CHATML, TOOLS_TEMPLATE, create
from tests.support.live_server import LiveServer

USER = [{"role": "user", "content": "hi"}]

#: Every route that reads a JSON body, with a body it would otherwise accept (or answer
#: without a 5xx); `model` is filled in per test.
ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/show", {}),
    ("POST", "/api/create", {"from": "tiny"}),
    ("POST", "/api/copy", {"source": "tiny", "destination": "tiny-copy"}),
    ("DELETE", "/api/delete", {}),
    ("POST", "/api/pull", {}),
    ("POST", "/api/push", {}),
    ("POST", "/api/generate", {"prompt": "hi", "stream": False}),
    ("POST", "/api/chat", {"messages": USER, "stream": False}),
    ("POST", "/api/embed", {"input": "hi"}),
    ("POST", "/api/embeddings", {"prompt": "hi"}),
    ("POST", "/v1/chat/completions", {"messages": USER}),
    ("POST", "/v1/completions", {"prompt": "hi"}),
    ("POST", "/v1/embeddings", {"input": "hi"}),
    ("POST", "/v1/responses", {"input": "hi"}),
    ("POST", "/v1/messages", {"max_tokens": 4, "messages": USER}),
    ("POST", "/api/pollama/estimate", {}),
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, bert_model_path: Path
) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("request-json") / "models"
    srv = LiveServer(models, env={"OLLAMA_KEEP_ALIVE": "5m"}).start()
    try:
        client = ollama.Client(host=srv.url)
        create(client, "tiny", tiny_model_path, template=CHATML)
        create(client, "tiny-tools", tiny_model_path, template=TOOLS_TEMPLATE)
        create(client, "bert", bert_model_path)
        yield srv
    finally:
        srv.stop()


def error_of(r: httpx.Response) -> str:
    """The error message in the route's own shape (native, OpenAI or Anthropic)."""
    assert r.headers["content-type"].startswith("application/json"), (r.status_code, r.text[:300])
    error = r.json()["error"]
    return error if isinstance(error, str) else error["message"]


def send(server: LiveServer, method: str, path: str, raw: str | bytes) -> httpx.Response:
    return httpx.request(
        method, server.url + path, content=raw, headers={"content-type": "application/json"}, timeout=120
    )


def nested(depth: int, kind: str = "array") -> str:
    """`depth` levels of arrays or objects around a 1."""
    if kind == "array":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def body_with(route_body: dict[str, Any], model: str, field: str) -> str:
    """The route's body as JSON text with `"x": <field>` spliced in, `field` being raw JSON text."""
    text = json.dumps({"model": model, **route_body})
    return text[:-1] + f',"x":{field}' + "}"


@pytest.mark.parametrize("depth", [1_000, 10_000, 100_000])
def test_deeply_nested_json_is_a_400_on_every_route(server: LiveServer, depth: int) -> None:
    for i, (method, path, body) in enumerate(ROUTES):
        kind = "array" if i % 2 else "object"
        for raw in (body_with(body, "tiny", nested(depth, kind)), nested(depth, kind)):
            r = send(server, method, path, raw)
            assert r.status_code == 400, (path, depth, r.status_code, r.text[:300])
            assert "exceeded max depth" in error_of(r), (path, r.text[:300])
    assert httpx.get(server.url + "/api/tags", timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("NaN", "invalid character 'N' looking for beginning of value"),
        ("Infinity", "invalid character 'I' looking for beginning of value"),
        ("-Infinity", "invalid character 'I' in numeric literal"),
        ("1e999", "number 1e999 is out of range"),
        ("-1e999", "number -1e999 is out of range"),
        ("1" + "0" * 400, "number out of range"),
    ],
)
def test_non_finite_numbers_are_refused_on_every_route(server: LiveServer, literal: str, message: str) -> None:
    for method, path, body in ROUTES:
        r = send(server, method, path, body_with(body, "tiny", literal))
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert message in error_of(r), (path, r.text[:300])
    # where it means something: a sampling option, an OpenAI sampling field
    generate = f'{{"model":"tiny","prompt":"hi","stream":false,"options":{{"temperature":{literal}}}}}'
    r = send(server, "POST", "/api/generate", generate)
    assert r.status_code == 400 and message in error_of(r)
    chat = f'{{"model":"tiny","messages":[{{"role":"user","content":"hi"}}],"temperature":{literal}}}'
    r = send(server, "POST", "/v1/chat/completions", chat)
    assert r.status_code == 400 and message in error_of(r)


def deep_schema(levels: int) -> dict[str, Any]:
    """An array schema `levels` deep: one JSON level each (jsonschema walks ~8 frames a level)."""
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema, "maxItems": 1}
    return schema


def deep_value(levels: int) -> Any:
    """`levels` levels of JSON, objects and arrays in turn."""
    value: Any = 1
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


def test_walkers_take_what_the_parser_lets_through_and_no_more(server: LiveServer) -> None:
    """At the bound, a format schema, tool schemas and tool-call arguments reach jsonschema,
    the GBNF converter and the Go template and are answered; past it (where those walkers
    ran out of stack, a 500) the parser refuses them."""
    url = server.url
    small = {"num_predict": 2, "temperature": 0}
    for levels, ok in ((MAX_DEPTH - 2, True), (120, False)):
        fmt = {"model": "tiny", "prompt": "x", "stream": False, "format": deep_schema(levels), "options": small}
        r = httpx.post(url + "/api/generate", json=fmt, timeout=120)
        assert r.status_code == (200 if ok else 400), (levels, r.text[:300])
        if not ok:
            assert "exceeded max depth" in error_of(r)
    # tool parameters (rendered by the Go template as JSON) and a call's arguments, natively...
    tool = {"type": "function", "function": {"name": "f", "parameters": deep_schema(MAX_DEPTH - 6)}}
    call = {"function": {"name": "f", "arguments": {"v": deep_value(MAX_DEPTH - 8)}}}
    chat = {
        "model": "tiny-tools",
        "stream": False,
        "tools": [tool],
        "messages": [*USER, {"role": "assistant", "content": "", "tool_calls": [call]}, *USER],
        "options": small,
    }
    r = httpx.post(url + "/api/chat", json=chat, timeout=120)
    assert r.status_code == 200, r.text[:300]
    # ...and through OpenAI, where arguments arrive as a JSON string the server parses itself
    for levels, ok in ((MAX_DEPTH - 1, True), (100_000, False)):
        arguments = nested(levels) if levels > 1000 else json.dumps({"v": deep_value(levels - 1)})
        openai_call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        for path, extra in (
            ("/v1/chat/completions", {"max_tokens": 2}),
            ("/api/chat", {"stream": False, "options": small}),
        ):
            body = {
                "model": "tiny-tools",
                "messages": [*USER, {"role": "assistant", "content": "", "tool_calls": [openai_call]}, *USER],
                **extra,
            }
            r = httpx.post(url + path, json=body, timeout=120)
            assert r.status_code == (200 if ok else 400), (path, levels, r.text[:300])
            if not ok:
                assert "exceeded max depth" in error_of(r), r.text[:300]


BAD_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("/api/generate", {"prompt": "hi", "stream": False, "options": {"num_ctx": "big"}}, 'option "num_ctx"'),
    ("/api/generate", {"prompt": "hi", "stream": False, "options": {"num_batch": 0}}, "num_batch"),
    ("/api/generate", {"prompt": "hi", "stream": False, "options": {"top_k": [1]}}, 'option "top_k"'),
    ("/api/chat", {"messages": USER, "stream": False, "options": {"stop": "x"}}, 'option "stop"'),
    ("/api/chat", {"messages": USER, "stream": False, "options": {"temperature": "hot"}}, 'option "temperature"'),
    ("/api/embed", {"input": "hi", "options": {"num_ctx": -1}}, "num_ctx"),
    ("/api/embed", {"input": "hi", "options": {"use_mmap": "yes"}}, 'option "use_mmap"'),
    ("/api/embeddings", {"prompt": "hi", "options": {"num_thread": "many"}}, 'option "num_thread"'),
    ("/v1/chat/completions", {"messages": USER, "temperature": "hot"}, "'temperature'"),
    ("/v1/chat/completions", {"messages": USER, "stop": 5}, "'stop'"),
    ("/v1/chat/completions", {"messages": USER, "max_tokens": -9}, "'max_tokens'"),
    ("/v1/completions", {"prompt": "hi", "seed": "x"}, "'seed'"),
    ("/v1/responses", {"input": "hi", "top_p": []}, "'top_p'"),
    ("/v1/responses", {"input": "hi", "max_output_tokens": -5}, "'max_output_tokens'"),
    ("/v1/messages", {"max_tokens": 4, "messages": USER, "top_k": "x"}, "'top_k'"),
    ("/v1/messages", {"max_tokens": 4, "messages": USER, "stop_sequences": [1]}, "'stop_sequences'"),
]


@pytest.mark.parametrize(("path", "body", "named"), BAD_OPTIONS)
def test_a_bad_option_is_a_400_naming_it_after_the_model(
    server: LiveServer, path: str, body: dict[str, Any], named: str
) -> None:
    ghost = httpx.post(server.url + path, json={"model": "ghost", **body}, timeout=60)
    assert ghost.status_code == 404, ghost.text[:300]
    model = "bert" if "embed" in path else "tiny"
    r = httpx.post(server.url + path, json={"model": model, **body}, timeout=60)
    assert r.status_code == 400, r.text[:300]
    assert named in error_of(r)


@pytest.mark.parametrize("effort", [{"level": "high"}, ["high"], 3, True])
def test_reasoning_effort_of_the_wrong_type_is_a_400(server: LiveServer, effort: Any) -> None:
    """A dict or list once reached a dict lookup (`unhashable type`, 500)."""
    r = httpx.post(
        server.url + "/v1/responses", json={"model": "tiny", "input": "hi", "reasoning": {"effort": effort}}, timeout=60
    )
    assert r.status_code == 400 and "effort" in error_of(r), r.text[:300]
    r = httpx.post(
        server.url + "/v1/messages",
        json={"model": "tiny", "max_tokens": 4, "messages": USER, "output_config": {"effort": effort}},
        timeout=60,
    )
    assert r.status_code == 400 and "effort" in error_of(r), r.text[:300]


@pytest.mark.parametrize(
    ("options", "named"),
    [({"num_ctx": -4096}, "num_ctx"), ({"num_ctx": 0}, "num_ctx"), ({"num_batch": -512}, "num_batch")],
)
def test_estimate_refuses_values_that_make_sizes_negative(
    server: LiveServer, options: dict[str, Any], named: str
) -> None:
    r = httpx.post(server.url + "/api/pollama/estimate", json={"model": "tiny", "options": options}, timeout=60)
    assert r.status_code == 400 and named in error_of(r), r.text[:300]
    # and what it does accept never comes out negative, however large
    for huge in ({"num_ctx": 2**63}, {"num_batch": 2**63}, {"num_ctx": 1, "num_batch": 2**31}):
        est = httpx.post(server.url + "/api/pollama/estimate", json={"model": "tiny", "options": huge}, timeout=60)
        assert est.status_code == 200, est.text
        sizes = est.json()
        assert min(sizes["weights"], sizes["kv_cache"], sizes["compute"], sizes["total"]) >= 0
        assert 4 <= sizes["context_length"] <= 2048  # the tiny model's trained context
