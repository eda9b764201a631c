"""What a model can do: completion, embedding, rerank, tools, insert, thinking, vision.

Derived as Ollama does (`server/images.go` `Model.Capabilities`) from the config, the GGUF metadata, the layers
and the prompt template. Request handlers check these before loading anything.
"""

from __future__ import annotations

import logging

from server.errors import PollamaError
from server.store import manifest as mt
from server.store.store import Model

log = logging.getLogger(__name__)


def capabilities(model: Model) -> list[str]:
    caps: list[str] = []

    def add(cap: str) -> None:
        if cap not in caps:
            caps.append(cap)

    for cap in model.config.get("capabilities") or []:
        if isinstance(cap, str):
            add(cap)
    try:
        info = model.gguf()
    except PollamaError as exc:
        log.warning("cannot read %s: %s", model.name.display, exc)
        info = None
    if info is not None:
        # a reranker's head gives one score, not a vector: it reranks and does not embed
        add("rerank" if info.is_reranker else "embedding" if info.is_embedding else "completion")
        if info.arch_value("vision.block_count") is not None or "vision.block_count" in info.kv:
            add("vision")
    if model.manifest.layers_of(mt.PROJECTOR):
        add("vision")
    if model.template is not None:
        from server.prompt import ChatTemplate

        try:
            for cap in sorted(
                ChatTemplate.parse(model.template).capabilities, key=("tools", "insert", "thinking").index
            ):
                add(cap)
        except PollamaError:
            pass
    elif info is not None and info.chat_template:
        jinja = info.chat_template
        if "tools" in jinja or "tool_call" in jinja:
            add("tools")
        if "<think>" in jinja and "</think>" in jinja:
            add("thinking")
    if model.config.get("model_family") in ("gptoss", "gpt-oss"):
        add("thinking")
    return caps
