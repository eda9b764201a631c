"""SSE framing and the stream converters, checked without a runner.

The helpers at the top (`split_frames`, `check_*_stream`) are the line-by-line
framing checks the live SDK tests (test_openai_api, test_anthropic_api) run
on every stream they read from a real server. Below them, the converters are
fed scripted event sequences — the typed events `Inference.chat/generate`
yield (`server.inference.events`) — so every branch of the stream mapping (role on the first chunk only,
thinking/content split, finish and usage chunks, block indices, stop reasons)
is pinned down exactly, and the HTTP layer is driven with a scripted
inference service to cover what a real runner rarely does (fail mid-stream).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.api.compat import anthropic as an
from server.api.compat import openai as oa
from server.api.compat.responses import ResponsesStream, responses_request
from server.api.sse import DONE, frame
from server.errors import NotFound, PollamaError
from server.inference.events import Embeddings, Event, Final, Piece, Stats
from server.prompt import ToolCall, ToolCallFunction

# ----------------------------------------------------------------------------- framing checks


def split_frames(raw: bytes) -> list[tuple[str | None, str]]:
    """Strictly parse an SSE body into (event, data) pairs.

    Every frame must be `data: <payload>` or `event: <name>` + `data: <payload>`,
    each line ending in a single `\\n` and each frame followed by one blank
    line; nothing else (no comments, no CR, no multi-line data) is allowed.
    """
    text = raw.decode("utf-8")
    assert "\r" not in text
    assert text.endswith("\n\n"), text[-200:]
    frames: list[tuple[str | None, str]] = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        if len(lines) == 1:
            assert lines[0].startswith("data: "), block
            frames.append((None, lines[0][len("data: ") :]))
        else:
            assert len(lines) == 2, block
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
            frames.append((lines[0][len("event: ") :], lines[1][len("data: ") :]))
    return frames


def check_openai_stream(raw: bytes, *, object_type: str, include_usage: bool = False) -> list[dict[str, Any]]:
    """OpenAI chat/completions framing (Ollama's `middleware/openai.go` `ChatWriter`, `CompleteWriter`); returns the JSON chunks."""
    frames = split_frames(raw)
    assert all(event is None for event, _ in frames)
    assert frames[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in frames[:-1]]
    assert chunks
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1
    prefix = "chatcmpl-" if object_type == "chat.completion.chunk" else "cmpl-"
    assert ids.pop().startswith(prefix)
    for c in chunks:
        assert c["object"] == object_type
        assert c["system_fingerprint"] == "fp_ollama"
        assert isinstance(c["created"], int) and isinstance(c["model"], str)
    with_choices = [c for c in chunks if c["choices"]]
    if include_usage:
        tail = chunks[-1]
        assert tail["choices"] == [] and set(tail["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
        assert tail["usage"]["total_tokens"] == tail["usage"]["prompt_tokens"] + tail["usage"]["completion_tokens"]
        assert with_choices == chunks[:-1]
    else:
        assert with_choices == chunks
        assert all("usage" not in c for c in chunks)
    finishes = [c for c in with_choices if c["choices"][0]["finish_reason"] is not None]
    assert finishes == [with_choices[-1]], "exactly one finish_reason, on the last chunk"
    if object_type == "chat.completion.chunk":
        assert len({c["created"] for c in chunks}) == 1
        deltas = [c["choices"][0]["delta"] for c in with_choices]
        assert deltas[0].get("role") == "assistant"
        assert all("role" not in d for d in deltas[1:])
        last = dict(deltas[-1])
        last.pop("role", None)
        assert last == {}, "the finish chunk carries an empty delta"
    return chunks


def check_anthropic_stream(raw: bytes) -> list[dict[str, Any]]:
    """Anthropic event sequence (Ollama's `anthropic/anthropic.go` `StreamConverter`): start, dense well-nested blocks, delta, stop."""
    frames = split_frames(raw)
    events = []
    for name, data in frames:
        payload = json.loads(data)
        assert name == payload["type"], (name, payload)
        events.append(payload)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "ping" not in kinds
    start = events[0]["message"]
    assert start["id"].startswith("msg_") and start["type"] == "message" and start["role"] == "assistant"
    assert start["content"] == [] and start["usage"]["output_tokens"] == 0
    open_index: int | None = None
    open_type = ""
    next_index = 0
    for e in events[1:-2]:
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == next_index
            open_index, open_type = e["index"], e["content_block"]["type"]
            next_index += 1
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index
            expected = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}[open_type]
            assert e["delta"]["type"] == expected
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_index
            open_index = None
        else:
            pytest.fail(f"unexpected event {e}")
    assert open_index is None
    delta = events[-2]
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens", "stop_sequence", "tool_use")
    assert isinstance(delta["usage"]["output_tokens"], int)
    return events


def check_responses_stream(raw: bytes) -> list[dict[str, Any]]:
    """Responses API events (Ollama's `openai/responses.go` `ResponsesStreamConverter`): typed frames, dense sequence numbers, created → completed."""
    frames = split_frames(raw)
    events = []
    for name, data in frames:
        payload = json.loads(data)
        assert name == payload["type"]
        events.append(payload)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] == "response.completed"
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1
    added = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.done"}
    assert added == done
    final_ids = [item["id"] for item in events[-1]["response"]["output"]]
    assert [added[i] for i in sorted(added)] == final_ids or not added
    return events


# ----------------------------------------------------------------------------- scripted events


def chunk(
    content: str = "", thinking: str = "", tool_calls: list[ToolCall] | None = None, logprobs: Any = None
) -> Piece:
    return Piece(content, thinking, tuple(tool_calls or ()), tuple(logprobs or ()))


def final(
    reason: str = "stop", content: str = "", thinking: str = "", tool_calls: list[ToolCall] | None = None
) -> Final:
    return Final(
        done_reason=reason,
        tail=chunk(content, thinking, tool_calls),
        stats=Stats(prompt_eval_count=7, eval_count=3),
    )


CALL = ToolCall(ToolCallFunction("get_weather", {"city": "Paris"}, 0), id="call_abc12345")


def openai_bytes(stream: oa.ChatStream, natives: list[Event]) -> bytes:
    return b"".join(frame(c) for n in natives for c in stream.feed(n)) + DONE


def test_frame_bytes() -> None:
    assert frame({"a": "é\nb"}) == 'data: {"a":"é\\nb"}\n\n'.encode()
    assert frame({"type": "x"}, "x") == b'event: x\ndata: {"type":"x"}\n\n'
    assert DONE == b"data: [DONE]\n\n"


def test_chat_stream_role_once_split_thinking_finish_and_usage() -> None:
    stream = oa.ChatStream(id="chatcmpl-1", model="m", include_usage=True)
    raw = openai_bytes(
        stream,
        [
            chunk("Hel"),
            chunk("lo", thinking="hmm", logprobs=[{"token": "lo", "logprob": -0.5}]),
            chunk(thinking="more"),
            final(),
        ],
    )
    chunks = check_openai_stream(raw, object_type="chat.completion.chunk", include_usage=True)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [
        {"role": "assistant", "content": "Hel"},
        {"reasoning": "hmm"},  # split: reasoning first, without a content key…
        {"content": "lo"},  # …then the content
        {"content": "", "reasoning": "more"},
        {},
    ]
    assert chunks[1]["choices"][0]["logprobs"] == {"content": [{"token": "lo", "logprob": -0.5}]}
    assert "logprobs" not in chunks[2]["choices"][0]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_chat_stream_fast_path_bytes_equal_the_general_path() -> None:
    natives = [
        chunk("Hi"),
        chunk('a "quoted"\nline é'),
        chunk(thinking="t"),
        chunk("x", logprobs=[{"token": "x", "logprob": -1.0}]),
        chunk(tool_calls=[CALL]),
        final(content="end"),
    ]
    fast = oa.ChatStream(id="chatcmpl-7", model='m "q"', include_usage=True, created=11)
    slow = oa.ChatStream(id="chatcmpl-7", model='m "q"', include_usage=True, created=11)
    for native in natives:
        assert fast.frames(native) == b"".join(frame(c) for c in slow.feed(native))


def test_chat_stream_tool_calls_and_length() -> None:
    stream = oa.ChatStream(id="chatcmpl-2", model="m")
    chunks = check_openai_stream(
        openai_bytes(stream, [chunk(tool_calls=[CALL]), final()]), object_type="chat.completion.chunk"
    )
    call = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert call == {
        "id": "call_abc12345",
        "index": 0,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    stream = oa.ChatStream(id="chatcmpl-3", model="m")
    chunks = check_openai_stream(
        openai_bytes(stream, [chunk("a"), final("length")]), object_type="chat.completion.chunk"
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_chat_stream_empty_answer_still_has_a_role_chunk_and_final_content_is_kept() -> None:
    stream = oa.ChatStream(id="chatcmpl-4", model="m")
    chunks = check_openai_stream(openai_bytes(stream, [final()]), object_type="chat.completion.chunk")
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {}]
    stream = oa.ChatStream(id="chatcmpl-5", model="m")
    chunks = check_openai_stream(
        openai_bytes(stream, [chunk("a"), final(content="tail")]), object_type="chat.completion.chunk"
    )
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["a", "tail", None]


def test_chat_completion_non_stream_shape() -> None:
    folded = final("stop", content="Hi", thinking="t", tool_calls=[CALL])
    body = oa.chat_completion(folded, id="chatcmpl-9", model="m", created=5)
    assert body == {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi",
                    "reasoning": "t",
                    "tool_calls": [
                        {
                            "id": "call_abc12345",
                            "index": 0,
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
    assert oa.chat_completion(final("length"), id="x", model="m")["choices"][0]["finish_reason"] == "length"


def test_completion_stream() -> None:
    stream = oa.CompletionStream(id="cmpl-1", model="m", include_usage=True, echo_prompt="P:")
    natives: list[Event] = [
        Piece("a"),
        Piece("b"),
        Final(done_reason="length", stats=Stats(prompt_eval_count=2, eval_count=2)),
    ]
    raw = b"".join(frame(c) for n in natives for c in stream.feed(n)) + DONE
    chunks = check_openai_stream(raw, object_type="text_completion", include_usage=True)
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == ["P:", "a", "b", ""]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert all(c["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0} for c in chunks[:-1])
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}


def test_legacy_logprobs_offsets() -> None:
    logprobs = [
        {"token": "a", "logprob": -1.0, "top_logprobs": [{"token": "a", "logprob": -1.0}]},
        {"token": "b", "logprob": -2.0},
    ]
    body = oa.text_completion(
        Final(done_reason="stop", tail=Piece("ab", logprobs=tuple(logprobs))),
        id="cmpl-1",
        model="m",
        echo_prompt="xy",
    )
    choice = body["choices"][0]
    assert choice["text"] == "xyab"
    assert choice["logprobs"] == {
        "tokens": ["a", "b"],
        "token_logprobs": [-1.0, -2.0],
        "top_logprobs": [{"a": -1.0}, {}],
        "text_offset": [2, 3],
    }


def anthropic_bytes(stream: an.MessagesStream, natives: list[Event]) -> bytes:
    parts = [frame(d, k) for k, d in stream.start()]
    parts += [frame(d, k) for n in natives for k, d in stream.feed(n)]
    return b"".join(parts)


def test_anthropic_stream_thinking_text_tool_use() -> None:
    stream = an.MessagesStream(id="msg_1", model="m", estimated_input_tokens=5)
    raw = anthropic_bytes(
        stream,
        [chunk(thinking="a"), chunk(thinking="b"), chunk("Hi"), chunk(" there"), chunk(tool_calls=[CALL]), final()],
    )
    events = check_anthropic_stream(raw)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[0]["message"]["usage"] == {"input_tokens": 5, "output_tokens": 0}
    assert events[9]["content_block"] == {"type": "tool_use", "id": "call_abc12345", "name": "get_weather", "input": {}}
    assert json.loads(events[10]["delta"]["partial_json"]) == {"city": "Paris"}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"] == {"input_tokens": 7, "output_tokens": 3}


@pytest.mark.parametrize(
    ("reason", "calls", "expected"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("stop", True, "tool_use"),
        ("length", True, "tool_use"),
        ("other", False, "stop_sequence"),
    ],
)
def test_anthropic_stop_reasons(reason: str, calls: bool, expected: str) -> None:
    assert an.stop_reason(reason, calls) == expected


def test_anthropic_message_response_shape() -> None:
    folded = final("stop", content="Hi", thinking="hmm")
    body = an.message_response(folded, id="msg_1", model="m")
    assert body["content"] == [{"type": "thinking", "thinking": "hmm", "signature": ""}, {"type": "text", "text": "Hi"}]
    assert body["stop_reason"] == "end_turn" and body["usage"] == {"input_tokens": 7, "output_tokens": 3}


def test_anthropic_request_conversion() -> None:
    call = an.messages_request(
        {
            "model": "m",
            "max_tokens": 9,
            "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
            "stop_sequences": ["\n\n"],
            "temperature": 0.5,
            "top_k": 3,
            "thinking": {"type": "enabled", "budget_tokens": 100},
            "tools": [
                {
                    "name": "get_weather",
                    "description": "d",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": "s"},
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "thanks"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "sunny"}],
                        },
                    ],
                },
            ],
        }
    )
    req = call.request
    assert req.options["num_predict"] == 9 and req.options["stop"] == ["\n\n"] and req.options["top_k"] == 3
    assert "top_p" not in req.options  # no OpenAI-style defaults
    assert req.think is True
    assert req.tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "description": "d",
            },
        }
    ]
    assert req.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "toolu_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
            ],
            "thinking": "t",
        },
        {
            "role": "tool",
            "content": "sunny",
            "tool_call_id": "toolu_1",
            "tool_name": "get_weather",
        },  # before the user's text
        {"role": "user", "content": "thanks"},
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model is required"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens is required and must be positive"),
        (
            {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens is required and must be positive",
        ),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages is required"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}
                ],
            },
            "invalid image source type: url. Only base64 images are supported.",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}],
            },
            "tool_use block missing required 'id' field",
        ),
        (
            {"model": "m", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]},
            "invalid type for 'max_tokens'",
        ),
        (
            {"model": "m", "max_tokens": 5, "temperature": "hot", "messages": [{"role": "user", "content": "x"}]},
            "invalid type for 'temperature'",
        ),
    ],
)
def test_anthropic_validation(body: dict[str, Any], message: str) -> None:
    with pytest.raises(PollamaError) as info:
        raise_option_error(an.messages_request(body).request)
    assert info.value.status == 400 and message in info.value.message


