"""Speculative decoding through the server: a model created with a draft (`draft_files`) and
prompt lookup (`draft_ngram`) answer exactly as plain decoding does, with the drafts counted
in the final chunk (pollama's `draft_count`, `draft_accepted_count`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.support.live_server import LiveServer

GREEDY = {"temperature": 0, "num_predict": 32, "num_gpu": 0}
EDIT = "Repeat after me: one two three four five six. one two three four five six. one two three"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, tiny_draft_model_path: Path
) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("speculative") / "models").start()
    client = ollama.Client(host=srv.url)
    model, draft = client.create_blob(tiny_model_path), client.create_blob(tiny_draft_model_path)
    client.create(model="tiny", files={"m.gguf": model}, stream=False)
    # the ollama client has no draft_files argument yet: the body as Ollama's `CreateRequest` takes it
    r = httpx.post(
        srv.url + "/api/create",
        json={"model": "tiny-drafted", "files": {"m.gguf": model}, "draft_files": {"d.gguf": draft}, "stream": False},
        timeout=60,
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    try:
        yield srv
    finally:
        srv.stop()


def final(server: LiveServer, route: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(server.url + route, json={**body, "stream": False}, timeout=120, trust_env=False)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_a_model_with_a_draft_generates_what_it_does_without(server: LiveServer) -> None:
    plain = final(server, "/api/generate", {"model": "tiny", "prompt": EDIT, "options": GREEDY})
    assert "draft_count" not in plain and "draft_accepted_count" not in plain
    drafted = final(server, "/api/generate", {"model": "tiny-drafted", "prompt": EDIT, "options": GREEDY})
    assert drafted["response"] == plain["response"] and drafted["context"] == plain["context"]
    assert drafted["draft_count"] > 0 and 0 <= drafted["draft_accepted_count"] <= drafted["draft_count"]
    off = final(
        server,
        "/api/generate",
        {"model": "tiny-drafted", "prompt": EDIT, "options": {**GREEDY, "draft_num_predict": 0}},
    )
    assert off["response"] == plain["response"] and "draft_count" not in off


def test_prompt_lookup_chat_answers_as_plain_chat(server: LiveServer) -> None:
    messages = [{"role": "user", "content": EDIT}]
    plain = final(server, "/api/chat", {"model": "tiny", "messages": messages, "options": GREEDY})
    lookup = final(
        server, "/api/chat", {"model": "tiny", "messages": messages, "options": {**GREEDY, "draft_ngram": 2}}
    )
    assert lookup["message"] == plain["message"]
    assert lookup["draft_count"] > 0 and lookup["draft_accepted_count"] <= lookup["draft_count"]


def test_draft_ngram_must_be_an_integer(server: LiveServer) -> None:
    r = httpx.post(
        server.url + "/api/generate",
        json={"model": "tiny", "prompt": "hi", "stream": False, "options": {"draft_ngram": "three"}},
        timeout=60,
        trust_env=False,
    )
    assert r.status_code == 400 and "draft_ngram" in r.json()["error"]
