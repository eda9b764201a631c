"""pollama's extension endpoints: devices and the will-it-fit estimate."""

from pathlib import Path

import httpx
import ollama

from server.gpu import gpu_devices
from tests.support.live_server import LiveServer, free_port

TEMPLATE = "{{ .Prompt }}"


def test_devices_report_system_memory(live_server: LiveServer) -> None:
    body = httpx.get(live_server.url + "/api/pollama/devices").json()
    assert body["system_memory"]["total"] >= body["system_memory"]["free"] > 0
    assert isinstance(body["devices"], list)  # empty on a machine without a GPU


def test_estimate_grows_with_context(live_server: LiveServer, small_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    digest = client.create_blob(small_model_path)
    client.create(model="small", files={"m.gguf": digest}, template=TEMPLATE)
    small = httpx.post(
        live_server.url + "/api/pollama/estimate", json={"model": "small", "options": {"num_ctx": 512}}
    ).json()
    big = httpx.post(
        live_server.url + "/api/pollama/estimate", json={"model": "small", "options": {"num_ctx": 4096}}
    ).json()
    assert small["weights"] == big["weights"] == small_model_path.stat().st_size
    assert big["kv_cache"] == 8 * small["kv_cache"] > 0
    assert small["total"] == small["weights"] + small["kv_cache"] + small["compute"]
    assert small["fits"] is True and small["device"] == ("gpu" if gpu_devices() else "cpu")
    # a model that is not local is looked up on its registry; one that cannot be reached says so
    ghost = f"127.0.0.1:{free_port()}/library/ghost:latest"
    r = httpx.post(live_server.url + "/api/pollama/estimate", json={"model": ghost, "insecure": True})
    assert r.status_code == 502
    assert r.json()["error"].startswith(
        f"'{ghost}' is not a local model, and its registry cannot be asked: cannot reach"
    )