def raise_option_error(request: Any) -> None:
    """Option fields are refused by the service once the model is known; the translator keeps
    the error on the request (`option_error`)."""
    if request.option_error is not None:
        raise request.option_error


def test_openai_request_mapping_defaults_and_options() -> None:
    req = oa.chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}]}).request
    assert req.options["temperature"] == 1.0 and req.options["top_p"] == 1.0
    assert req.stream is False and req.think is None and req.format is None
    call = oa.chat_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5,
            "seed": 3,
            "stop": ["a", 1, "b"],
            "temperature": 0.2,
            "frequency_penalty": 0.1,
            "presence_penalty": 0.3,
            "top_p": 0.5,
            "response_format": {"type": "json_object"},
            "stream": True,
            "stream_options": {"include_usage": True},
            "reasoning_effort": "xhigh",
        }
    )
    o = call.request.options
    assert (
        o["num_predict"],
        o["seed"],
        o["stop"],
        o["temperature"],
        o["frequency_penalty"],
        o["presence_penalty"],
        o["top_p"],
    ) == (5, 3, ["a", "b"], 0.2, 0.1, 0.3, 0.5)
    assert call.request.format == "json" and call.request.stream and call.include_usage and call.request.think == "max"
    assert (
        oa.chat_request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": "none"}}
        ).request.think
        is False
    )
    assert (
        oa.chat_request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 4}
        ).request.options["num_predict"]
        == 4
    )
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = oa.chat_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}},
        }
    ).request.format
    assert fmt == schema


