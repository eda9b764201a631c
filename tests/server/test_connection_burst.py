"""A burst of clients at a model that is still loading: every one gets an HTTP answer.

Apps reconnect all at once when the desktop wakes or a model is first asked
for; with Hypercorn's default listen backlog of 100, the connections past it
overflowed the kernel's accept queue and were reset or dropped. Ollama's
listener takes the system's maximum (Go's `net.Listen` reads `somaxconn`), and
so does pollama's (`server.app.listen_backlog`).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.app import hypercorn_config, listen_backlog
from server.config import load_config
from tests.support.live_server import LiveServer

CLIENTS = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("burst") / "models"
    env = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "512", "OLLAMA_KEEP_ALIVE": "5m"}
    srv = LiveServer(models, env=env).start()
    digest = "sha256:" + __import__("hashlib").sha256(tiny_model_path.read_bytes()).hexdigest()
    with open(tiny_model_path, "rb") as f:
        assert httpx.post(f"{srv.url}/api/blobs/{digest}", content=f.read(), timeout=60).status_code in (200, 201)
    created = httpx.post(
        f"{srv.url}/api/create", json={"model": "tiny", "files": {"m.gguf": digest}, "stream": False}, timeout=60
    )
    assert created.status_code == 200, created.text
    try:
        yield srv
    finally:
        srv.stop()


def test_the_listen_backlog_is_the_systems_maximum() -> None:
    backlog = listen_backlog()
    somaxconn = Path("/proc/sys/net/core/somaxconn")
    if somaxconn.exists():
        assert backlog == int(somaxconn.read_text())
    assert backlog >= 128
    assert hypercorn_config(load_config(settings={})).backlog == backlog


async def _one_request(port: int, body: bytes, connected: asyncio.Event) -> int | str:
    """One client on its own connection: the HTTP status, or what went wrong instead.

    `connected` is set once the TCP handshake is done (the kernel did it, whether or
    not the server has accepted the connection yet).
    """
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return f"connect: {exc!r}"
    connected.set()
    try:
        writer.write(
            b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=300)
        if not status_line:
            return "closed without an answer"
        await reader.read()  # the whole answer, so the server is not cut off mid-write
        return int(status_line.split()[1])
    except (OSError, asyncio.IncompleteReadError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


def test_600_clients_at_an_unloaded_model_each_get_an_answer(server: LiveServer) -> None:
    body = json.dumps({"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}).encode()

    async def burst() -> tuple[int, list[int | str]]:
        # The server is paused while the clients connect, as a server busy loading a model
        # is slow to accept: the kernel alone must hold the connections, in the accept queue.
        # With a short queue, the clients past it see their handshake dropped and retried
        # after 1, 3, 7 s..., and give up or are reset.
        assert server.proc is not None
        events = [asyncio.Event() for _ in range(CLIENTS)]
        server.proc.send_signal(signal.SIGSTOP)
        try:
            requests = [asyncio.ensure_future(_one_request(server.port, body, e)) for e in events]
            await asyncio.wait([asyncio.ensure_future(e.wait()) for e in events], timeout=2.5)
            held = sum(e.is_set() for e in events)
        finally:
            server.proc.send_signal(signal.SIGCONT)
        return held, await asyncio.gather(*requests)

    held, answers = asyncio.run(burst())
    outcomes = Counter(answers)
    assert held == CLIENTS, f"only {held} of {CLIENTS} connections were queued by the kernel"
    failures = {k: v for k, v in outcomes.items() if k not in (200, 503)}
    assert not failures, f"{outcomes}"
    assert outcomes[200] >= 1
    # the server is still there and still serves
    assert httpx.get(server.url + "/api/version", timeout=10).status_code == 200
