"""The Anthropic Messages API through the official `anthropic` SDK (sync and async),
against a live `pollama serve` with real runners and tiny random-weight models.

Tool use is forced the same way as in test_openai_api: a template whose
`.ToolCalls` branch starts with `{`, and Anthropic's structured-output
`output_config.format` (a grammar in the runner) making the model write a
`{"name": "get_weather", "arguments": {...}}` object.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import pytest

from tests.server.api.test_openai_api import CALL_SCHEMA, CHATML, THINK_TEMPLATE, TOOLS_TEMPLATE, create
from tests.server.api.test_sse_framing import check_anthropic_stream
from tests.support.live_server import LiveServer

# This SDK generation no longer has temperature/top_p/top_k arguments; older clients
# still send them, and the server honours them, so the tests send them as extra body.
GREEDY: dict[str, Any] = {"max_tokens": 12, "extra_body": {"temperature": 0}}
ZERO = {"temperature": 0}
MESSAGES: list[Any] = [{"role": "user", "content": "Say something"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# Anthropic's structured outputs (`output_config.format`), sent as extra body so any SDK version can.
FORCE_CALL = {"format": {"type": "json_schema", "schema": CALL_SCHEMA}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("anthropic") / "models"
    srv = LiveServer(
        models, env={"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_MAX_LOADED_MODELS": "3"}
    ).start()
    try:  # a failed setup must still stop the server
        client = ollama.Client(host=srv.url)
        create(client, "tiny", tiny_model_path, template=CHATML)
        create(client, "tiny-tools", tiny_model_path, template=TOOLS_TEMPLATE)
        create(client, "tiny-think", tiny_model_path, template=THINK_TEMPLATE)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: LiveServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="pollama", max_retries=0)


def sse(server: LiveServer, body: dict[str, Any]) -> bytes:
    r = httpx.post(
        server.url + "/v1/messages",
        json=body,
        headers={"anthropic-version": "2023-06-01", "x-api-key": "x"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream") and r.headers["cache-control"] == "no-cache"
    return r.content


def text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_create_with_system_stream_and_not(client: anthropic.Anthropic, server: LiveServer) -> None:
    message = client.messages.create(model="tiny", system="Be brief.", messages=MESSAGES, **GREEDY)
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.model == "tiny" and message.stop_reason == "max_tokens"
    assert [b.type for b in message.content] == ["text"] and text_of(message)
    assert message.usage.output_tokens == 12 and message.usage.input_tokens > 0

    native = ollama.Client(host=server.url).chat(
        model="tiny",
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
        options={"temperature": 0, "num_predict": 12},
    )
    assert text_of(message) == native.message.content

    events = list(
        client.messages.create(
            model="tiny",
            system=[{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
            messages=MESSAGES,
            stream=True,
            **GREEDY,
        )
    )
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    streamed = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert streamed == text_of(message)
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "max_tokens" and delta.usage.output_tokens == 12

    raw = check_anthropic_stream(
        sse(
            server,
            {"model": "tiny", "system": "Be brief.", "messages": MESSAGES, "stream": True, "max_tokens": 12, **ZERO},
        )
    )
    assert "".join(e["delta"]["text"] for e in raw if e["type"] == "content_block_delta") == streamed
    # Counted as the runner evaluated them: a prompt already in the slot's cache counts only its new tokens.
    assert 0 < raw[-2]["usage"]["input_tokens"] <= message.usage.input_tokens


def test_stream_helper_accumulates_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="tiny", messages=MESSAGES, **GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == text_of(final)
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 12


def test_stop_sequences_top_k_top_p(client: anthropic.Anthropic) -> None:
    free = text_of(client.messages.create(model="tiny", messages=MESSAGES, max_tokens=30, extra_body=ZERO))
    stop = free[3:6]
    cut = client.messages.create(
        model="tiny", messages=MESSAGES, max_tokens=30, stop_sequences=["never seen", stop], extra_body=ZERO
    )
    assert text_of(cut) == free[: free.index(stop)]
    # Anthropic's own answer; Ollama says end_turn and null here
    assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", stop)
    with client.messages.stream(
        model="tiny", messages=MESSAGES, max_tokens=30, stop_sequences=[stop], extra_body=ZERO
    ) as stream:
        streamed = stream.get_final_message()
    assert (streamed.stop_reason, streamed.stop_sequence, text_of(streamed)) == ("stop_sequence", stop, text_of(cut))
    a = client.messages.create(
        model="tiny", messages=MESSAGES, max_tokens=16, extra_body={"temperature": 1.0, "top_k": 1, "top_p": 0.5}
    )
    assert text_of(a) == text_of(
        client.messages.create(model="tiny", messages=MESSAGES, max_tokens=16, extra_body=ZERO)
    ), "top_k=1 is greedy"


def test_tool_use_and_tool_result_round_trip(client: anthropic.Anthropic, server: LiveServer) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.messages.create(
        model="tiny-tools",
        messages=[question],
        tools=[WEATHER_TOOL],
        max_tokens=200,
        extra_body={"output_config": FORCE_CALL, **ZERO},
    )  # type: ignore[list-item]
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather" and use.id.startswith("call_")
    assert use.input in ({"city": "Paris"}, {"city": "Lyon"})

    turns = [
        question,
        {"role": "assistant", "content": first.content},  # the SDK's own blocks, sent back
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 degrees"},
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]
    answer = client.messages.create(
        model="tiny-tools", system="You are helpful.", messages=turns, tools=[WEATHER_TOOL], **GREEDY
    )  # type: ignore[arg-type,list-item]
    assert answer.stop_reason == "max_tokens" and text_of(answer)

    wire = [
        question,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        turns[2],
    ]
    rendered = httpx.post(
        server.url + "/v1/messages",
        json={
            "model": "tiny-tools",
            "max_tokens": 5,
            "messages": wire,
            "tools": [WEATHER_TOOL],
            "_debug_render_only": True,
        },
    ).json()
    prompt = rendered["_debug_info"]["rendered_template"]
    city = use.input["city"]  # type: ignore[index]
    assert (
        f'<|im_start|>assistant\n{{"name": "get_weather", "arguments": {{"city":"{city}"}}}}<|im_end|>\n<|im_start|>tool\nsunny, 21 degrees<|im_end|>\n<|im_start|>user\nThanks!<|im_end|>'
        in prompt
    )

    events = check_anthropic_stream(
        sse(
            server,
            {
                "model": "tiny-tools",
                "messages": [question],
                "tools": [WEATHER_TOOL],
                "output_config": FORCE_CALL,
                "temperature": 0,
                "max_tokens": 200,
                "stream": True,
            },
        )
    )
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["tool_use"] and starts[0]["input"] == {}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    with client.messages.stream(
        model="tiny-tools",
        messages=[question],
        tools=[WEATHER_TOOL],
        max_tokens=200,
        extra_body={"output_config": FORCE_CALL, **ZERO},
    ) as stream:  # type: ignore[list-item]
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["tool_use"] and final.content[0].input == use.input  # type: ignore[union-attr]


def test_thinking(client: anthropic.Anthropic, server: LiveServer) -> None:
    thought = client.messages.create(
        model="tiny-think", messages=MESSAGES, thinking={"type": "enabled", "budget_tokens": 1024}, **GREEDY
    )
    assert [b.type for b in thought.content] == ["thinking"] and thought.content[0].thinking  # type: ignore[union-attr]
    plain = client.messages.create(model="tiny-think", messages=MESSAGES, thinking={"type": "disabled"}, **GREEDY)
    assert [b.type for b in plain.content] == ["text"]
    events = check_anthropic_stream(
        sse(
            server,
            {
                "model": "tiny-think",
                "messages": MESSAGES,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "stream": True,
                "max_tokens": 12,
                **ZERO,
            },
        )
    )
    assert [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"] == ["thinking"]
    assert (
        "".join(e["delta"]["thinking"] for e in events if e["type"] == "content_block_delta")
        == thought.content[0].thinking
    )  # type: ignore[union-attr]
    # A model that cannot think: thinking is dropped silently, not a 400 as on /api/chat.
    assert text_of(
        client.messages.create(
            model="tiny", messages=MESSAGES, thinking={"type": "enabled", "budget_tokens": 1024}, **GREEDY
        )
    )


def test_an_unknown_messages_route_is_a_404_in_anthropics_shape(client: anthropic.Anthropic) -> None:
    """The batches API is not served: the SDK must still read why (count_tokens is served)."""
    with pytest.raises(anthropic.NotFoundError, match="GET /v1/messages/batches is not a route") as info:
        client.messages.batches.list()
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"] == {
        "type": "not_found_error",
        "message": "GET /v1/messages/batches is not a route of the Messages API",
    }
    assert info.value.response.headers["request-id"] == body["request_id"]
    with pytest.raises(anthropic.NotFoundError, match="POST /v1/messages/batches is not a route"):
        client.messages.batches.create(requests=[])


def test_errors_are_typed(client: anthropic.Anthropic, server: LiveServer) -> None:
    with pytest.raises(anthropic.NotFoundError, match="model 'ghost' not found") as nf:
        client.messages.create(model="ghost", messages=MESSAGES, **GREEDY)
    body = nf.value.body
    assert (
        isinstance(body, dict)
        and body["type"] == "error"
        and body["error"] == {"type": "not_found_error", "message": "model 'ghost' not found"}
    )
    assert body["request_id"].startswith("req_")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="ghost", messages=MESSAGES, stream=True, **GREEDY)
    with pytest.raises(anthropic.BadRequestError, match="max_tokens is required and must be positive"):
        client.messages.create(model="tiny", messages=MESSAGES, max_tokens=0)
    with pytest.raises(anthropic.BadRequestError, match="messages is required"):
        client.messages.create(model="tiny", messages=[], max_tokens=5)
    with pytest.raises(anthropic.BadRequestError, match="Only base64 images are supported"):
        client.messages.create(
            model="tiny",
            max_tokens=5,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}],
                }
            ],
        )
    with pytest.raises(anthropic.BadRequestError, match="does not support vision"):
        client.messages.create(
            model="tiny",
            max_tokens=5,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                        },
                        {"type": "text", "text": "what?"},
                    ],
                }
            ],
        )
    with pytest.raises(anthropic.BadRequestError, match="does not support tools"):
        client.messages.create(model="tiny", messages=MESSAGES, tools=[WEATHER_TOOL], **GREEDY)  # type: ignore[list-item]
    with pytest.raises(anthropic.BadRequestError, match="invalid type for 'temperature'"):
        client.messages.create(model="tiny", messages=MESSAGES, max_tokens=5, extra_body={"temperature": "hot"})
    r = httpx.post(server.url + "/v1/messages", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"


async def test_async_client(server: LiveServer) -> None:
    aclient = anthropic.AsyncAnthropic(base_url=server.url, api_key="pollama", max_retries=0)
    whole = await aclient.messages.create(model="tiny", messages=MESSAGES, **GREEDY)
    async with aclient.messages.stream(model="tiny", messages=MESSAGES, **GREEDY) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == text_of(whole)
    both = await asyncio.gather(
        *(
            aclient.messages.create(model="tiny", messages=[{"role": "user", "content": p}], **GREEDY)
            for p in ("a", "b")
        )
    )
    assert all(m.stop_reason == "max_tokens" for m in both)
    with pytest.raises(anthropic.NotFoundError):
        await aclient.messages.create(model="ghost", messages=MESSAGES, **GREEDY)
    await aclient.close()


def test_runner_killed_mid_stream_raises(client: anthropic.Anthropic, server: LiveServer) -> None:
    stream = client.messages.create(
        model="tiny", messages=MESSAGES, max_tokens=10_000_000, stream=True, extra_body=ZERO
    )
    events = iter(stream)
    next(events)
    next(events)
    for pid in server.runner_pids():
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(anthropic.APIStatusError) as info:
        for _ in events:
            pass
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "api_error"
    assert client.messages.create(model="tiny", messages=MESSAGES, **GREEDY).stop_reason == "max_tokens"
