"""Helpers for the runner tests that start real runner processes."""

from __future__ import annotations

from dataclasses import dataclass

from server.runner.client import CompletionChunk, CompletionRequest, RunnerClient


@dataclass
class Result:
    text: str
    chunks: list[CompletionChunk]

    @property
    def last(self) -> CompletionChunk:
        return self.chunks[-1]


async def generate(client: RunnerClient, prompt: str | tuple[int, ...], **options: object) -> Result:
    options.setdefault("temperature", 0.0)
    options.setdefault("num_predict", 24)
    chunks = [chunk async for chunk in client.completion(CompletionRequest(prompt=prompt, **options))]  # type: ignore[arg-type]
    return Result("".join(c.content for c in chunks), chunks)
