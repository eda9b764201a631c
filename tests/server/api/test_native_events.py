"""Typed generation events → Ollama's native JSON, and `collect`, checked without a runner.

The live tests (test_inference_api, the SDK suites) read these shapes through real
clients, which parse JSON and so cannot see key order; here the bytes are pinned down:
each native chunk's keys in the order pollama wrote them before the events were typed
(Ollama's `api/types.go` `GenerateResponse`/`ChatResponse` fields, zero metrics
omitted), and a folded answer keeping the final chunk's keys where they were.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from server.api.inference import event_json, fold
from server.inference.events import Event, Final, Piece, Rendered, Stats, collect, output
from server.prompt import ToolCall, ToolCallFunction

CALL = ToolCall(ToolCallFunction("get_weather", {"city": "Paris", "a": 1}, 0), id="call_1")
STATS = Stats(total_duration=9, load_duration=0, prompt_eval_count=7, prompt_eval_duration=2, eval_count=3)


class Events:
    """An event sequence as the service yields it, remembering whether it was closed."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.closed = False

    async def run(self) -> AsyncIterator[Event]:
        try:
            for event in self.events:
                yield event
        finally:
            self.closed = True


def keys(obj: dict[str, object]) -> list[str]:
    return list(obj)


def without_time(obj: dict[str, object]) -> dict[str, object]:
    assert isinstance(obj.pop("created_at"), str)
    return obj


def test_generate_chunks_in_native_key_order() -> None:
    piece = event_json(Piece("Hi", thinking="t", logprobs=({"token": "Hi", "logprob": -0.5},)), "response", "m")
    assert keys(piece) == ["model", "created_at", "response", "done", "thinking", "logprobs"]
    assert piece["done"] is False and piece["logprobs"] == [{"token": "Hi", "logprob": -0.5}]
    final = Final(
        done_reason="length",
        tail=Piece("!", thinking="u"),
        stats=Stats(prompt_eval_count=7, eval_count=3, draft_count=2),
        truncated_tokens=4,
        context=(1, 2),
    )
    body = event_json(final, "response", "m")
    assert keys(body) == [
        "model", "created_at", "response", "done", "thinking", "done_reason",
        "prompt_eval_count", "eval_count", "draft_count", "draft_accepted_count", "truncated_tokens", "context",
    ]  # fmt: skip
    assert without_time(body) == {
        "model": "m",
        "response": "!",
        "done": True,
        "thinking": "u",
        "done_reason": "length",
        "prompt_eval_count": 7,
        "eval_count": 3,
        "draft_count": 2,
        "draft_accepted_count": 0,
        "truncated_tokens": 4,
        "context": [1, 2],
    }


def test_load_unload_and_render_only_answers() -> None:
    assert without_time(event_json(Final(done_reason="unload"), "response", "m")) == {
        "model": "m",
        "response": "",
        "done": True,
        "done_reason": "unload",
    }
    assert without_time(event_json(Final(done_reason="load"), "message", "m")) == {
        "model": "m",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "load",
    }
    assert without_time(event_json(Rendered("<p>", 2), "message", "m")) == {
        "model": "m",
        "message": {"role": "", "content": ""},
        "done": False,
        "_debug_info": {"rendered_template": "<p>", "image_count": 2},
    }


def test_chat_chunks_carry_tool_calls_in_their_wire_shape() -> None:
    body = event_json(Piece(tool_calls=(CALL,)), "message", "m")
    assert json.dumps(body["message"]) == json.dumps(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "a": 1}},
                }
            ],
        }
    )
    final = Final(done_reason="stop", stats=STATS, truncated_messages=2, stop_sequence="END")
    assert keys(event_json(final, "message", "m")) == [
        "model", "created_at", "message", "done", "done_reason", "total_duration",
        "prompt_eval_count", "prompt_eval_duration", "eval_count", "truncated_messages", "stop_sequence",
    ]  # fmt: skip


async def test_fold_joins_pieces_and_keeps_the_final_chunks_key_order() -> None:
    events = Events([Piece("He", thinking="a"), Piece("llo", logprobs=({"token": "llo"},)), Final("stop", stats=STATS)])
    body = await fold(events.run(), "response", "m")
    assert events.closed
    # thinking came only before the final: it goes after the final's own keys, then logprobs
    assert keys(body) == [
        "model", "created_at", "response", "done", "done_reason", "total_duration",
        "prompt_eval_count", "prompt_eval_duration", "eval_count", "thinking", "logprobs",
    ]  # fmt: skip
    assert body["response"] == "Hello" and body["thinking"] == "a" and body["logprobs"] == [{"token": "llo"}]
    events = Events([Piece("a", tool_calls=(CALL,)), Final("stop", tail=Piece("b", thinking="t"))])
    body = await fold(events.run(), "message", "m")
    assert body["message"] == {
        "role": "assistant",
        "content": "ab",
        "thinking": "t",
        "tool_calls": [CALL.to_dict()],
    }


async def test_collect_joins_a_whole_answer_for_the_translators() -> None:
    calls = (CALL,)
    events = Events(
        [
            Piece("a", thinking="x", logprobs=({"token": "a"},)),
            Piece(tool_calls=calls),
            Final("length", tail=Piece("b", thinking="y"), stats=STATS, truncated_tokens=5),
        ]
    )
    final = await collect(events.run())
    assert events.closed
    assert final.tail == Piece("ab", "xy", calls, ({"token": "a"},))
    assert (final.done_reason, final.stats, final.truncated_tokens) == ("length", STATS, 5)
    assert output(final) == (final.tail, final) and output(Piece("c")) == (Piece("c"), None)
    with pytest.raises(TypeError):
        output(Rendered("", 0))
