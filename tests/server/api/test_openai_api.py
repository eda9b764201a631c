"""The OpenAI-compatible API through the official `openai` SDKs (Python sync/async, and npm),
against a live `pollama serve` with real runners and tiny random-weight models.

Tool calls are real but deterministic: `tiny-tools` has a template with a
`.ToolCalls` branch that starts with `{`, so the server's tool-call parser
reads a JSON object naming a requested tool as a call; a JSON-schema
`response_format` (a grammar in the runner) makes the random model write
exactly such an object.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam
from openai.types.responses import FunctionToolParam
from openai.types.shared_params import ResponseFormatJSONSchema
from pydantic import BaseModel

from tests.server.api.test_sse_framing import check_openai_stream, check_responses_stream
from tests.support.live_server import LiveServer

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
TOOLS_TEMPLATE = (
    "{{- if .Tools }}<|im_start|>system\nYou can call these tools:{{ range .Tools }}\n{{ json .Function }}{{ end }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    '{{ if .ToolCalls }}{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}{{ end }}'
    "{{ else }}{{ .Content }}{{ end }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
THINK_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ if .Think }}<think>{{ end }}"
)
FIM_TEMPLATE = "{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ .Prompt }}{{ end }}"
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 7, "max_tokens": 12}
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something"}]
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# Forces the random model to write `{"name":"get_weather","arguments":{"city":…}}`.
CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"const": "get_weather"},
        "arguments": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Lyon"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
FORCE_CALL: ResponseFormatJSONSchema = {"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SCHEMA}}


_UPLOADED: dict[tuple[str, Path], str] = {}


def create(client: ollama.Client, name: str, path: Path, **kwargs: Any) -> None:
    """Create a model from a GGUF, uploading each file once per server.

    Re-posting a blob the server already has is answered before its body is
    read, which can leave the keep-alive connection unusable for the next
    request; uploading once sidesteps that (a native-API matter, not ours).
    """
    key = (str(client._client.base_url), path)
    if key not in _UPLOADED:
        _UPLOADED[key] = client.create_blob(path)
    client.create(model=name, files={"model.gguf": _UPLOADED[key]}, stream=False, **kwargs)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, bert_model_path: Path
) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("openai") / "models"
    srv = LiveServer(
        models, env={"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_MAX_LOADED_MODELS": "4"}
    ).start()
    try:  # a failed setup must still stop the server
        client = ollama.Client(host=srv.url)
        create(client, "tiny", tiny_model_path, template=CHATML)
        create(client, "tiny-tools", tiny_model_path, template=TOOLS_TEMPLATE)
        create(client, "tiny-think", tiny_model_path, template=THINK_TEMPLATE)
        create(client, "tiny-fim", tiny_model_path, template=FIM_TEMPLATE)
        create(client, "bert", bert_model_path)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="pollama", max_retries=0)


def sse(server: LiveServer, path: str, body: dict[str, Any]) -> bytes:
    r = httpx.post(server.url + path, json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    return r.content


# ----------------------------------------------------------------------------- chat


def test_chat_stream_and_not_agree_with_each_other_and_native(client: openai.OpenAI, server: LiveServer) -> None:
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, **GREEDY)
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert whole.system_fingerprint == "fp_ollama" and whole.model == "tiny"
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 12 and whole.usage.prompt_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 12

    parts = list(
        client.chat.completions.create(
            model="tiny", messages=MESSAGES, stream=True, stream_options={"include_usage": True}, **GREEDY
        )
    )
    assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices) == choice.message.content
    assert parts[-1].usage is not None and parts[-1].usage.completion_tokens == 12

    native = ollama.Client(host=server.url).chat(
        model="tiny", messages=MESSAGES, options={"temperature": 0, "top_p": 1.0, "seed": 7, "num_predict": 12}
    )
    assert native.message.content == choice.message.content, (
        "the translation asks the runner for exactly what /api/chat does"
    )


def test_chat_sse_framing_line_by_line(server: LiveServer) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "stream": True, **GREEDY}
    chunks = check_openai_stream(sse(server, "/v1/chat/completions", body), object_type="chat.completion.chunk")
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    body["stream_options"] = {"include_usage": True}
    chunks = check_openai_stream(
        sse(server, "/v1/chat/completions", body), object_type="chat.completion.chunk", include_usage=True
    )
    assert chunks[-1]["usage"]["completion_tokens"] == 12


def test_stop_string_and_list(client: openai.OpenAI) -> None:
    free = (
        client.chat.completions.create(model="tiny", messages=MESSAGES, **{**GREEDY, "max_tokens": 30})
        .choices[0]
        .message.content
    )
    assert free and len(free) > 6
    stop = free[3:6]
    for value in (stop, [stop, "never-appears"]):
        cut = client.chat.completions.create(
            model="tiny", messages=MESSAGES, stop=value, **{**GREEDY, "max_tokens": 30}
        )
        assert cut.choices[0].finish_reason == "stop"
        assert cut.choices[0].message.content == free[: free.index(stop)]


def run_text(client: openai.OpenAI, **kw: Any) -> str:
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=16, **kw)
    return r.choices[0].message.content or ""


def test_seed_temperature_top_p_pass_through(client: openai.OpenAI) -> None:
    a = run_text(client, temperature=1.0, seed=42)
    assert a == run_text(client, temperature=1.0, seed=42)
    assert len({run_text(client, temperature=1.5, seed=s, top_p=1.0) for s in range(4)}) > 1
    assert run_text(client, temperature=1.5, seed=3, top_p=1e-9) == run_text(client, temperature=0), (
        "top_p near 0 is greedy"
    )


def test_penalties_pass_through(client: openai.OpenAI) -> None:
    kw = {"temperature": 1.0, "seed": 42, "presence_penalty": 0.5, "frequency_penalty": 0.5}
    assert run_text(client, **kw) == run_text(client, **kw)


async def test_async_client(server: LiveServer) -> None:
    aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="pollama", max_retries=0)
    whole = await aclient.chat.completions.create(model="tiny", messages=MESSAGES, **GREEDY)
    stream = await aclient.chat.completions.create(model="tiny", messages=MESSAGES, stream=True, **GREEDY)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == whole.choices[0].message.content
    both = await asyncio.gather(
        *(
            aclient.chat.completions.create(model="tiny", messages=[{"role": "user", "content": p}], **GREEDY)
            for p in ("one", "two")
        )
    )
    assert all(r.choices[0].finish_reason == "length" for r in both)
    emb = await aclient.embeddings.create(model="bert", input="hello")
    assert len(emb.data[0].embedding) > 0
    assert [m.id async for m in aclient.models.list()]
    with pytest.raises(openai.NotFoundError):
        await aclient.chat.completions.create(model="ghost", messages=MESSAGES)
    await aclient.close()


def test_reasoning(client: openai.OpenAI, server: LiveServer) -> None:
    thinking = client.chat.completions.create(model="tiny-think", messages=MESSAGES, **GREEDY)
    message = thinking.choices[0].message
    assert getattr(message, "reasoning", None), "a thinking model thinks by default; exposed as `reasoning`"
    assert message.content == ""
    plain = client.chat.completions.create(model="tiny-think", messages=MESSAGES, reasoning_effort="none", **GREEDY)
    assert plain.choices[0].message.content and getattr(plain.choices[0].message, "reasoning", None) is None
    chunks = check_openai_stream(
        sse(
            server,
            "/v1/chat/completions",
            {"model": "tiny-think", "messages": MESSAGES, "stream": True, "reasoning_effort": "high", **GREEDY},
        ),
        object_type="chat.completion.chunk",
    )
    assert "".join(c["choices"][0]["delta"].get("reasoning", "") for c in chunks) == message.reasoning
    with pytest.raises(openai.BadRequestError, match="does not support thinking"):
        client.chat.completions.create(model="tiny", messages=MESSAGES, reasoning_effort="low", **GREEDY)


class Weather(BaseModel):
    city: Literal["Paris", "Lyon"]
    sunny: bool


def test_structured_output_parse_with_pydantic(client: openai.OpenAI) -> None:
    parsed = client.chat.completions.parse(
        model="tiny", messages=MESSAGES, response_format=Weather, temperature=0, max_tokens=200
    )
    message = parsed.choices[0].message
    assert isinstance(message.parsed, Weather), message.content
    assert parsed.choices[0].finish_reason == "stop"
    r = client.chat.completions.create(
        model="tiny", messages=MESSAGES, response_format={"type": "json_object"}, temperature=0, max_tokens=400
    )
    if r.choices[0].finish_reason == "stop":
        json.loads(r.choices[0].message.content or "")


def test_tool_call_round_trip(client: openai.OpenAI, server: LiveServer) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model="tiny-tools",
        messages=messages,
        tools=[WEATHER_TOOL],
        response_format=FORCE_CALL,
        temperature=0,
        max_tokens=200,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == ""
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    city = json.loads(call.function.arguments)["city"]
    assert city in ("Paris", "Lyon")

    messages.append(choice.message)  # the SDK's own message object, as its docs show
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'})
    second = client.chat.completions.create(model="tiny-tools", messages=messages, tools=[WEATHER_TOOL], **GREEDY)
    assert second.choices[0].finish_reason == "length"
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls

    # The assistant's call and the tool's answer reach the template in native form.
    wire = [messages[0], choice.message.model_dump(exclude_none=True), messages[2]]
    rendered = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "tiny-tools", "messages": wire, "tools": [WEATHER_TOOL], "_debug_render_only": True},
    ).json()
    prompt = rendered["_debug_info"]["rendered_template"]
    assert f'<|im_start|>assistant\n{{"name": "get_weather", "arguments": {{"city":"{city}"}}}}<|im_end|>' in prompt
    assert '<|im_start|>tool\n{"temperature": 21}<|im_end|>' in prompt
    assert '{"name":"get_weather","description":"Current weather in a city"' in prompt


def test_tool_call_streamed(server: LiveServer, client: openai.OpenAI) -> None:
    body = {
        "model": "tiny-tools",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER_TOOL],
        "response_format": FORCE_CALL,
        "temperature": 0,
        "max_tokens": 200,
        "stream": True,
    }
    chunks = check_openai_stream(sse(server, "/v1/chat/completions", body), object_type="chat.completion.chunk")
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert len(calls) == 1 and calls[0]["function"]["name"] == "get_weather" and calls[0]["index"] == 0
    assert json.loads(calls[0]["function"]["arguments"])["city"] in ("Paris", "Lyon")
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # The SDK's stream helper accumulates the streamed call into a final message.
    with client.chat.completions.stream(
        model="tiny-tools",
        messages=body["messages"],
        tools=[WEATHER_TOOL],
        response_format=FORCE_CALL,
        temperature=0,
        max_tokens=200,
    ) as stream:  # type: ignore[arg-type]
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"  # type: ignore[index]


# ----------------------------------------------------------------------------- completions


def test_completions(client: openai.OpenAI, server: LiveServer) -> None:
    whole = client.completions.create(model="tiny", prompt="Once upon", temperature=0, seed=7, max_tokens=10)
    assert whole.object == "text_completion" and whole.id.startswith("cmpl-")
    assert whole.choices[0].text and whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 10
    native = ollama.Client(host=server.url).generate(
        model="tiny",
        prompt="Once upon",
        options={
            "temperature": 0,
            "top_p": 1.0,
            "seed": 7,
            "num_predict": 10,
            "presence_penalty": 0,
            "frequency_penalty": 0,
        },
    )
    assert whole.choices[0].text == native.response
    parts = list(
        client.completions.create(model="tiny", prompt="Once upon", temperature=0, seed=7, max_tokens=10, stream=True)
    )
    assert "".join(p.choices[0].text for p in parts if p.choices) == whole.choices[0].text
    echo = client.completions.create(model="tiny", prompt="Once upon", temperature=0, seed=7, max_tokens=10, echo=True)
    assert echo.choices[0].text == "Once upon" + whole.choices[0].text
    raw = sse(
        server,
        "/v1/completions",
        {
            "model": "tiny",
            "prompt": "Once upon",
            "temperature": 0,
            "max_tokens": 10,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    chunks = check_openai_stream(raw, object_type="text_completion", include_usage=True)
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    with pytest.raises(openai.BadRequestError, match="does not support insert"):
        client.completions.create(model="tiny", prompt="def f(", suffix="return x", max_tokens=4)
    fim = client.completions.create(model="tiny-fim", prompt="def f(", suffix="return x", temperature=0, max_tokens=4)
    assert fim.choices[0].text and fim.choices[0].finish_reason == "length"
    rendered = httpx.post(
        server.url + "/v1/completions",
        json={"model": "tiny-fim", "prompt": "def f(", "suffix": "return x", "_debug_render_only": True},
    ).json()
    assert rendered["_debug_info"]["rendered_template"] == "<PRE> def f( <SUF>return x <MID>"


def test_completions_logprobs(client: openai.OpenAI) -> None:
    r = client.completions.create(model="tiny", prompt="abc", temperature=0, max_tokens=5, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens and len(lp.tokens) == len(lp.token_logprobs or []) == 5
    assert "".join(lp.tokens) == r.choices[0].text
    assert all(len(top) <= 2 for top in lp.top_logprobs or [])


# ----------------------------------------------------------------------------- embeddings


def test_embeddings_float_and_base64(client: openai.OpenAI, server: LiveServer) -> None:
    floats = client.embeddings.create(model="bert", input=["hello world", "goodbye"], encoding_format="float")
    assert floats.object == "list" and floats.model == "bert" and [d.index for d in floats.data] == [0, 1]
    assert floats.usage.prompt_tokens > 0 and floats.usage.total_tokens == floats.usage.prompt_tokens
    decoded = client.embeddings.create(
        model="bert", input=["hello world", "goodbye"]
    )  # the SDK asks for base64 and decodes it
    # Separate requests batch differently; on a GPU that moves the last digits (about 1e-5).
    for a, b in zip(floats.data, decoded.data, strict=True):
        assert np.allclose(a.embedding, b.embedding, atol=1e-4)
        assert abs(float(np.linalg.norm(a.embedding)) - 1.0) < 1e-3
    raw = httpx.post(
        server.url + "/v1/embeddings",
        json={"model": "bert", "input": "hello world", "encoding_format": "base64"},
        timeout=60,
    ).json()
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vector, floats.data[0].embedding, atol=1e-4)
    short = client.embeddings.create(model="bert", input="hello world", dimensions=8, encoding_format="float")
    assert len(short.data[0].embedding) == 8
    native = ollama.Client(host=server.url).embed(model="bert", input="hello world")
    assert np.allclose(native.embeddings[0], floats.data[0].embedding, atol=1e-4)
    with pytest.raises(openai.BadRequestError, match="encoding_format"):
        client.embeddings.create(model="bert", input="x", encoding_format="hex")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="invalid input"):
        client.embeddings.create(model="bert", input=[])


# ----------------------------------------------------------------------------- models


def test_models_list_and_retrieve(client: openai.OpenAI, server: LiveServer) -> None:
    listed = {m.id: m for m in client.models.list()}
    assert {"tiny:latest", "tiny-tools:latest", "tiny-think:latest", "bert:latest"} <= set(listed)
    native = {m.model for m in ollama.Client(host=server.url).list().models}
    assert set(listed) == native
    entry = listed["tiny:latest"]
    assert entry.object == "model" and entry.owned_by == "library" and entry.created > 1_600_000_000
    got = client.models.retrieve("tiny")
    assert got.id == "tiny" and got.owned_by == "library" and got.created == entry.created
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("ghost")
    assert info.value.body == {
        "message": "model 'ghost' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    ollama.Client(host=server.url).copy("tiny", "me/tiny:v1")
    assert client.models.retrieve("me/tiny:v1").owned_by == "me"


async def test_models_empty_store_is_null(app_client: Any) -> None:
    r = await app_client.get("/v1/models")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert await r.get_json() == {"object": "list", "data": None}


# ----------------------------------------------------------------------------- responses


async def test_responses_body_encodings(app_client: Any) -> None:
    """Codex-style clients zstd-compress the body; it then gets the plain body's checks."""
    zstandard = pytest.importorskip("zstandard")

    async def post(body: bytes, encoding: str) -> tuple[int, Any]:
        r = await app_client.post(
            "/v1/responses", data=body, headers={"Content-Type": "application/json", "Content-Encoding": encoding}
        )
        return r.status_code, await r.get_json()

    packed = zstandard.ZstdCompressor().compress
    status, body = await post(packed(json.dumps({"model": "ghost", "input": "x"}).encode()), "zstd")
    assert status == 404 and "model 'ghost' not found" in body["error"]["message"]  # decoded and parsed
    status, body = await post(packed(b"[1]"), "zstd")
    assert status == 400 and body["error"]["message"] == "request body must be a JSON object, not list"
    status, body = await post(packed(b"{nope"), "zstd")
    assert status == 400 and body["error"]["message"].startswith("invalid JSON: ")
    status, body = await post(b"not zstd at all", "zstd")
    assert status == 400 and body["error"]["message"].startswith("invalid zstd body")
    status, body = await post(b"{}", "br")
    assert status == 415 and body["error"]["message"] == "unsupported Content-Encoding: br"


