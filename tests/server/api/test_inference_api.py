"""Generation and embeddings through the official `ollama` client, real runners, tiny models."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema
import ollama
import pytest

from tests.support.gpu import gpu_offload
from tests.support.live_server import LiveServer

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
GREEDY = {"temperature": 0, "seed": 7, "num_predict": 12}


def create(client: ollama.Client, name: str, path: Path, **kwargs: Any) -> None:
    digest = client.create_blob(path)
    client.create(model=name, files={"model.gguf": digest}, stream=False, **kwargs)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, tiny_model_eos_path: Path, bert_model_path: Path
) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("inference") / "models"
    srv = LiveServer(models, env={"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_KEEP_ALIVE": "5m"}).start()
    client = ollama.Client(host=srv.url)
    create(client, "tiny", tiny_model_path, template=CHATML)
    create(client, "tiny-eos", tiny_model_eos_path, template=CHATML)
    create(client, "bert", bert_model_path)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_generate_stream_and_not_agree(client: ollama.Client) -> None:
    whole = client.generate(model="tiny", prompt="Hello there", options=GREEDY)
    again = client.generate(model="tiny", prompt="Hello there", options=GREEDY)
    parts = list(client.generate(model="tiny", prompt="Hello there", options=GREEDY, stream=True))
    assert whole.response and whole.response == again.response
    assert "".join(cast(str, p.response) for p in parts) == whole.response  # ollama types every field Optional
    final = parts[-1]
    assert final.done and final.done_reason == "length"
    assert final.eval_count == 12
    assert final.prompt_eval_count and final.prompt_eval_count > 0
    assert final.total_duration is not None and final.eval_duration is not None
    assert final.total_duration >= final.eval_duration > 0
    assert final.load_duration is not None
    assert whole.prompt_eval_count is not None
    assert whole.context and len(whole.context) >= whole.prompt_eval_count + 12 - 1
    assert all(not p.done for p in parts[:-1])


def test_chat_stream_and_not_agree(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Say something"}]
    whole = client.chat(model="tiny", messages=messages, options=GREEDY)
    parts = list(client.chat(model="tiny", messages=messages, options=GREEDY, stream=True))
    assert whole.message.role == "assistant" and whole.message.content
    assert "".join(cast(str, p.message.content) for p in parts) == whole.message.content
    assert parts[-1].done_reason == "length" and parts[-1].eval_count == 12


def test_stop_sequences_and_num_predict(client: ollama.Client) -> None:
    free = client.generate(model="tiny", prompt="abc", options={**GREEDY, "num_predict": 30}).response
    assert free is not None
    assert len(free) > 4
    stop = free[3:6]
    cut = client.generate(model="tiny", prompt="abc", options={**GREEDY, "num_predict": 30, "stop": [stop]})
    assert cut.done_reason == "stop"
    assert cut.response is not None
    assert cut.response == free[: free.index(stop)]
    assert stop not in cut.response


def test_eos_ends_with_stop(client: ollama.Client) -> None:
    for seed in range(40):
        r = client.generate(
            model="tiny-eos", prompt="x", options={"temperature": 1.0, "seed": seed, "num_predict": 200}
        )
        if r.done_reason == "stop":
            assert r.eval_count is not None and r.eval_count < 200
            return
    pytest.fail("EOS was never sampled")


def test_format_json_and_schema(client: ollama.Client) -> None:
    # A free-form JSON grammar may run past num_predict on random weights; whatever ends by itself must parse.
    finished = 0
    for seed in range(12):
        r = client.generate(
            model="tiny", prompt="data", format="json", options={"temperature": 1, "seed": seed, "num_predict": 120}
        )
        if r.done_reason == "stop":
            assert r.response is not None
            json.loads(r.response)
            finished += 1
    assert finished > 0
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "n": {"type": "integer"}},
        "required": ["name", "n"],
    }
    chat = client.chat(
        model="tiny",
        messages=[{"role": "user", "content": "x"}],
        format=schema,
        options={"temperature": 0, "num_predict": 80},
    )
    assert chat.message.content is not None
    jsonschema.validate(json.loads(chat.message.content), schema)


def test_four_concurrent_streams_match_each_alone(server: LiveServer) -> None:
    prompts = ["one two", "three four five", "six", "seven eight nine ten"]
    aclient = ollama.AsyncClient(host=server.url)

    async def run(prompt: str) -> str:
        out = []
        async for part in await aclient.generate(
            model="tiny", prompt=prompt, options={**GREEDY, "num_predict": 24}, stream=True
        ):
            assert part.response is not None
            out.append(part.response)
        return "".join(out)

    async def main() -> tuple[list[str], list[str]]:
        alone = [await run(p) for p in prompts]
        together = await asyncio.gather(*(run(p) for p in prompts))
        return alone, list(together)

    alone, together = asyncio.run(main())
    assert together == alone
    assert len(set(alone)) > 1


def test_ps_and_keep_alive(client: ollama.Client, server: LiveServer) -> None:
    client.generate(model="tiny", prompt="", keep_alive=-1)
    ps = {m.model: m for m in client.ps().models}
    assert "tiny:latest" in ps
    entry = ps["tiny:latest"]
    assert entry.size is not None and entry.expires_at is not None
    assert entry.size > 0 and entry.context_length
    assert entry.size_vram == (entry.size if gpu_offload() else 0)  # the tiny model fits any GPU
    assert entry.expires_at.year > 2200, "keep_alive -1 never expires"
    r = client.generate(model="tiny", prompt="", keep_alive=0)
    assert r.done_reason == "unload"
    deadline = time.time() + 10
    while time.time() < deadline and any(m.model == "tiny:latest" for m in client.ps().models):
        time.sleep(0.1)
    assert not any(m.model == "tiny:latest" for m in client.ps().models)
    r = client.generate(model="tiny", prompt="", keep_alive="1s")
    assert r.done_reason == "load"
    assert any(m.model == "tiny:latest" for m in client.ps().models)
    time.sleep(2.5)
    assert not any(m.model == "tiny:latest" for m in client.ps().models)
    chat = client.chat(model="tiny", messages=[])
    assert chat.done_reason == "load"
    # Streaming is the default, but a load or unload is one plain JSON object, as Ollama answers it.
    for path, body, reason in [
        ("/api/generate", {"model": "tiny"}, "load"),
        ("/api/chat", {"model": "tiny", "keep_alive": 0}, "unload"),
    ]:
        plain = httpx.post(server.url + path, json=body, timeout=60)
        assert (
            plain.headers["content-type"] == "application/json; charset=utf-8" and plain.json()["done_reason"] == reason
        )
    assert [c.done_reason for c in client.generate(model="tiny", prompt="", stream=True)] == ["load"]


def test_a_keep_alive_beyond_any_duration_is_forever(client: ollama.Client, server: LiveServer) -> None:
    """Found by the fuzz: `keep_alive: 1e300` made every later `/api/ps` a 500 (no date that far ahead)."""
    for huge in (1e300, 2**63, 9.3e9):
        r = httpx.post(server.url + "/api/generate", json={"model": "tiny-eos", "keep_alive": huge}, timeout=60)
        assert r.status_code == 200 and r.json()["done_reason"] == "load", r.text
        ps = httpx.get(server.url + "/api/ps", timeout=10)
        assert ps.status_code == 200, ps.text
        entry = next(m for m in ps.json()["models"] if m["name"] == "tiny-eos:latest")
        assert int(entry["expires_at"][:4]) > 2200, entry  # as keep_alive -1
    r = httpx.post(server.url + "/api/generate", json={"model": "tiny-eos", "keep_alive": "3000000h"}, timeout=60)
    assert (r.status_code, r.json()) == (400, {"error": 'time: invalid duration "3000000h"'})
    unload = client.generate(model="tiny-eos", prompt="", keep_alive=0)
    assert unload.done_reason == "unload"


def test_runner_killed_mid_stream(client: ollama.Client, server: LiveServer) -> None:
    stream = client.generate(
        model="tiny", prompt="long", options={"temperature": 0, "num_predict": 100000}, stream=True
    )
    next(iter(stream))
    pids = server.runner_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(ollama.ResponseError) as info:
        for _ in stream:
            pass
    assert "tiny" in str(info.value) or "runner" in str(info.value)
    r = client.generate(model="tiny", prompt="again", options=GREEDY)
    assert r.done and r.response
    assert set(server.runner_pids()).isdisjoint(pids)


def test_disconnected_client_frees_its_slot(server: LiveServer, client: ollama.Client) -> None:
    with httpx.stream(
        "POST", server.url + "/api/generate", json={"model": "tiny", "prompt": "go", "options": {"num_predict": 100000}}
    ) as r:
        for _ in r.iter_lines():
            break
    # All four slots must be free again: four parallel requests finish promptly.
    aclient = ollama.AsyncClient(host=server.url)

    async def main() -> list[str | None]:
        rs = await asyncio.gather(*(aclient.generate(model="tiny", prompt=str(i), options=GREEDY) for i in range(4)))
        return [r.done_reason for r in rs]

    assert asyncio.run(asyncio.wait_for(main(), 60)) == ["length"] * 4


def test_a_client_that_goes_away_mid_stream_leaves_one_log_line(server: LiveServer) -> None:
    """Issue 24: the route, the model and the tokens generated until the client left, once per request."""
    long = {"num_predict": 100000}
    requests = [
        ("/api/generate", {"model": "tiny", "prompt": "go", "options": long}),
        ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "options": long}),
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "stream": True}),
    ]
    for route, body in requests:
        start = len(server.log_path.read_bytes())
        read = 0
        with httpx.stream("POST", server.url + route, json=body, timeout=60) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                read += bool(line.strip())
                if read == 5:
                    break
        pattern = re.compile(
            rf"POST {re.escape(route)} tiny:latest: canceled by the client after (\d+) generated tokens"
        )
        found: list[str] = []
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:  # the server notices on its next write
            found = pattern.findall(server.log_path.read_bytes()[start:].decode(errors="replace"))
            time.sleep(0.05)
        time.sleep(0.5)  # a second line, if there were one, would come right after the first
        found = pattern.findall(server.log_path.read_bytes()[start:].decode(errors="replace"))
        assert len(found) == 1, (route, server.log())
        assert int(found[0]) >= 4, found  # at least the tokens of the lines read (the role chunk has none)


def test_embed(client: ollama.Client) -> None:
    r = client.embed(model="bert", input=["hello world", "goodbye"])
    assert len(r.embeddings) == 2
    for v in r.embeddings:
        assert abs(sum(x * x for x in v) - 1.0) < 1e-3
    short = client.embed(model="bert", input="hello world", dimensions=8)
    assert len(short.embeddings[0]) == 8
    assert abs(sum(x * x for x in short.embeddings[0]) - 1.0) < 1e-3
    assert r.prompt_eval_count and r.prompt_eval_count > 0
    assert client.embed(model="bert", input=[]).embeddings == []
    legacy = client.embeddings(model="bert", prompt="hello world")
    assert len(legacy.embedding) == len(r.embeddings[0])
    norm = sum(x * x for x in legacy.embedding) ** 0.5
    assert abs(norm - 1.0) > 1e-3, "/api/embeddings returns the raw vector"
    assert [x / norm for x in legacy.embedding] == pytest.approx(
        client.embed(model="bert", input="hello world").embeddings[0], abs=1e-4
    )
    llama = client.embed(model="tiny", input="hi")
    assert len(llama.embeddings[0]) == 64


def test_embed_truncation(client: ollama.Client, server: LiveServer) -> None:
    long_text = "word " * 5000
    ok = client.embed(model="bert", input=long_text)
    assert len(ok.embeddings) == 1
    r = httpx.post(server.url + "/api/embed", json={"model": "bert", "input": long_text, "truncate": False}, timeout=60)
    assert r.status_code == 400 and "exceeds the context length" in r.json()["error"]


@pytest.mark.parametrize("model", ["bert", "tiny"])
def test_embed_with_a_context_smaller_than_a_batch_of_inputs(
    client: ollama.Client, server: LiveServer, model: str
) -> None:
    """num_ctx 3 (Ollama's integration matrix; raised to the minimum of 4): truncated and answered.

    A context smaller than the 16 inputs one decode may take once aborted the runner (SIGABRT, 500).
    """
    small = {"num_ctx": 3}
    r = client.embed(model=model, input=["one two three four five six", "seven"], options=small)
    assert len(r.embeddings) == 2 and r.prompt_eval_count is not None and r.prompt_eval_count <= 8
    assert client.embed(model=model, input="one two three four five six", options=small).prompt_eval_count == 4
    over = httpx.post(
        server.url + "/api/embed",
        json={"model": model, "input": "one two three four five six", "truncate": False, "options": small},
        timeout=60,
    )
    assert over.status_code == 400 and "exceeds the context length" in over.json()["error"]
    if model == "tiny":
        answer = client.generate(model=model, prompt="one", options={**small, "num_predict": 2, "temperature": 0})
        assert answer.done


def bad(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    assert text in r.json()["error"], r.json()


def test_bad_inputs(server: LiveServer) -> None:
    url = server.url
    bad(httpx.post(url + "/api/generate", json={"model": "", "prompt": "x"}), 404, "model '' not found")
    bad(httpx.post(url + "/api/generate", json={"model": "ghost", "prompt": "x"}), 404, "model 'ghost' not found")
    bad(httpx.post(url + "/api/chat", content=b""), 400, "model is required")
    bad(httpx.post(url + "/api/chat", json={"model": "ghost", "messages": []}), 404, "model 'ghost' not found")
    bad(
        httpx.post(url + "/api/embed", json={"model": "ghost", "input": "x"}),
        404,
        'model "ghost" not found, try pulling it first',
    )
    # A name that cannot be a model's is answered as each handler answers a missing one (Ollama's texts).
    bad(
        httpx.post(url + "/api/generate", json={"model": "bad name!", "prompt": "x"}),
        404,
        "model 'bad name!' not found",
    )
    bad(httpx.post(url + "/api/chat", json={"model": "bad name!", "messages": []}), 400, "model is required")
    bad(
        httpx.post(url + "/api/embed", json={"model": "bad name!", "input": "x"}),
        404,
        'model "bad name!" not found, try pulling it first',
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "options": {"num_ctx": "big"}}),
        400,
        'option "num_ctx" must be of type int',
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "options": {"num_ctx": -5}}),
        400,
        "num_ctx",
    )
    bad(
        httpx.post(
            url + "/api/generate", json={"model": "tiny", "prompt": "x", "raw": True, "template": "{{ .Prompt }}"}
        ),
        400,
        "raw mode does not support template, system, or context",
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "format": {"type": 12}}),
        400,
        "invalid format",
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "format": "xml"}), 400, "invalid format"
    )
    bad(
        httpx.post(
            url + "/api/chat",
            json={
                "model": "tiny",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
                ],
            },
        ),
        400,
        "does not support tools",
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "images": ["***not base64***"]}),
        400,
        "base64",
    )
    bad(httpx.post(url + "/api/embed", json={"model": "bert", "input": [1, 2]}), 400, "invalid input type")
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "think": True}),
        400,
        '"tiny" does not support thinking',
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "think": "extreme"}),
        400,
        "invalid think value",
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "top_logprobs": 21}),
        400,
        "top_logprobs must be between 0 and 20",
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "keep_alive": "300"}),
        400,
        "missing unit",
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "bert", "prompt": "x"}),
        400,
        '"bert" does not support generate',
    )
    bad(
        httpx.post(url + "/api/chat", json={"model": "bert", "messages": [{"role": "user", "content": "x"}]}),
        400,
        '"bert" does not support chat',
    )
    bad(
        httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "suffix": "y"}),
        400,
        "registry.ollama.ai/library/tiny:latest does not support insert",
    )
    long_prompt = "word " * 4000
    bad(
        httpx.post(
            url + "/api/generate",
            json={"model": "tiny", "prompt": long_prompt, "truncate": False, "options": {"num_ctx": 256}},
        ),
        400,
        "exceeds the context length",
    )
    assert httpx.get(url + "/").status_code == 200


def test_corrupt_model_fails_cleanly(server: LiveServer, client: ollama.Client, tiny_model_path: Path) -> None:
    """A GGUF whose header reads fine but whose tensor data is garbage: the runner dies, the server does not."""
    data = bytearray(tiny_model_path.read_bytes())
    for i in range(len(data) - 4096, len(data)):
        data[i] = 0xFF
    path = server.models.parent / "corrupt.gguf"
    path.write_bytes(bytes(data))
    create(client, "corrupt", path, template=CHATML)
    r = httpx.post(
        server.url + "/api/generate",
        json={"model": "corrupt", "prompt": "hi", "stream": False, "options": GREEDY},
        timeout=60,
    )
    assert r.status_code in (200, 500)
    if r.status_code == 500:
        assert "corrupt" in r.json()["error"] or "runner" in r.json()["error"]
    assert client.generate(model="tiny", prompt="still alive", options=GREEDY).done


def test_debug_render_only(client: ollama.Client, server: LiveServer) -> None:
    from server.prompt import render_chat

    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    r = httpx.post(
        server.url + "/api/chat",
        json={"model": "tiny", "messages": messages, "_debug_render_only": True, "stream": False},
    ).json()
    assert r["_debug_info"]["rendered_template"] == render_chat(CHATML, messages)
    assert r["_debug_info"]["image_count"] == 0
    g = httpx.post(
        server.url + "/api/generate",
        json={"model": "tiny", "prompt": "Hi", "system": "S", "_debug_render_only": True, "stream": False},
    ).json()
    assert (
        g["_debug_info"]["rendered_template"]
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_prompt_eval_count_is_the_prompt_size_even_when_cached(client: ollama.Client, server: LiveServer) -> None:
    """Ollama documents it as the number of tokens in the prompt; a cached prefix must not hide them."""
    prompt = "a fairly long prompt that will be cached by the second request " * 4
    first = client.generate(model="tiny", prompt=prompt, options=GREEDY)
    second = client.generate(model="tiny", prompt=prompt, options=GREEDY)
    assert second.prompt_eval_count is not None
    assert first.prompt_eval_count == second.prompt_eval_count > 20
    usage = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4},
    ).json()["usage"]
    again = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4},
    ).json()["usage"]
    assert usage["prompt_tokens"] == again["prompt_tokens"] > 20
