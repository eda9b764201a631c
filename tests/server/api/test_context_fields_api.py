"""The context length from the `/v1` routes (`num_ctx`, LM Studio's `context_length`, native
`options` as extra fields) and truncation that is never silent: `truncated_messages` /
`truncated_tokens` on native answers, `X-Pollama-Truncated-*` headers on whole `/v1` answers
and the same counts on a `/v1` stream's finishing chunk. Real clients, a live server, tiny models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.server.api.test_openai_api import CHATML, create
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.openapi_validate

WORDS = "hello world how are you today " * 8  # ~50 tokens a message
LONG_CHAT: list[Any] = [
    {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i} {WORDS}"} for i in range(9)
]  # ~450 tokens: over a 256-token context


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("context") / "models"
    srv = LiveServer(models, env={"OLLAMA_KEEP_ALIVE": "5m"}).start()
    try:
        create(ollama.Client(host=srv.url), "tiny", tiny_model_path, template=CHATML)
        # Anthropic's body has no context field: a model whose Modelfile sets it
        create(ollama.Client(host=srv.url), "tiny-256", tiny_model_path, template=CHATML, parameters={"num_ctx": 256})
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="pollama", max_retries=0)


def loaded_context(server: LiveServer) -> int:
    (entry,) = ollama.Client(host=server.url).ps().models
    return int(entry.context_length or 0)


def test_num_ctx_and_context_length_as_extra_fields(server: LiveServer, client: openai.OpenAI) -> None:
    say = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="tiny", messages=say, max_tokens=1, extra_body={"num_ctx": 512})
    assert loaded_context(server) == 512
    client.chat.completions.create(model="tiny", messages=say, max_tokens=1, extra_body={"context_length": 768})
    assert loaded_context(server) == 768
    client.completions.create(model="tiny", prompt="hi", max_tokens=1, extra_body={"options": {"num_ctx": 640}})
    assert loaded_context(server) == 640
    # the top-level field wins over `options`, and `options` carries any native option
    client.responses.create(
        model="tiny", input="hi", max_output_tokens=1, extra_body={"num_ctx": 896, "options": {"num_ctx": 1}}
    )
    assert loaded_context(server) == 896
    seeded = [
        client.completions.create(
            model="tiny", prompt="hi", max_tokens=6, temperature=1.5, extra_body={"options": {"seed": 3, "top_k": 1}}
        )
        .choices[0]
        .text
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1]  # top_k 1 is greedy whatever the temperature


def test_bad_native_fields_are_400(client: openai.OpenAI) -> None:
    say = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError, match="num_ctx"):
        client.chat.completions.create(model="tiny", messages=say, extra_body={"num_ctx": "big"})
    with pytest.raises(openai.BadRequestError, match="'options'"):
        client.chat.completions.create(model="tiny", messages=say, extra_body={"options": [1]})
    with pytest.raises(openai.NotFoundError):  # the model is looked up first, as for native options
        client.chat.completions.create(model="nope", messages=say, extra_body={"num_ctx": 0})


def test_dropped_messages_are_reported_everywhere(server: LiveServer, client: openai.OpenAI) -> None:
    native = httpx.post(
        server.url + "/api/chat",
        json={"model": "tiny", "messages": LONG_CHAT, "stream": False, "options": {"num_ctx": 256, "num_predict": 1}},
        timeout=60,
    ).json()
    dropped = native.get("truncated_messages")
    assert isinstance(dropped, int) and 0 < dropped < len(LONG_CHAT)
    whole = client.chat.completions.with_raw_response.create(
        model="tiny", messages=LONG_CHAT, max_tokens=1, extra_body={"num_ctx": 256}
    )
    assert whole.headers["X-Pollama-Truncated-Messages"] == str(dropped)
    assert "X-Pollama-Truncated-Tokens" not in whole.headers  # what is left fits: nothing else was cut
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=LONG_CHAT, max_tokens=1, stream=True, extra_body={"num_ctx": 256}
        )
    )
    finishing = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert (finishing.model_extra or {}).get("truncated_messages") == dropped
    assert all("truncated_messages" not in (c.model_extra or {}) for c in chunks if c is not finishing)
    fits = client.chat.completions.with_raw_response.create(
        model="tiny", messages=LONG_CHAT[-1:], max_tokens=1, extra_body={"num_ctx": 256}
    )
    assert not any(h.lower().startswith("x-pollama-truncated") for h in fits.headers)
    responses = client.responses.with_raw_response.create(
        model="tiny", input=LONG_CHAT, max_output_tokens=1, extra_body={"num_ctx": 256}
    )
    assert responses.headers["X-Pollama-Truncated-Messages"] == str(dropped)


def test_responses_and_anthropic_streams_report_it_too(server: LiveServer, client: openai.OpenAI) -> None:
    """The Responses stream on `response.completed`, Anthropic's on `message_delta`, a whole
    Anthropic message in the headers: the same count the native answer gives."""
    import anthropic

    native = httpx.post(
        server.url + "/api/chat",
        json={"model": "tiny", "messages": LONG_CHAT, "stream": False, "options": {"num_ctx": 256, "num_predict": 1}},
        timeout=60,
    ).json()
    dropped = native["truncated_messages"]
    events = list(
        client.responses.create(
            model="tiny", input=LONG_CHAT, max_output_tokens=1, stream=True, extra_body={"num_ctx": 256}
        )
    )
    completed = next(e for e in events if e.type == "response.completed")
    assert (completed.model_extra or {}).get("truncated_messages") == dropped
    assert all("truncated_messages" not in (e.model_extra or {}) for e in events if e is not completed)

    claude = anthropic.Anthropic(base_url=server.url, api_key="pollama", max_retries=0)
    messages: Any = LONG_CHAT[:-1] + [{"role": "user", "content": LONG_CHAT[-1]["content"]}]
    whole = claude.messages.with_raw_response.create(model="tiny-256", max_tokens=1, messages=messages)
    got = whole.headers["X-Pollama-Truncated-Messages"]
    assert int(got) > 0  # Anthropic's own message list: the count is that of its messages
    with claude.messages.stream(model="tiny-256", max_tokens=1, messages=messages) as stream:
        kinds = [(e.type, (e.model_extra or {}).get("truncated_messages")) for e in stream]
    assert ("message_delta", int(got)) in kinds
    assert [k for k in kinds if k[1] is not None] == [("message_delta", int(got))]
    short = claude.messages.with_raw_response.create(
        model="tiny-256", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
    )
    assert not any(h.lower().startswith("x-pollama-truncated") for h in short.headers)


def test_cut_prompt_tokens_are_reported(server: LiveServer, client: openai.OpenAI) -> None:
    prompt = WORDS * 3  # ~150 tokens into a 64-token context
    r = httpx.post(
        server.url + "/api/generate",
        json={"model": "tiny", "prompt": prompt, "stream": False, "options": {"num_ctx": 64, "num_predict": 1}},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    cut = body["truncated_tokens"]
    assert cut > 0 and body["prompt_eval_count"] + cut > 64
    whole = client.completions.with_raw_response.create(
        model="tiny", prompt=prompt, max_tokens=1, extra_body={"num_ctx": 64}
    )
    assert whole.headers["X-Pollama-Truncated-Tokens"] == str(cut)
    chunks = list(
        client.completions.create(model="tiny", prompt=prompt, max_tokens=1, stream=True, extra_body={"num_ctx": 64})
    )
    assert (chunks[-1].model_extra or {}).get("truncated_tokens") == cut
    short = httpx.post(
        server.url + "/api/generate",
        json={"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_ctx": 64, "num_predict": 1}},
        timeout=60,
    ).json()
    assert "truncated_tokens" not in short


def test_a_browser_app_may_read_the_truncation_headers(server: LiveServer) -> None:
    """fetch() hides every response header but the CORS-safelisted ones unless the server lists it
    in `Access-Control-Expose-Headers`: without that, a web app could never see the truncation."""
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "tiny", "messages": LONG_CHAT, "max_tokens": 1, "num_ctx": 256},
        headers={"Origin": "http://localhost:5173"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    sent = {h.lower() for h in r.headers if h.lower().startswith("x-pollama-truncated")}
    assert sent and sent <= exposed
    assert exposed == {"x-pollama-truncated-messages", "x-pollama-truncated-tokens"}
    same_origin = httpx.get(server.url + "/api/version", timeout=10)
    assert "Access-Control-Expose-Headers" not in same_origin.headers
