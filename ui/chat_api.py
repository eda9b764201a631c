"""The chat's side of `POST /api/chat`: the request it sends and the chunks it reads, typed.

The Chat page talks to the server like any other client of Ollama's native
API (the body shapes follow Ollama's `api/types.go` `ChatRequest` and
`ChatResponse`): one streamed NDJSON line per piece, each carrying
`message.content`, `message.thinking` or `message.tool_calls`, and a final
line with the timings (`eval_count`, `eval_duration`, `prompt_eval_duration`,
nanoseconds) and pollama's own `truncated_messages` (how many old messages
were left out so the prompt fits the context). Parsing happens once here so
widgets and the store never read raw dicts.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

NS = 1e9


class Think(enum.Enum):
    """The conversation's `think` setting: leave it to the model, off, on, or a level (gpt-oss style)."""

    DEFAULT = "default"
    OFF = "off"
    ON = "on"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    def wire(self) -> bool | str | None:
        """The request's `think` value (None: omit the field, the model decides)."""
        if self is Think.DEFAULT:
            return None
        if self is Think.OFF:
            return False
        if self is Think.ON:
            return True
        return self.value

    @property
    def label(self) -> str:
        return {
            Think.DEFAULT: "Model default",
            Think.OFF: "Off",
            Think.ON: "On",
            Think.LOW: "Low",
            Think.MEDIUM: "Medium",
            Think.HIGH: "High",
        }[self]


