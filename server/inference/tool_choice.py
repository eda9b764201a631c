"""What a request asks of the model's tool use, in one vocabulary for every API.

OpenAI's `tool_choice` ("auto" | "none" | "required" | a named function),
Anthropic's (`auto` | `any` | `tool` | `none`) and the Responses API's all
come down to three modes. Ollama ignores `tool_choice` altogether (its
`openai/openai.go` `FromChatRequest` never reads it), so a client that
demands a call gets prose. pollama honours it: `none` sends no tools to the
template, `required` and a named tool constrain the reply with a grammar
(`server/runner/grammar.py` `grammar_for_tool_call`) to exactly one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ToolMode = Literal["auto", "none", "required"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`mode`, and for `required` optionally the one function (`name`) the reply must call."""

    mode: ToolMode = "auto"
    name: str | None = None

    @property
    def forces_call(self) -> bool:
        return self.mode == "required"

    @property
    def hides_tools(self) -> bool:
        return self.mode == "none"


AUTO = ToolChoice()
NONE = ToolChoice("none")
REQUIRED = ToolChoice("required")
