"""`_debug_render_only` renders exactly what the prompt library renders, for every bundled template."""

from __future__ import annotations

from pathlib import Path

import httpx
import ollama

from server.prompt import bundled_templates, render_chat, render_generate
from tests.support.live_server import LiveServer

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello, how are you?"},
    {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
    {"role": "user", "content": "I'd like to show off how chat templating works!"},
]


def test_every_bundled_template(live_server: LiveServer, tiny_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    digest = client.create_blob(tiny_model_path)
    templates = bundled_templates()
    assert len(templates) >= 20
    for t in templates:
        client.create(model=t.name, files={"m.gguf": digest}, template=t.template_text, stream=False)
        chat = httpx.post(
            live_server.url + "/api/chat",
            json={"model": t.name, "messages": CONVERSATION, "_debug_render_only": True, "stream": False},
        )
        assert chat.status_code == 200, chat.text
        assert chat.headers["content-type"].startswith("application/json")
        assert chat.json()["_debug_info"] == {
            "rendered_template": render_chat(t.template_text, CONVERSATION),
            "image_count": 0,
        }, t.name
        gen = httpx.post(
            live_server.url + "/api/generate",
            json={"model": t.name, "prompt": "Why is the sky blue?", "system": "Be brief.", "_debug_render_only": True},
        )
        assert gen.headers["content-type"].startswith("application/json"), "one object, even when stream is on"
        expected = render_generate(t.template_text, prompt="Why is the sky blue?", system="Be brief.")
        assert gen.json()["_debug_info"]["rendered_template"] == expected, t.name
    assert client.ps().models == [], "rendering only never loads a model"