def test_responses_api(client: openai.OpenAI, server: LiveServer) -> None:
    r = client.responses.create(
        model="tiny", input="Say something", instructions="Be brief.", temperature=0, max_output_tokens=12
    )
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text and r.usage is not None and r.usage.output_tokens == 12
    chat = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something"}],
        temperature=0,
        max_tokens=12,
    )
    assert r.output_text == chat.choices[0].message.content
    with client.responses.stream(
        model="tiny", input="Say something", instructions="Be brief.", temperature=0, max_output_tokens=12
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == r.output_text
    check_responses_stream(
        sse(server, "/v1/responses", {"model": "tiny", "input": "x", "max_output_tokens": 5, "stream": True})
    )
    tool: FunctionToolParam = {
        "type": "function",
        "name": "get_weather",
        "parameters": WEATHER_TOOL["function"]["parameters"],
    }  # type: ignore[typeddict-item]  # deliberately without `strict`, which the SDK types as required
    called = client.responses.create(
        model="tiny-tools",
        input="Weather?",
        tools=[tool],
        text={"format": {"type": "json_schema", "name": "call", "schema": CALL_SCHEMA}},
        temperature=0,
        max_output_tokens=200,
    )
    calls = [item for item in called.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    answer = client.responses.create(
        model="tiny-tools",
        input=[
            {"role": "user", "content": "Weather?"},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "get_weather",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
        ],
        tools=[tool],
        temperature=0,
        max_output_tokens=8,
    )
    assert answer.output_text
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        client.responses.create(model="tiny", input="x", previous_response_id="resp_1")


# ----------------------------------------------------------------------------- errors


def test_an_unknown_v1_route_is_a_404_the_sdk_can_read(client: openai.OpenAI, server: LiveServer) -> None:
    """Not Ollama's plain `404 page not found`, which the SDK cannot parse into a message."""
    with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(POST /v1/chat/completion\)") as info:
        client.post("/chat/completion", body={"model": "tiny"}, cast_to=httpx.Response)
    assert info.value.status_code == 404
    assert info.value.body == {
        "message": "Invalid URL (POST /v1/chat/completion)",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(GET /v1/files\)"):
        client.files.list()
    for path in ("/api/nope", "/v1x", "/nope/v1/models"):  # outside /v1/ Ollama's plain text stays
        r = httpx.get(server.url + path)
        assert (r.status_code, r.text, r.headers["content-type"]) == (404, "404 page not found", "text/plain")


def test_errors_raise_typed_sdk_exceptions(client: openai.OpenAI, server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError, match="model 'ghost' not found"):
        client.chat.completions.create(model="ghost", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ghost", messages=MESSAGES, stream=True)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="ghost", prompt="x")
    with pytest.raises(openai.NotFoundError, match="try pulling it first"):
        client.embeddings.create(model="ghost", input="x")
    with pytest.raises(openai.BadRequestError, match=r"\[\] is too short - 'messages'") as info:
        client.chat.completions.create(model="tiny", messages=[])
    assert info.value.body == {
        "message": "[] is too short - 'messages'",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        client.chat.completions.create(model="tiny", messages=MESSAGES, tools=[WEATHER_TOOL])
    image = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    with pytest.raises(openai.BadRequestError, match="does not support vision"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": image}])  # type: ignore[misc,list-item]
    with pytest.raises(openai.BadRequestError, match="image URLs are not currently supported"):
        client.chat.completions.create(
            model="tiny",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
            ],
        )
    with pytest.raises(openai.BadRequestError, match="invalid type for 'temperature'"):
        client.chat.completions.create(model="tiny", messages=MESSAGES, temperature="hot")  # type: ignore[call-overload]  # deliberately the wrong type
    with pytest.raises(openai.BadRequestError, match="invalid message content type: float64"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": 2}])  # type: ignore[list-item,misc]  # deliberately the wrong type
    r = httpx.post(
        server.url + "/v1/chat/completions",
        content=b'{"model": "tiny", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    assert (
        r.status_code == 400
        and r.json()["error"]["type"] == "invalid_request_error"
        and "invalid JSON" in r.json()["error"]["message"]
    )
    r = httpx.post(server.url + "/v1/chat/completions", content=b"")
    assert r.status_code == 400 and r.json()["error"]["message"] == "missing request body"


def test_cors_preflight_for_browser_sdk(server: LiveServer) -> None:
    requested = "authorization,content-type,x-stainless-os,x-stainless-lang,x-stainless-package-version,x-stainless-runtime,x-stainless-runtime-version,x-stainless-arch,x-stainless-retry-count,x-stainless-timeout"
    headers = {
        "Origin": "http://localhost:5173",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": requested,
    }
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/messages"):
        r = httpx.options(server.url + path, headers=headers)
        assert r.status_code == 204, path
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
        assert set(requested.split(",")) <= allowed
        assert "POST" in r.headers["access-control-allow-methods"]
    r = httpx.post(
        server.url + "/v1/chat/completions",
        headers={"Origin": "http://localhost:5173"},
        json={"model": "tiny", "messages": MESSAGES, **GREEDY},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert (
        httpx.options(
            server.url + "/v1/chat/completions", headers={**headers, "Origin": "https://evil.example"}
        ).status_code
        == 403
    )


# ----------------------------------------------------------------------------- streams and runners


def test_disconnect_frees_the_slot(server: LiveServer, client: openai.OpenAI) -> None:
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        json={"model": "tiny", "messages": MESSAGES, "stream": True, "max_tokens": 10_000_000},
        timeout=60,
    ) as r:
        for _ in r.iter_lines():
            break
    aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="pollama", max_retries=0)

    async def both() -> list[str | None]:
        rs = await asyncio.gather(
            *(
                aclient.chat.completions.create(model="tiny", messages=[{"role": "user", "content": str(i)}], **GREEDY)
                for i in range(2)
            )
        )
        return [r.choices[0].finish_reason for r in rs]

    assert asyncio.run(asyncio.wait_for(both(), 60)) == ["length", "length"], "both parallel slots are free again"


def test_runner_killed_mid_stream_raises_api_error(server: LiveServer, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, stream=True, temperature=0, max_tokens=10_000_000
    )
    next(iter(stream))
    pids = server.runner_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    assert (
        client.chat.completions.create(model="tiny", messages=MESSAGES, **GREEDY).choices[0].finish_reason == "length"
    )


# ----------------------------------------------------------------------------- the npm package

NODE_DIR = Path(__file__).resolve().parents[2] / "node"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_openai_sdk(server: LiveServer) -> None:
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run tests/node/install.sh (npm ci) first"
    env = {**os.environ, "POLLAMA_URL": server.url, "CHAT_MODEL": "tiny", "EMBED_MODEL": "bert"}
    proc = subprocess.run(
        ["node", "openai_sdk.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["text"] and result["usage"]["completion_tokens"] == 12
    assert "tiny:latest" in result["models"] and result["dims"] > 0
    assert "not found" in result["notFound"]
    native = ollama.Client(host=server.url).chat(
        model="tiny", messages=MESSAGES, options={"temperature": 0, "top_p": 1.0, "seed": 7, "num_predict": 12}
    )
    assert result["text"] == native.message.content