@dataclass(frozen=True)
class ChatOptions:
    """Per-conversation sampling options; None means "the model's default" (the field is not sent)."""

    temperature: float | None = None
    num_ctx: int | None = None
    seed: int | None = None
    think: Think = Think.DEFAULT

    def wire_options(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.num_ctx is not None:
            out["num_ctx"] = self.num_ctx
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def to_json(self) -> str:
        return json.dumps(
            {"temperature": self.temperature, "num_ctx": self.num_ctx, "seed": self.seed, "think": self.think.value}
        )

    @classmethod
    def from_json(cls, text: str | None) -> ChatOptions:
        try:
            obj = json.loads(text or "{}")
        except ValueError:
            return cls()
        if not isinstance(obj, dict):
            return cls()
        temperature = obj.get("temperature")
        num_ctx, seed = obj.get("num_ctx"), obj.get("seed")
        try:
            think = Think(obj.get("think") or "default")
        except ValueError:
            think = Think.DEFAULT
        return cls(
            temperature=float(temperature) if isinstance(temperature, int | float) else None,
            num_ctx=int(num_ctx) if isinstance(num_ctx, int) and num_ctx > 0 else None,
            seed=int(seed) if isinstance(seed, int) else None,
            think=think,
        )


@dataclass(frozen=True)
class ToolCall:
    """One `message.tool_calls[]` entry: a function name and its arguments (kept as JSON text)."""

    name: str
    arguments: str = "{}"

    @classmethod
    def from_json(cls, obj: Any) -> ToolCall | None:
        if not isinstance(obj, dict):
            return None
        fn = obj.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return None
        args = fn.get("arguments")
        return cls(name=fn["name"], arguments=json.dumps(args if args is not None else {}, ensure_ascii=False))

    def wire(self) -> dict[str, Any]:
        try:
            args = json.loads(self.arguments)
        except ValueError:
            args = {}
        return {"function": {"name": self.name, "arguments": args}}


def parse_tool_calls(value: Any) -> tuple[ToolCall, ...]:
    if not isinstance(value, list):
        return ()
    calls = (ToolCall.from_json(v) for v in value)
    return tuple(c for c in calls if c is not None)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _ns(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else 0


@dataclass(frozen=True)
class AnswerStats:
    """What the final chunk says about an answer, plus the first-piece time the app measured itself."""

    eval_count: int = 0
    eval_duration_ns: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration_ns: int = 0
    load_duration_ns: int = 0
    total_duration_ns: int = 0
    first_piece_s: float | None = None
    done_reason: str = ""

    @property
    def tokens_per_second(self) -> float | None:
        if not self.eval_count or not self.eval_duration_ns:
            return None
        return self.eval_count / (self.eval_duration_ns / NS)

    def line(self) -> str:
        """`12 tokens · 85.3 tokens/s · first token after 0.42 s (prompt 0.05 s)`."""
        parts = [f"{self.eval_count} token{'s' if self.eval_count != 1 else ''}"]
        rate = self.tokens_per_second
        if rate is not None:
            parts.append(f"{rate:.1f} tokens/s")
        if self.first_piece_s is not None:
            ttft = f"first token after {self.first_piece_s:.2f} s"
            if self.prompt_eval_duration_ns:
                ttft += f" (prompt {self.prompt_eval_duration_ns / NS:.2f} s"
                if self.load_duration_ns > 0.05 * NS:
                    ttft += f", load {self.load_duration_ns / NS:.2f} s"
                ttft += ")"
            parts.append(ttft)
        if self.done_reason == "length":
            parts.append("stopped at the length limit")
        return " · ".join(parts)

    def wire(self) -> dict[str, Any]:
        """The final chunk's field names (nanoseconds), plus the measured `first_piece_s`."""
        return {
            "eval_count": self.eval_count,
            "eval_duration": self.eval_duration_ns,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration_ns,
            "load_duration": self.load_duration_ns,
            "total_duration": self.total_duration_ns,
            "done_reason": self.done_reason,
            "first_piece_s": self.first_piece_s,
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any], first_piece_s: float | None = None) -> AnswerStats:
        """From a final chunk (or what `wire` wrote: the same names)."""
        first = obj.get("first_piece_s", first_piece_s)
        return cls(
            eval_count=_ns(obj.get("eval_count")),
            eval_duration_ns=_ns(obj.get("eval_duration")),
            prompt_eval_count=_ns(obj.get("prompt_eval_count")),
            prompt_eval_duration_ns=_ns(obj.get("prompt_eval_duration")),
            load_duration_ns=_ns(obj.get("load_duration")),
            total_duration_ns=_ns(obj.get("total_duration")),
            first_piece_s=float(first) if isinstance(first, int | float) else None,
            done_reason=_text(obj.get("done_reason")),
        )

    def to_json(self) -> str:
        return json.dumps(self.wire())

    @classmethod
    def from_json(cls, text: str | None) -> AnswerStats | None:
        try:
            obj = json.loads(text) if text else None
        except ValueError:
            return None
        return cls.from_wire(obj) if isinstance(obj, dict) else None


@dataclass(frozen=True)
class ChatChunk:
    """One NDJSON line of a streamed `/api/chat` answer."""

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    done: bool = False
    stats: AnswerStats | None = None
    truncated_messages: int = 0

    @classmethod
    def from_json(cls, obj: Any, *, first_piece_s: float | None = None) -> ChatChunk:
        if not isinstance(obj, dict):
            return cls()
        message = obj.get("message")
        if not isinstance(message, dict):
            message = {}
        done = bool(obj.get("done"))
        stats = AnswerStats.from_wire(obj, first_piece_s) if done else None
        truncated = obj.get("truncated_messages")
        return cls(
            content=_text(message.get("content")),
            thinking=_text(message.get("thinking")),
            tool_calls=parse_tool_calls(message.get("tool_calls")),
            done=done,
            stats=stats,
            truncated_messages=int(truncated) if isinstance(truncated, int) and truncated > 0 else 0,
        )

    @property
    def has_piece(self) -> bool:
        return bool(self.content or self.thinking or self.tool_calls)


@dataclass(frozen=True)
class WireMessage:
    """A message as `/api/chat` takes it (images as raw bytes here, base64 on the wire)."""

    role: str
    content: str
    thinking: str = ""
    images: tuple[bytes, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.thinking:
            out["thinking"] = self.thinking
        if self.images:
            out["images"] = [base64.b64encode(i).decode("ascii") for i in self.images]
        if self.tool_calls:
            out["tool_calls"] = [c.wire() for c in self.tool_calls]
        return out


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[WireMessage, ...]
    options: ChatOptions = field(default_factory=ChatOptions)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": [m.wire() for m in self.messages], "stream": True}
        opts = self.options.wire_options()
        if opts:
            body["options"] = opts
        think = self.options.think.wire()
        if think is not None:
            body["think"] = think
        return body


def parse_parameters(text: str) -> tuple[tuple[str, str], ...]:
    """`/api/show`'s `parameters` text (`temperature 0.7` per line, as Ollama's `show` formats it) → pairs."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value.strip():
            out.append((key, value.strip().strip('"')))
    return tuple(out)


@dataclass(frozen=True)
class ModelFacts:
    """What the Chat page needs from `/api/show`: capabilities and the defaults to show next to the options."""

    name: str
    capabilities: tuple[str, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    trained_context: int = 0
    system: str = ""

    @property
    def vision(self) -> bool:
        return "vision" in self.capabilities

    @property
    def thinking(self) -> bool:
        return "thinking" in self.capabilities

    def default(self, key: str) -> str | None:
        for k, v in self.parameters:
            if k == key:
                return v
        return None

    @classmethod
    def from_show(cls, name: str, body: Any) -> ModelFacts:
        if not isinstance(body, dict):
            return cls(name)
        caps = body.get("capabilities")
        info = body.get("model_info")
        trained = 0
        if isinstance(info, dict):
            for key, value in info.items():
                if str(key).endswith(".context_length") and isinstance(value, int):
                    trained = value
        params = body.get("parameters")
        system = body.get("system")
        return cls(
            name=name,
            capabilities=tuple(str(c) for c in caps) if isinstance(caps, list) else (),
            parameters=parse_parameters(params) if isinstance(params, str) else (),
            trained_context=trained,
            system=system if isinstance(system, str) else "",
        )


def describe_defaults(facts: ModelFacts | None, names: Sequence[str] = ("temperature", "num_ctx", "seed")) -> str:
    """One line naming the model's own defaults for the options the page offers."""
    if facts is None:
        return ""
    fallback = {"temperature": "0.8", "num_ctx": "the server's", "seed": "random"}
    parts = []
    for name in names:
        value = facts.default(name)
        parts.append(f"{name} {value}" if value is not None else f"{name} {fallback[name]}")
    text = "Model defaults: " + ", ".join(parts)
    if facts.trained_context:
        text += f"; trained on {facts.trained_context:,} tokens of context"
    return text + "."
