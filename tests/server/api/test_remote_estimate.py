"""`/api/pollama/estimate` for a model that is not pulled: manifest and GGUF header by ranged reads.

Against a real docker-registry on loopback, behind a counting TCP proxy, so the
test sees every byte the server fetched. The model's header carries a 6 MB array
(as a big vocabulary's scores are) in a 16 MB file: reading the header by
downloading it, or fetching the bytes the parser skips, would cross the 4 MB the
issue allows.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.fixtures.gguf_models import write_llama_model
from tests.support.live_server import LiveServer, free_port
from tests.support.registry import FaultProxy, RegistryServer, upload_model

MODEL = "application/vnd.ollama.image.model"
PARAMS = "application/vnd.ollama.image.params"
PROJECTOR = "application/vnd.ollama.image.projector"
CONFIG = json.dumps({"model_format": "gguf", "model_family": "llama"}).encode()
MB = 1 << 20


@pytest.fixture(scope="module")
def padded_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `small` model with a 1.5M-entry float array in its header (6 MB), ~16 MB in all."""
    path = tmp_path_factory.mktemp("padded") / "padded.gguf"
    return write_llama_model(path, "small", extra_metadata={"pollama.test.padding": [0.5] * 1_500_000})


def estimate(server: LiveServer, body: dict[str, object]) -> httpx.Response:
    return httpx.post(server.url + "/api/pollama/estimate", json=body, timeout=60)


def test_remote_estimate_reads_little_and_matches_the_pulled_model(
    live_server: LiveServer,
    registry: RegistryServer,
    fault_proxy: FaultProxy,
    registry_client: httpx.Client,
    padded_model: Path,
    tiny_projector_path: Path,
) -> None:
    params = json.dumps({"num_ctx": 3072, "temperature": 0.5}).encode()
    upload_model(
        registry_client,
        registry.url,
        "library/padded",
        "latest",
        [(MODEL, padded_model), (PROJECTOR, tiny_projector_path), (PARAMS, params)],
        config=CONFIG,
    )
    name = f"{fault_proxy.host}/library/padded:latest"
    download = padded_model.stat().st_size + tiny_projector_path.stat().st_size + len(params) + len(CONFIG)
    fault_proxy.reset_counters()

    r = estimate(live_server, {"model": name, "insecure": True})
    assert r.status_code == 200, r.text
    remote = r.json()
    served = fault_proxy.bytes_down
    assert served <= 4 * MB, f"the server fetched {served} bytes to read one header"
    assert remote["header_bytes"] <= served
    assert remote["local"] is False and remote["download_size"] == download
    assert remote["context_length"] == 3072  # the params layer's num_ctx, as after the pull
    assert remote["weights"] == padded_model.stat().st_size + tiny_projector_path.stat().st_size
    assert remote["kv_cache"] > 0 and remote["total"] == remote["weights"] + remote["kv_cache"] + remote["compute"]
    bigger = estimate(live_server, {"model": name, "insecure": True, "options": {"num_ctx": 4096}}).json()
    assert 3 * bigger["kv_cache"] == 4 * remote["kv_cache"]

    pulled = httpx.post(live_server.url + "/api/pull", json={"model": name, "insecure": True, "stream": False})
    assert pulled.status_code == 200 and pulled.json()["status"] == "success", pulled.text
    for options in ({}, {"num_ctx": 4096}):
        local = estimate(live_server, {"model": name, "options": options}).json()
        again = bigger if options else remote
        assert local["local"] is True and "download_size" not in local
        assert abs(local["total"] - again["total"]) <= 0.05 * local["total"]
        for key in ("context_length", "num_parallel", "weights", "kv_cache", "compute", "device"):
            assert local[key] == again[key], key


def test_remote_estimate_errors_are_clear(
    live_server: LiveServer, registry: RegistryServer, registry_client: httpx.Client, tiny_model_path: Path
) -> None:
    host = registry.host
    ghost = estimate(live_server, {"model": f"{host}/library/ghost:latest", "insecure": True})
    assert ghost.status_code == 404
    assert ghost.json()["error"] == f"model '{host}/library/ghost:latest' not found on {host}"

    down = f"127.0.0.1:{free_port()}"
    r = estimate(live_server, {"model": f"{down}/library/tiny:latest", "insecure": True})
    assert r.status_code == 502 and f"its registry cannot be asked: cannot reach {down}" in r.json()["error"]

    upload_model(registry_client, registry.url, "library/notgguf", "latest", [(MODEL, b"PK\x03\x04" + bytes(4096))])
    r = estimate(live_server, {"model": f"{host}/library/notgguf:latest", "insecure": True})
    assert r.status_code == 400
    assert r.json()["error"] == (
        f"the model layer of '{host}/library/notgguf:latest' is not a GGUF model file (wrong magic bytes)"
    )

    upload_model(registry_client, registry.url, "library/nomodel", "latest", [(PARAMS, b'{"num_ctx": 8}')])
    r = estimate(live_server, {"model": f"{host}/library/nomodel:latest", "insecure": True})
    assert r.status_code == 400
    assert "has no model layer (its layers: params)" in r.json()["error"]

    # plain HTTP to a registry without `insecure` is refused, as a pull is
    upload_model(registry_client, registry.url, "library/tiny", "latest", [(MODEL, tiny_model_path)])
    r = estimate(live_server, {"model": f"http://{host}/library/tiny:latest"})
    assert r.status_code == 500 and r.json()["error"] == "insecure protocol http"

    # the server is still up and the store untouched
    ok = estimate(live_server, {"model": f"{host}/library/tiny:latest", "insecure": True})
    assert ok.status_code == 200 and ok.json()["weights"] == tiny_model_path.stat().st_size
    assert httpx.get(live_server.url + "/api/tags").json()["models"] == []
