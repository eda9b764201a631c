"""Prompt rendering speed: a 50-message conversation with tools, per bundled template.

Prints one JSON object: for each bundled template the median time to render
the conversation (ms) and that time per message (µs), plus the tool-call and
thinking parsers' throughput on a streamed answer. The target is well under
1 ms per message. Run: python benchmarks/bench_prompt.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.prompt import (  # noqa: E402
    ChatTemplate,
    ThinkingParser,
    ToolCallParser,
    bundled_templates,
    render_chat,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Tool number {i} does <things> & stuff",
            "parameters": {
                "type": "object",
                "required": ["location"],
                "properties": {
                    "location": {"type": "string", "description": "City and state"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
            },
        },
    }
    for i in range(4)
]


def conversation(n: int = 50) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": "You are a helpful assistant."}]
    while len(messages) < n:
        i = len(messages)
        messages.append({"role": "user", "content": f"Question {i}: what is the weather like in city {i}? " * 3})
        if i % 5 == 0:
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "tool_1", "arguments": {"location": f"City {i}", "unit": "celsius"}}}
                    ],
                }
            )
            messages.append({"role": "tool", "content": '{"temperature": 21}', "tool_name": "tool_1"})
        else:
            messages.append({"role": "assistant", "content": f"Answer {i}: it is sunny and warm. " * 4})
    return messages[:n]


def time_it(fn, repeat: int) -> float:
    fn()  # warm caches
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    messages = conversation(50)
    results: dict[str, dict[str, float]] = {}
    for bundled in bundled_templates():
        template = ChatTemplate.parse(bundled.template_text)
        seconds = time_it(lambda t=template: render_chat(t, messages, tools=TOOLS), args.repeat)
        results[bundled.name] = {
            "render_ms": round(seconds * 1e3, 3),
            "per_message_us": round(seconds * 1e6 / len(messages), 1),
        }

    answer = (
        "<think>"
        + "reasoning step. " * 200
        + "</think>"
        + "Sure. " * 50
        + ('<tool_call>{"name": "tool_2", "arguments": {"location": "Paris", "unit": "celsius"}}</tool_call>')
    )
    tokens = [answer[i : i + 4] for i in range(0, len(answer), 4)]

    def parse_stream() -> None:
        thinking = ThinkingParser("<think>", "</think>")
        tools = ToolCallParser("<tool_call>", TOOLS, make_ids=False)
        for token in tokens:
            _, content = thinking.feed(token)
            if content:
                tools.feed(content)
        tools.finish()

    parse_seconds = time_it(parse_stream, args.repeat)
    per_message = [r["per_message_us"] for r in results.values()]
    print(
        json.dumps(
            {
                "benchmark": "prompt_render",
                "messages": len(messages),
                "tools": len(TOOLS),
                "repeat": args.repeat,
                "templates": results,
                "summary": {
                    "max_per_message_us": max(per_message),
                    "median_per_message_us": round(statistics.median(per_message), 1),
                    "target_per_message_us": 1000,
                },
                "parsers": {
                    "tokens": len(tokens),
                    "stream_ms": round(parse_seconds * 1e3, 3),
                    "per_token_us": round(parse_seconds * 1e6 / len(tokens), 2),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