def test_openai_message_mapping() -> None:
    png = "iVBORw0KGgo="
    messages = oa.chat_messages(
        [
            {"role": "developer", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "ok", "reasoning": "thought"},
        ]
    )
    assert messages == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "look"},
        {"role": "user", "content": "", "images": [b"\x89PNG\r\n\x1a\n"]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}, "id": "call_1"}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1", "tool_name": "get_weather"},
        {"role": "assistant", "content": "ok", "thinking": "thought"},
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "[] is too short - 'messages'"),
        ({"messages": [{"role": "user", "content": 2}]}, "invalid message content type: float64"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
                ]
            },
            "image URLs are not currently supported, please use base64 encoded data instead",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": "data:image/gif;base64,AAAA"}]}
                ]
            },
            "invalid image input",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{nope"}}]}]},
            "invalid tool call arguments",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"}, "invalid reasoning value"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "invalid type for 'temperature'"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}, "invalid type for 'max_tokens'"),
        ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 21}, "top_logprobs must be between 0 and 20"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 12}}},
            },
            "invalid format",
        ),
    ],
)
def test_openai_chat_validation(body: dict[str, Any], message: str) -> None:
    with pytest.raises(PollamaError) as info:
        raise_option_error(oa.chat_request({"model": "m", **body}).request)
    assert info.value.status == 400 and message in info.value.message


