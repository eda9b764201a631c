"""The Vulkan bundle on Mesa's software Vulkan device (lavapipe): the one GPU backend CI can run
without a GPU. Every layer offloaded, `/api/ps` reports the model in VRAM, the scheduler sees the
device's memory, and greedy output equals the same bundle's on the CPU.

Needs Debian's `glslc` and `libvulkan-dev` to build and `mesa-vulkan-drivers` to run
(.ci/apt-packages-vulkan.txt). ggml leaves CPU-type Vulkan devices out unless
GGML_VK_VISIBLE_DEVICES names them, so the server gets `GGML_VK_VISIBLE_DEVICES=0`; without it
the same bundle runs on the CPU and says why (checked too).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx
import ollama
import pytest

from tests.fixtures.gguf_models import cached_model
from tests.packaging.bundles import build
from tests.support.live_server import LiveServer

pytest.importorskip("PyInstaller", reason="pyinstaller is in the test extra")
LAVAPIPE = Path("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("glslc") is None or not LAVAPIPE.exists(),
    reason="needs glslc, libvulkan-dev and mesa-vulkan-drivers (.ci/apt-packages-vulkan.txt)",
)

GREEDY = {"temperature": 0, "top_k": 1, "seed": 7, "num_predict": 24}
PROMPT = "the quick brown fox"


def generate(client: ollama.Client, model: str, num_gpu: int) -> tuple[str, float]:
    out = client.generate(model=model, prompt=PROMPT, raw=True, options={**GREEDY, "num_gpu": num_gpu})
    assert out.eval_count and out.eval_duration
    return str(out.response), out.eval_count / (out.eval_duration / 1e9)


def test_vulkan_bundle_offloads_every_layer_to_lavapipe_with_the_cpus_output(tmp_path: Path) -> None:
    built = build(tmp_path, "--backend", "vulkan")
    assert (built.lib / "libggml-vulkan.so").is_file()
    assert list(built.lib.glob("libggml-cpu-*.so")), "a Vulkan bundle carries the CPU variants too"

    env = {"HOME": str(tmp_path), "GGML_VK_VISIBLE_DEVICES": "0", "OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_DEBUG": "1"}
    server = LiveServer(tmp_path / "models", command=[str(built.exe), "serve"], env=env).start(timeout=60)
    try:
        devices = httpx.get(server.url + "/api/pollama/devices", timeout=120).json()
        vulkan = [d for d in devices["devices"] if d["kind"] == "vulkan"]
        assert len(vulkan) == 1 and "llvmpipe" in vulkan[0]["name"], devices
        assert vulkan[0]["total_memory"] >= vulkan[0]["free_memory"] > 0
        backends = [b for b in devices["ggml"]["backends"] if b != "RPC"]  # the bundle's RPC module loads too
        assert backends[:1] == ["Vulkan"] and "CPU" in backends and "RPC" in devices["ggml"]["backends"]

        client = ollama.Client(host=server.url)
        speeds = {}
        for preset in ("tiny", "small"):
            name = f"{preset}-vk"
            client.create(model=name, files={"m.gguf": client.create_blob(cached_model(preset))})
            on_gpu, speeds[f"{preset} vulkan"] = generate(client, name, -1)
            (ps,) = client.ps().models
            assert ps.size and ps.size_vram == ps.size, f"{preset}: not every layer on the Vulkan device: {ps}"
            on_cpu, speeds[f"{preset} cpu"] = generate(client, name, 0)  # reloads with num_gpu 0
            (ps,) = client.ps().models
            assert ps.size_vram == 0
            assert on_gpu == on_cpu and len(on_gpu) > 10, (preset, on_gpu, on_cpu)
            client.generate(model=name, keep_alive=0)
        print("decode tok/s:", {k: round(v) for k, v in speeds.items()})
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")  # the whole log (runner lines are DEBUG)
    assert "device Vulkan0 (Vulkan, gpu): llvmpipe" in log, log[-3000:]
    assert "CPU backend" in log and "offloaded 5/5 layers to GPU" in log

    # Without the variable ggml skips the CPU-type device: the model runs on the CPU, the
    # runner says why, and the scheduler plans with system memory.
    del env["GGML_VK_VISIBLE_DEVICES"]
    server = LiveServer(tmp_path / "models2", command=[str(built.exe), "serve"], env=env).start(timeout=60)
    try:
        devices = httpx.get(server.url + "/api/pollama/devices", timeout=120).json()
        assert devices["devices"] == []
        (skip,) = devices["ggml"]["skipped"]
        assert skip["backend"] == "vulkan" and "GGML_VK_VISIBLE_DEVICES" in skip["reason"]
        client = ollama.Client(host=server.url)
        client.create(model="tiny", files={"m.gguf": client.create_blob(cached_model("tiny"))})
        generate(client, "tiny", -1)
        (ps,) = client.ps().models
        assert ps.size_vram == 0
    finally:
        server.stop()
    assert "vulkan backend not used, running on the CPU" in server.log_path.read_text(errors="replace")
