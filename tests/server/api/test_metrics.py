"""`GET /metrics`: read back with prometheus_client's own text parser, against a live server with
real runners; every counter is shown to move by what the requests did."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.api.metrics import may_scrape
from server.store.manifest import MODEL
from tests.server.api.test_openai_api import CHATML, create
from tests.support.live_server import LiveServer, free_port
from tests.support.registry import RegistryServer, upload_model

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, **kwargs: object) -> Samples:
    r = httpx.get(url + "/metrics", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("metrics") / "models"
    srv = LiveServer(models, env={"OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_NUM_PARALLEL": "1"}).start()
    try:
        create(ollama.Client(host=srv.url), "tiny", tiny_model_path, template=CHATML)
        yield srv
    finally:
        srv.stop()


def test_requests_and_tokens_are_counted(server: LiveServer) -> None:
    before = scrape(server.url)
    client = ollama.Client(host=server.url)
    reply = client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 5})
    streamed = list(client.generate(model="tiny", prompt="hello", options={"num_predict": 4}, stream=True))
    with pytest.raises(ollama.ResponseError):
        client.chat(model="no-such-model", messages=[])
    after = scrape(server.url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"route": "/api/chat", "method": "POST"}
    assert moved("pollama_requests_total", **chat, status="200", model="tiny") == 1
    assert moved("pollama_requests_total", route="/api/generate", method="POST", status="200", model="tiny") == 1
    # an unknown model is counted without its name: clients cannot grow the label set at will
    assert moved("pollama_requests_total", **chat, status="404", model="") == 1
    assert moved("pollama_request_duration_seconds_count", route="/api/chat") == 2

    final = streamed[-1]
    assert reply.eval_count and final.eval_count and reply.prompt_eval_count and final.prompt_eval_count
    assert moved("pollama_generated_tokens_total", model="tiny") == reply.eval_count + final.eval_count
    assert moved("pollama_prompt_tokens_total", model="tiny") == reply.prompt_eval_count + final.prompt_eval_count
    assert moved("pollama_time_to_first_token_seconds_count", model="tiny") == 2
    assert moved("pollama_time_per_output_token_seconds_count", model="tiny") == 2
    decode = moved("pollama_time_per_output_token_seconds_sum", model="tiny")
    assert decode == pytest.approx(
        (reply.eval_duration or 0) / reply.eval_count / 1e9 + (final.eval_duration or 0) / final.eval_count / 1e9
    )


def test_openai_streams_and_embeddings_are_counted(server: LiveServer) -> None:
    before = scrape(server.url)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage]
    after = scrape(server.url)
    assert usage and usage[-1].completion_tokens
    labels = {"route": "/v1/chat/completions", "method": "POST", "status": "200", "model": "tiny"}
    assert value(after, "pollama_requests_total", **labels) - value(before, "pollama_requests_total", **labels) == 1
    out = value(after, "pollama_generated_tokens_total", model="tiny") - value(
        before, "pollama_generated_tokens_total", model="tiny"
    )
    assert out == usage[-1].completion_tokens


def test_loaded_models_and_queue_are_read_at_scrape_time(server: LiveServer) -> None:
    client = ollama.Client(host=server.url)
    client.generate(model="tiny", prompt="x", options={"num_predict": 1})
    samples = scrape(server.url)
    [ps] = client.ps().models
    assert value(samples, "pollama_loaded_models") == 1
    ram = value(samples, "pollama_loaded_model_memory_bytes", model="tiny:latest", memory="ram")
    vram = value(samples, "pollama_loaded_model_memory_bytes", model="tiny:latest", memory="vram")
    assert ram + vram == ps.size and vram == ps.size_vram
    assert value(samples, "pollama_queue_depth") == 0
    assert value(samples, "process_resident_memory_bytes") > 0

    # One slot (OLLAMA_NUM_PARALLEL=1): while a long generation holds it, a second request waits.
    started = threading.Event()
    stop = threading.Event()

    def long_generation() -> None:
        with httpx.stream(
            "POST",
            server.url + "/api/generate",
            json={"model": "tiny", "prompt": "x", "options": {"num_predict": 100000}},
            timeout=300,
        ) as r:
            for _ in r.iter_lines():
                started.set()
                if stop.is_set():
                    return  # closing the connection cancels the generation

    def waiting_request() -> None:
        httpx.post(
            server.url + "/api/generate",
            json={"model": "tiny", "prompt": "y", "stream": False, "options": {"num_predict": 1}},
            timeout=300,
        )

    holder = threading.Thread(target=long_generation)
    holder.start()
    waiter = threading.Thread(target=waiting_request)
    try:
        assert started.wait(120)
        waiter.start()
        depth = 0.0
        for _ in range(600):  # until the waiter has arrived (no timing is asserted)
            depth = value(scrape(server.url), "pollama_queue_depth")
            if depth:
                break
            time.sleep(0.05)
        assert depth == 1
    finally:
        stop.set()
        holder.join(60)
        if waiter.ident is not None:  # started
            waiter.join(120)
    assert value(scrape(server.url), "pollama_queue_depth") == 0


def test_pull_bytes_are_counted(models_dir: Path, registry: RegistryServer, registry_client: httpx.Client) -> None:
    weights = bytes(range(256)) * 4096  # 1 MiB
    upload_model(registry_client, registry.url, "library/m", "latest", [(MODEL, weights)], config=b'{"a":1}')
    srv = LiveServer(models_dir).start()
    try:
        before = value(scrape(srv.url), "pollama_pull_bytes_total")
        client = ollama.Client(host=srv.url)
        assert client.pull(f"{registry.host}/library/m", insecure=True).status == "success"
        after = value(scrape(srv.url), "pollama_pull_bytes_total")
        assert after - before == len(weights) + len(b'{"a":1}')
        # pulling what is here already downloads nothing
        client.pull(f"{registry.host}/library/m", insecure=True)
        assert value(scrape(srv.url), "pollama_pull_bytes_total") == after
    finally:
        srv.stop()


# ---- who may scrape ----------------------------------------------------------------------------


def test_loopback_may_always_scrape_others_only_when_enabled() -> None:
    assert may_scrape("127.0.0.1", exposed=False) and may_scrape("::1", exposed=False)
    assert not may_scrape("192.0.2.7", exposed=False) and not may_scrape(None, exposed=False)
    assert not may_scrape("fe80::1%eth0", exposed=False) and may_scrape("192.0.2.7", exposed=True)


def _lan_address() -> str | None:
    """An address of this machine that is not loopback (the tests reach it without leaving the host)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("enabled", [False, True])
def test_metrics_beyond_loopback_need_pollama_metrics(models_dir: Path, enabled: bool) -> None:
    lan = _lan_address()
    if lan is None:
        pytest.skip("this machine has no address beyond loopback")
    port = free_port()
    env = {"OLLAMA_HOST": f"0.0.0.0:{port}", **({"POLLAMA_METRICS": "1"} if enabled else {})}
    srv = LiveServer(models_dir, env=env, port=port).start()
    try:
        r = httpx.get(f"http://{lan}:{port}/metrics", headers={"Host": f"{lan}:{port}"}, trust_env=False)
        if enabled:
            assert r.status_code == 200 and "pollama_queue_depth" in r.text
        else:
            assert r.status_code == 403
            assert r.json() == {
                "error": "metrics are served to loopback clients only; set POLLAMA_METRICS=1 to serve them to the network"
            }
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).status_code == 200
    finally:
        srv.stop()