def test_embeddings_request_and_base64() -> None:
    req, enc = oa.embed_request({"model": "m", "input": "", "encoding_format": "BASE64", "dimensions": 4})
    assert req.inputs == [""] and enc == "base64" and req.dimensions == 4
    for bad in ({"model": "m"}, {"model": "m", "input": []}, {"model": "m", "input": [1, 2]}):
        with pytest.raises(PollamaError, match="invalid input"):
            oa.embed_request(bad)
    with pytest.raises(
        PollamaError, match=r"Invalid value for 'encoding_format' = hex. Supported values: \['float', 'base64'\]."
    ):
        oa.embed_request({"model": "m", "input": "x", "encoding_format": "hex"})
    import base64 as b64

    import numpy as np

    body = oa.embedding_list(Embeddings([[0.5, -0.25]], prompt_eval_count=3, timed=True), model="m", encoding="base64")
    assert np.frombuffer(b64.b64decode(body["data"][0]["embedding"]), dtype="<f4").tolist() == [0.5, -0.25]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_completions_request_mapping() -> None:
    call = oa.completion_request({"model": "m", "prompt": "p", "top_p": 0, "stop": "x", "logprobs": 2, "echo": True})
    r = call.request
    assert r.options["top_p"] == 1.0 and r.options["presence_penalty"] == 0.0 and r.options["frequency_penalty"] == 0.0
    assert r.options["stop"] == ["x"] and r.logprobs and r.top_logprobs == 2 and call.echo
    with pytest.raises(PollamaError, match="invalid type for 'stop' field: float64"):
        raise_option_error(oa.completion_request({"model": "m", "prompt": "p", "stop": ["a", 1]}).request)


