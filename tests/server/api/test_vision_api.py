"""Images through every API a client might use: a live server, the official `ollama`,
`openai` and `anthropic` clients, the tiny model with a generated projector, real PNGs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import anthropic
import httpx
import ollama
import openai
import pytest

from tests.fixtures.images import checkerboard, gradient
from tests.support.live_server import LiveServer

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
GREEDY = {"temperature": 0, "seed": 3, "num_predict": 10}
IMAGE_POSITIONS = 16


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, tiny_projector_path: Path
) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("vision") / "models"
    srv = LiveServer(models, env={"OLLAMA_NUM_PARALLEL": "2"}).start()
    client = ollama.Client(host=srv.url)
    files = {"model.gguf": client.create_blob(tiny_model_path), "mmproj.gguf": client.create_blob(tiny_projector_path)}
    client.create(model="seer", files=files, template=CHATML, stream=False)
    client.create(model="blind", files={"model.gguf": files["model.gguf"]}, template=CHATML, stream=False)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.url)


def ask(client: ollama.Client, image: bytes, text: str = "what is in this picture?") -> ollama.ChatResponse:
    return client.chat(model="seer", messages=[{"role": "user", "content": text, "images": [image]}], options=GREEDY)


def test_show_reports_vision(server: LiveServer, client: ollama.Client) -> None:
    shown = client.show("seer")
    assert "vision" in (shown.capabilities or [])
    raw = httpx.post(server.url + "/api/show", json={"model": "seer"}, timeout=30).json()
    assert raw["projector_info"]["clip.projector_type"] == "mlp"
    assert "vision" not in (client.show("blind").capabilities or [])


def test_chat_sees_the_image(client: ollama.Client) -> None:
    first = ask(client, gradient())
    other = ask(client, checkerboard())
    again = ask(client, gradient())
    assert first.message.content and first.message.content == again.message.content
    assert other.message.content != first.message.content
    without = client.chat(
        model="seer", messages=[{"role": "user", "content": "what is in this picture?"}], options=GREEDY
    )
    # the image's 16 positions, give or take the tokens the text splits into around it
    assert abs((first.prompt_eval_count or 0) - (without.prompt_eval_count or 0) - IMAGE_POSITIONS) <= 2


def test_generate_streams_what_it_returns(client: ollama.Client) -> None:
    whole = client.generate(model="seer", prompt="describe", images=[checkerboard()], options=GREEDY)
    parts = list(client.generate(model="seer", prompt="describe", images=[checkerboard()], options=GREEDY, stream=True))
    assert whole.response and "".join(cast(str, p.response) for p in parts) == whole.response
    assert parts[-1].done and parts[-1].eval_count == GREEDY["num_predict"]


def test_ps_counts_the_projector(client: ollama.Client, tiny_model_path: Path, tiny_projector_path: Path) -> None:
    ask(client, gradient())
    running = {m.model: m for m in client.ps().models}
    seer = running["seer:latest"]
    assert seer.size and seer.size > tiny_model_path.stat().st_size + tiny_projector_path.stat().st_size


def test_openai_image_url(server: LiveServer, client: ollama.Client) -> None:
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    url = "data:image/png;base64," + base64.b64encode(gradient()).decode()
    reply = oai.chat.completions.create(
        model="seer",
        temperature=0,
        seed=3,
        max_tokens=10,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this picture?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content
    assert reply.usage and reply.usage.prompt_tokens > IMAGE_POSITIONS


def test_anthropic_image_block(server: LiveServer) -> None:
    claude = anthropic.Anthropic(base_url=server.url, api_key="unused")
    data = base64.b64encode(checkerboard()).decode()
    reply = claude.messages.create(
        model="seer",
        max_tokens=10,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
                    {"type": "text", "text": "what is this?"},
                ],
            }
        ],
    )
    assert reply.content and reply.content[0].type == "text" and reply.content[0].text  # type: ignore[union-attr]
    assert reply.usage.input_tokens > IMAGE_POSITIONS


def test_bad_images_get_400_and_nothing_breaks(server: LiveServer, client: ollama.Client) -> None:
    junk = base64.b64encode(b"GIF89a but not really").decode()
    r = httpx.post(
        server.url + "/api/chat",
        json={"model": "seer", "stream": False, "messages": [{"role": "user", "content": "x", "images": [junk]}]},
        timeout=60,
    )
    assert r.status_code == 400 and "could not be decoded" in r.json()["error"]
    r = httpx.post(
        server.url + "/api/generate",
        json={"model": "blind", "prompt": "x", "images": [base64.b64encode(gradient()).decode()]},
        timeout=60,
    )
    assert r.status_code == 400 and "does not support vision" in r.json()["error"]
    assert ask(client, gradient()).message.content
