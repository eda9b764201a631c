"""The model's own tokenizer over HTTP: /api/tokenize, /api/detokenize, the token count of a
whole chat request (/api/pollama/count, and Anthropic's /v1/messages/count_tokens through the
`anthropic` SDK), against a live server with real runners and tiny random-weight models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import pytest

from tests.server.api.test_openai_api import CHATML, create
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.openapi_validate

# the tiny SentencePiece vocabulary: 1 = <s> (BOS), 3 = <|im_start|>, 4 = <|im_end|>
BOS = 1
IM_START = 3
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hello there, how are you"},
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, bert_model_path: Path
) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("tokens") / "models"
    srv = LiveServer(models, env={"OLLAMA_KEEP_ALIVE": "5m"}).start()
    try:
        client = ollama.Client(host=srv.url)
        create(client, "tiny", tiny_model_path, template=CHATML)
        create(client, "bert", bert_model_path)
        yield srv
    finally:
        srv.stop()


def post(server: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def test_tokenize_with_and_without_special_tokens(server: LiveServer) -> None:
    plain = post(server, "/api/tokenize", {"model": "tiny", "content": "hello world", "add_special": False})
    assert plain.status_code == 200, plain.text
    assert plain.json()["model"] == "tiny"
    tokens = plain.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens) and BOS not in tokens
    special = post(server, "/api/tokenize", {"model": "tiny", "content": "hello world"}).json()["tokens"]
    assert special == [BOS, *tokens]  # add_special defaults on: the model adds its BOS
    # control tokens written as text are parsed unless told otherwise
    parsed = post(server, "/api/tokenize", {"model": "tiny", "content": "<|im_start|>hi", "add_special": False})
    assert parsed.json()["tokens"][0] == IM_START
    literal = post(
        server,
        "/api/tokenize",
        {"model": "tiny", "content": "<|im_start|>hi", "add_special": False, "parse_special": False},
    )
    assert IM_START not in literal.json()["tokens"] and len(literal.json()["tokens"]) > 2


def test_tokenize_with_pieces_and_round_trip(server: LiveServer) -> None:
    text = "hello world, how are you"
    r = post(server, "/api/tokenize", {"model": "tiny", "content": text, "add_special": False, "with_pieces": True})
    assert r.status_code == 200, r.text
    pieces = r.json()["tokens"]
    assert all(set(p) == {"id", "piece"} for p in pieces)
    assert "".join(p["piece"] for p in pieces).replace("\u2581", " ").strip() == text
    back = post(server, "/api/detokenize", {"model": "tiny", "tokens": [p["id"] for p in pieces]})
    assert back.status_code == 200, back.text
    assert back.json() == {"model": "tiny", "content": back.json()["content"]}
    assert back.json()["content"].strip() == text


def test_bert_tokenizer_adds_cls_and_sep(server: LiveServer) -> None:
    with_special = post(server, "/api/tokenize", {"model": "bert", "content": "hello world"}).json()["tokens"]
    without = post(server, "/api/tokenize", {"model": "bert", "content": "hello world", "add_special": False}).json()[
        "tokens"
    ]
    assert len(with_special) == len(without) + 2
    assert with_special[1:-1] == without


def test_bad_token_ids_are_400_and_the_runner_lives(server: LiveServer) -> None:
    vocab = 1024  # the tiny preset's vocabulary
    for bad in (-1, vocab, 2**40):
        r = post(server, "/api/detokenize", {"model": "tiny", "tokens": [5, bad]})
        assert r.status_code == 400, r.text
        assert f"invalid token {bad} at index 1" in r.json()["error"]
    r = post(server, "/api/detokenize", {"model": "tiny", "tokens": [5, "x"]})
    assert r.status_code == 400 and "item 1 is string" in r.json()["error"]
    r = post(server, "/api/detokenize", {"model": "tiny", "tokens": [vocab - 1]})
    assert r.status_code == 200, r.text
    assert post(server, "/api/detokenize", {"model": "tiny", "tokens": []}).json()["content"] == ""


def test_tokenize_errors(server: LiveServer) -> None:
    r = post(server, "/api/tokenize", {"model": "nope", "content": "x"})
    assert r.status_code == 404 and "not found" in r.json()["error"]
    r = post(server, "/api/tokenize", {"content": "x"})
    assert r.status_code == 400 and r.json()["error"] == "model is required"
    r = post(server, "/api/tokenize", {"model": "tiny", "content": 3})
    assert r.status_code == 400 and "'content'" in r.json()["error"]


def test_count_is_the_prompt_chat_evaluates(server: LiveServer) -> None:
    count = post(server, "/api/pollama/count", {"model": "tiny", "messages": MESSAGES})
    assert count.status_code == 200, count.text
    body = count.json()
    chat = ollama.Client(host=server.url).chat(model="tiny", messages=MESSAGES, options={"num_predict": 1})
    assert body["tokens"] == chat.prompt_eval_count
    assert body == {"model": "tiny", "tokens": body["tokens"], "context_length": 2048}
    rendered = post(server, "/api/chat", {"model": "tiny", "messages": MESSAGES, "_debug_render_only": True}).json()
    prompt = rendered["_debug_info"]["rendered_template"]
    assert len(post(server, "/api/tokenize", {"model": "tiny", "content": prompt}).json()["tokens"]) == body["tokens"]


def test_count_errors(server: LiveServer) -> None:
    r = post(server, "/api/pollama/count", {"model": "bert", "messages": MESSAGES})
    assert r.status_code == 400 and "does not support chat" in r.json()["error"]
    r = post(server, "/api/pollama/count", {"model": "nope", "messages": MESSAGES})
    assert r.status_code == 404


def test_anthropic_sdk_count_tokens(server: LiveServer) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="pollama", max_retries=0)
    counted = client.messages.count_tokens(
        model="tiny", system="You are terse.", messages=[{"role": "user", "content": "hello there, how are you"}]
    )
    native = post(server, "/api/pollama/count", {"model": "tiny", "messages": MESSAGES}).json()
    assert counted.input_tokens == native["tokens"] > 0
    turns: list[Any] = [
        {"role": "user", "content": "hello there, how are you"},
        {"role": "assistant", "content": "fine"},
        {"role": "user", "content": [{"type": "text", "text": "and you"}]},
    ]
    longer = client.messages.count_tokens(model="tiny", messages=turns)
    flat = [{**t, "content": t["content"] if isinstance(t["content"], str) else "and you"} for t in turns]
    assert (
        longer.input_tokens == post(server, "/api/pollama/count", {"model": "tiny", "messages": flat}).json()["tokens"]
    )
    assert longer.input_tokens != counted.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="messages is required"):
        client.messages.count_tokens(model="tiny", messages=[])