def test_responses_stream_events() -> None:
    call = responses_request({"model": "m", "input": "hi", "instructions": "sys"})
    assert call.request.messages == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    stream = ResponsesStream(call, model="m")
    parts = [frame(d, k) for k, d in stream.start()]
    for n in [chunk(thinking="t"), chunk("Hel"), chunk("lo"), chunk(tool_calls=[CALL]), final()]:
        parts += [frame(d, k) for k, d in stream.feed(n)]
    events = check_responses_stream(b"".join(parts))
    final_response = events[-1]["response"]
    assert [item["type"] for item in final_response["output"]] == ["reasoning", "message", "function_call"]
    assert final_response["output"][1]["content"][0]["text"] == "Hello"
    assert final_response["output"][2]["arguments"] == '{"city":"Paris"}'
    assert final_response["usage"]["total_tokens"] == 10


def test_responses_input_items() -> None:
    call = responses_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "weather?"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            "reasoning": {"effort": "minimal"},
            "max_output_tokens": 9,
        }
    )
    r = call.request
    assert r.messages == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "think",
            "tool_calls": [
                {"id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}, "index": 0}}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1", "tool_name": "get_weather"},
        {"role": "system", "content": "be brief"},
    ]
    assert r.tools == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
    ]
    assert r.format == {"type": "object"} and r.think == "low" and r.options["num_predict"] == 9
    with pytest.raises(PollamaError, match="file inputs are not currently supported"):
        responses_request(
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}
        )
    with pytest.raises(PollamaError, match="previous_response_id"):
        responses_request({"model": "m", "input": "x", "previous_response_id": "resp_1"})


