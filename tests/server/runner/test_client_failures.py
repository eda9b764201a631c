"""A runner that dies, cannot load, or loses its parent: clear errors, no stray processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.errors import RunnerError
from server.runner import messages as m
from server.runner.client import CompletionRequest, LoadOptions, RunnerClient, runner_command
from server.runner.protocol import FrameDecoder, encode
from tests.server.runner.helpers import generate


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_sigkill_mid_stream_fails_requests(tiny_model_path: Path) -> None:
    client = await RunnerClient.start(LoadOptions(str(tiny_model_path), num_ctx=128, num_parallel=2), load_timeout=60)
    exited: list[bool] = []
    client.on_exit(lambda: exited.append(True))
    stream = client.completion(CompletionRequest(prompt="forever", temperature=0, num_predict=-1))
    other = asyncio.create_task(generate(client, "another one", num_predict=-1))
    for _ in range(3):
        assert not (await stream.__anext__()).done
    os.kill(client.pid, signal.SIGKILL)
    with pytest.raises(RunnerError) as info:
        async for _ in stream:
            pass
    message = str(info.value)
    assert str(tiny_model_path) in message and "SIGKILL" in message
    with pytest.raises(RunnerError):
        await other
    assert not client.alive and exited == [True]
    assert not await client.health()
    with pytest.raises(RunnerError):
        await client.tokenize("x")
    late: list[bool] = []
    client.on_exit(lambda: late.append(True))
    assert late == [True]
    await client.close()


async def test_close_ends_the_process(tiny_model_path: Path) -> None:
    client = await RunnerClient.start(LoadOptions(str(tiny_model_path), num_ctx=128), load_timeout=60)
    exited: list[bool] = []
    client.on_exit(lambda: exited.append(True))
    pid = client.pid
    await client.close()
    assert not client.alive and exited == [True] and _gone(pid)
    with pytest.raises(RunnerError):
        await client.tokenize("x")


@pytest.mark.parametrize("fixture", ["truncated_gguf_path", "bad_magic_path"])
async def test_corrupt_model_fails_to_load(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    with pytest.raises(RunnerError) as info:
        await RunnerClient.start(LoadOptions(str(path), num_ctx=128), load_timeout=60)
    assert str(path) in str(info.value)
    assert "load" in str(info.value)


async def test_missing_model_fails_to_load(tmp_path: Path) -> None:
    path = tmp_path / "nope.gguf"
    with pytest.raises(RunnerError, match="not found"):
        await RunnerClient.start(LoadOptions(str(path)), load_timeout=60)


def test_runner_exits_when_stdin_closes(tiny_model_path: Path) -> None:
    proc = subprocess.Popen(runner_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(encode(m.Load(m.LoadOptions(str(tiny_model_path), num_ctx=128))))
    proc.stdin.write(encode(m.Completion(1, m.CompletionRequest(prompt="x", temperature=0, num_predict=-1))))
    proc.stdin.flush()
    decoder = FrameDecoder()
    seen: list[object] = []
    while not any(isinstance(x, m.Piece) for x in seen):
        seen += decoder.feed(proc.stdout.readline())
    assert isinstance(seen[0], m.Loaded)
    started = time.monotonic()
    proc.stdin.close()  # the parent goes away while a request is generating
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 10


def test_runner_command(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner_command() == [sys.executable, "-m", "server.runner"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert runner_command() == [sys.executable, "runner"]


async def test_bert_embeddings(bert_model_path: Path) -> None:
    from server.errors import BadRequest

    client = await RunnerClient.start(LoadOptions(str(bert_model_path), num_ctx=512, embedding=True), load_timeout=60)
    try:
        assert client.info is not None and client.info.embedding_only
        assert client.info.pooling == "mean" and client.info.num_parallel == 1
        inputs = ["hello world", "the quick brown fox", "hello world"]
        norm = await client.embed(inputs, truncate=True, normalize=True, dimensions=None)
        assert len(norm.vectors) == 3
        assert norm.vectors[0] == pytest.approx(norm.vectors[2], abs=1e-6)
        assert all(sum(x * x for x in v) == pytest.approx(1.0, rel=1e-4) for v in norm.vectors)
        raw = await client.embed(["hello world"], truncate=True, normalize=False, dimensions=None)
        assert sum(x * x for x in raw.vectors[0]) != pytest.approx(1.0, rel=1e-3)
        cut = await client.embed(["hello world"], truncate=True, normalize=True, dimensions=8)
        assert len(cut.vectors[0]) == 8 and sum(x * x for x in cut.vectors[0]) == pytest.approx(1.0, rel=1e-4)
        long = " ".join(["hello"] * 600)
        fitted = await client.embed([long], truncate=True, normalize=True, dimensions=None)
        assert fitted.prompt_eval_count == 512
        with pytest.raises(BadRequest, match="the input length exceeds the context length"):
            await client.embed([long], truncate=False, normalize=True, dimensions=None)
        with pytest.raises(BadRequest, match="does not support generation"):
            await generate(client, "hi")
    finally:
        await client.close()
