"""Reranking against a live server: /api/rerank, the Jina/Cohere /v1/rerank (through LiteLLM's
`rerank()`, in a cached venv of its own), a tiny random-weight BERT cross-encoder written by
tests/fixtures (rank pooling, classification head) running in the runner's batching engine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.server.api.test_openai_api import CHATML, create
from tests.support.litellm_venv import litellm_python
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.openapi_validate

QUERY = "what do cats eat"
DOCS = ["cats eat fish and mice", "the stock market fell today", "dogs like bones", "cats eat fish and mice"]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, bert_reranker_path: Path, bert_model_path: Path, tiny_model_path: Path
) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("rerank") / "models"
    srv = LiveServer(models, env={"OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_MAX_LOADED_MODELS": "3"}).start()
    try:
        client = ollama.Client(host=srv.url)
        create(client, "rr", bert_reranker_path)
        create(client, "bert", bert_model_path)
        create(client, "tiny", tiny_model_path, template=CHATML)
        yield srv
    finally:
        srv.stop()


def rerank(server: LiveServer, path: str = "/api/rerank", **body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json={"model": "rr", **body}, timeout=60)


def scores(server: LiveServer, query: str, docs: list[str]) -> dict[int, float]:
    r = rerank(server, query=query, documents=docs)
    assert r.status_code == 200, r.text
    return {e["index"]: e["relevance_score"] for e in r.json()["results"]}


def test_native_rerank_orders_every_document(server: LiveServer) -> None:
    r = rerank(server, query=QUERY, documents=DOCS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "rr"
    results = body["results"]
    assert sorted(e["index"] for e in results) == list(range(len(DOCS)))
    assert [e["relevance_score"] for e in results] == sorted((e["relevance_score"] for e in results), reverse=True)
    assert all(e["document"] == DOCS[e["index"]] for e in results)
    by_index = {e["index"]: e["relevance_score"] for e in results}
    assert by_index[0] == pytest.approx(by_index[3], abs=1e-6)  # the same pair, the same score
    assert len(set(round(s, 6) for s in by_index.values())) == 3  # different pairs, different scores
    top = rerank(server, query=QUERY, documents=DOCS, top_n=2, return_documents=False).json()["results"]
    assert top == [{k: v for k, v in e.items() if k != "document"} for e in results[:2]]


def test_a_pair_scores_the_same_alone_and_in_a_batch(server: LiveServer) -> None:
    together = scores(server, QUERY, DOCS)
    for i, doc in enumerate(DOCS):
        alone = scores(server, QUERY, [doc])[0]
        assert alone == pytest.approx(together[i], abs=1e-5), i  # sequences never mix in a decode
    other = scores(server, "stock prices and markets", DOCS)
    assert other != pytest.approx(together, abs=1e-6)  # the query is part of every pair


def test_show_reports_the_rerank_capability(server: LiveServer) -> None:
    client = ollama.Client(host=server.url)
    assert client.show("rr").capabilities == ["rerank"]
    assert client.show("bert").capabilities == ["embedding"]


def test_models_without_a_rank_head_are_400(server: LiveServer) -> None:
    for model in ("bert", "tiny"):
        r = rerank(server, model=model, query=QUERY, documents=DOCS)
        assert r.status_code == 400, r.text
        assert "does not support rerank" in r.json()["error"] and "classification head" in r.json()["error"]
    r = httpx.post(server.url + "/api/embed", json={"model": "rr", "input": "x"}, timeout=60)
    assert r.status_code == 400 and "reranker" in r.json()["error"]


def test_bad_requests(server: LiveServer) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"documents": DOCS}, "'query'"),
        ({"query": QUERY}, "'documents'"),
        ({"query": QUERY, "documents": "one"}, "'documents'"),
        ({"query": QUERY, "documents": ["a", 3]}, "document at index 1"),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n"),
    ]
    for body, words in cases:
        r = rerank(server, **body)
        assert r.status_code == 400 and words in r.json()["error"], (body, r.text)
    r = rerank(server, model="nope", query=QUERY, documents=DOCS)
    assert r.status_code == 404
    assert rerank(server, query=QUERY, documents=[]).json() == {"model": "rr", "results": []}


def test_long_documents_truncate_unless_told_not_to(server: LiveServer) -> None:
    long = "cats eat fish " * 400  # ~1200 tokens, over a 256-token context
    r = rerank(server, query=QUERY, documents=[long, "short"], options={"num_ctx": 256})
    assert r.status_code == 200, r.text
    r = rerank(server, query=QUERY, documents=[long, "short"], options={"num_ctx": 256}, truncate=False)
    assert r.status_code == 400 and "document 0" in r.json()["error"] and "context length (256)" in r.json()["error"]


def test_v1_rerank_shape(server: LiveServer) -> None:
    r = rerank(server, "/v1/rerank", query=QUERY, documents=[{"text": d} for d in DOCS], top_n=3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    assert len(body["results"]) == 3 and all("document" not in e for e in body["results"])
    native = rerank(server, query=QUERY, documents=DOCS).json()["results"][:3]
    assert [e["index"] for e in body["results"]] == [e["index"] for e in native]
    docs = rerank(server, "/v1/rerank", query=QUERY, documents=DOCS, return_documents=True).json()["results"]
    assert all(e["document"] == {"text": DOCS[e["index"]]} for e in docs)
    r = rerank(server, "/v1/rerank", model="bert", query=QUERY, documents=DOCS)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_litellm_rerank(server: LiveServer) -> None:
    """LiteLLM's `rerank()` with the Jina provider posts the Jina/Cohere body to `<api_base>/v1/rerank`;
    it runs in its own cached venv (tests/support/litellm_venv.py), so CI runs it too."""
    call = {
        "model": "rr",
        "custom_llm_provider": "jina_ai",
        "api_base": server.url,
        "api_key": "pollama",
        "query": QUERY,
        "documents": DOCS,
        "top_n": 2,
        "return_documents": True,
    }
    done = subprocess.run(
        [str(litellm_python()), str(Path(__file__).parents[2] / "support" / "litellm_rerank.py")],
        input=json.dumps(call),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    got = [(r["index"], r["relevance_score"], r["document"]["text"]) for r in json.loads(done.stdout)]
    native = rerank(server, query=QUERY, documents=DOCS, top_n=2).json()["results"]
    assert got == [(e["index"], pytest.approx(e["relevance_score"]), e["document"]) for e in native]