# ----------------------------------------------------------------------------- HTTP layer, scripted service


class ScriptedInference:
    """Stands in for `Inference` (not for the runner): yields a fixed event sequence, then optionally fails."""

    def __init__(
        self,
        natives: list[Event],
        fail_after: PollamaError | None = None,
        fail_first: PollamaError | None = None,
    ) -> None:
        self.natives = natives
        self.fail_after = fail_after
        self.fail_first = fail_first
        self.closed = 0

    async def _run(self) -> AsyncIterator[Event]:
        try:
            if self.fail_first is not None:
                raise self.fail_first
            for n in self.natives:
                yield n
            if self.fail_after is not None:
                raise self.fail_after
        finally:
            self.closed += 1

    def chat(self, req: Any, *, strict_think: bool = True, report_stop: bool = False) -> AsyncIterator[Event]:
        return self._run()

    def generate(self, req: Any) -> AsyncIterator[Event]:
        return self._run()


async def scripted_client(models_dir: Any, inference: ScriptedInference) -> Any:
    from server.app import build_services, create_app
    from server.config import load_config

    config = load_config(settings={})
    return create_app(config, services=build_services(config, inference=inference))


async def test_http_stream_error_mid_stream_becomes_an_error_frame(models_dir: Any) -> None:
    inference = ScriptedInference([chunk("a")], fail_after=PollamaError("runner died"))
    app = await scripted_client(models_dir, inference)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        r = await client.post(
            "/v1/chat/completions", json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        frames = split_frames(await r.get_data())
        assert json.loads(frames[0][1])["choices"][0]["delta"] == {"role": "assistant", "content": "a"}
        assert json.loads(frames[-1][1]) == {
            "error": {"message": "runner died", "type": "api_error", "param": None, "code": None}
        }
        r = await client.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]},
        )
        frames = split_frames(await r.get_data())
        assert frames[-1][0] == "error"
        assert json.loads(frames[-1][1])["error"] == {"type": "api_error", "message": "runner died"}
        r = await client.post("/v1/responses", json={"model": "m", "stream": True, "input": "x"})
        frames = split_frames(await r.get_data())
        assert frames[-1][0] == "response.failed"
    assert inference.closed == 3


async def test_http_error_before_first_chunk_is_a_plain_error(models_dir: Any) -> None:
    inference = ScriptedInference([], fail_first=NotFound("model 'm' not found"))
    app = await scripted_client(models_dir, inference)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for path, body, shape in [
            (
                "/v1/chat/completions",
                {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                "openai",
            ),
            ("/v1/completions", {"model": "m", "stream": True, "prompt": "x"}, "openai"),
            ("/v1/responses", {"model": "m", "stream": True, "input": "x"}, "openai"),
            (
                "/v1/messages",
                {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]},
                "anthropic",
            ),
        ]:
            r = await client.post(path, json=body)
            assert r.status_code == 404, path
            assert r.headers["Content-Type"].startswith("application/json")
            data = await r.get_json()
            if shape == "openai":
                assert data == {
                    "error": {"message": "model 'm' not found", "type": "not_found_error", "param": None, "code": None}
                }
            else:
                assert data["type"] == "error" and data["error"] == {
                    "type": "not_found_error",
                    "message": "model 'm' not found",
                }
                assert data["request_id"].startswith("req_")


def test_anthropic_typed_tools() -> None:
    call = an.messages_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {"type": "bash_20250124", "name": "bash"},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
            ],
        }
    )
    assert call.request.tools == [
        {"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {}}}}
    ]
    only_search = an.messages_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        }
    )
    assert only_search.request.tools is None, "no tools left: the model is not asked to call any"
