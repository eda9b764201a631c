"""RPC workers: `pollama worker` processes on loopback hold a model's layers for a server.

The tests marked `rpc` need llama.cpp with its RPC backend, which the plain
install lacks: they build it once (tests/support/rpc_build.py, cached with the
bundle wheels) and are left out of the default suite (`-m rpc` runs them).
The rest run everywhere: parsing, start-up errors, and a runner told about a
worker it cannot use still serving the model locally.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from server.config import ConfigError, load_config
from server.runner.rpc_endpoints import DEFAULT_PORT, Endpoint, parse_workers
from tests.support.live_server import REPO, LiveServer, free_port

GREEDY = {"temperature": 0, "seed": 1, "num_predict": 24}
PROMPT = "Once upon a time"


def _has_rpc(python: str = sys.executable) -> bool:
    probe = "import llama_cpp.llama_cpp as L, ctypes; f = L._lib.ggml_backend_reg_by_name; f.restype = ctypes.c_void_p; f.argtypes = [ctypes.c_char_p]; from server.runner import ggml_backends; ggml_backends.load(); print(bool(f(b'RPC')))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=REPO)
    return done.stdout.strip().endswith("True")


# ----------------------------------------------------------------------------- everywhere


def test_worker_lists_parse() -> None:
    assert parse_workers(None) == () and parse_workers(" ") == ()
    assert parse_workers("10.0.0.2:50052, box , 10.0.0.2:50052,[::1]:7") == (
        Endpoint("10.0.0.2", 50052),
        Endpoint("box", DEFAULT_PORT),
        Endpoint("::1", 7),
    )
    assert str(Endpoint("::1", 7)) == "[::1]:7" and Endpoint("127.0.0.1", 1).is_loopback
    assert not Endpoint("192.168.1.4", 1).is_loopback and Endpoint("localhost", 1).is_loopback
    for bad in ("box:0", "box:70000", "box:http", ":50052"):
        with pytest.raises(ValueError, match="invalid RPC worker"):
            parse_workers(bad)


def test_bad_worker_list_is_a_start_up_error() -> None:
    with pytest.raises(ConfigError, match="POLLAMA_RPC_WORKERS: invalid RPC worker 'box:0'"):
        load_config({"POLLAMA_RPC_WORKERS": "box:0"}, settings={})
    config = load_config({}, settings={"POLLAMA_RPC_WORKERS": "10.1.1.1:9000,10.1.1.2"})
    assert config.rpc_workers == ("10.1.1.1:9000", f"10.1.1.2:{DEFAULT_PORT}")


def test_worker_command_errors(tmp_path: Path) -> None:
    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app", "worker", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)

    bad = worker("--port", "0")
    assert bad.returncode == 1 and "Error: argument --port: invalid port '0'" in bad.stderr
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = worker("--port", str(taken.getsockname()[1]))
    assert busy.returncode == 1 and "Error: cannot listen on 127.0.0.1:" in busy.stderr
    if not _has_rpc():
        missing = worker("--port", str(free_port()))
        assert missing.returncode == 1
        assert 'no RPC backend: reinstall llama-cpp-python with CMAKE_ARGS="-DGGML_RPC=ON"' in missing.stderr


def test_unusable_workers_leave_the_model_running_locally(tmp_path: Path, tiny_model_path: Path) -> None:
    """A worker that is down (or a build without RPC): a line in the log, and the model runs here."""
    dead = f"127.0.0.1:{free_port()}"
    server = LiveServer(tmp_path / "models", env={"POLLAMA_RPC_WORKERS": dead}).start()
    try:
        client = ollama.Client(host=server.url)
        client.create(model="tiny", files={"m.gguf": client.create_blob(tiny_model_path)})
        out = client.generate(model="tiny", prompt=PROMPT, raw=True, options=GREEDY)
        assert out.eval_count == GREEDY["num_predict"]
        assert "devices" not in httpx.get(server.url + "/api/ps").json()["models"][0]
        log = server.log()
        assert (
            f"skipping RPC worker {dead}" in log or "not using RPC workers: this build of llama.cpp has no RPC" in log
        )
    finally:
        server.stop()


# ----------------------------------------------------------------------------- with the RPC build

rpc = pytest.mark.rpc


@pytest.fixture(scope="module")
def rpc_python() -> str:
    from tests.support.rpc_build import rpc_python as build

    python = str(build())
    assert _has_rpc(python), "the RPC build has no RPC backend"
    return python


class Worker:
    def __init__(self, python: str, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log_path = log
        command = [python, "-m", "app", "worker", "--port", str(self.port), "--threads", "1", *extra]
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            import socket

            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{log.read_text()}") from None
                time.sleep(0.1)
        raise TimeoutError("worker did not listen")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def workers(rpc_python: str, tmp_path: Path) -> Iterator[list[Worker]]:
    started = [Worker(rpc_python, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        yield started
    finally:
        for w in started:
            w.kill()


@pytest.fixture
def split_server(
    rpc_python: str, workers: list[Worker], tmp_path: Path, bench_model_path: Path
) -> Iterator[LiveServer]:
    """A server (on the RPC build) told about both workers, with the bench model created."""
    env = {"POLLAMA_RPC_WORKERS": ",".join(w.endpoint for w in workers), "OLLAMA_KEEP_ALIVE": "5m"}
    server = LiveServer(tmp_path / "models", env=env, command=[rpc_python, "-m", "app", "serve"]).start(timeout=60)
    try:
        client = ollama.Client(host=server.url)
        client.create(model="bench", files={"m.gguf": client.create_blob(bench_model_path)}, template="{{ .Prompt }}")
        yield server
    finally:
        server.stop()


def _generate(url: str, **options: object) -> str:
    r = httpx.post(
        url + "/api/generate",
        json={"model": "bench", "prompt": PROMPT, "raw": True, "stream": False, "options": {**GREEDY, **options}},
        timeout=600,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["response"])


@rpc
def test_model_split_across_two_workers_matches_local(workers: list[Worker], split_server: LiveServer) -> None:
    server = split_server
    devices = httpx.get(server.url + "/api/pollama/devices", timeout=120).json()
    described = json.dumps(devices)
    assert all(w.endpoint in described for w in workers), devices

    split = _generate(server.url)
    entry = httpx.get(server.url + "/api/ps").json()["models"][0]
    placed = {d["name"]: d["size"] for d in entry["devices"]}
    for w in workers:
        held = [size for name, size in placed.items() if name.startswith("RPC") and w.endpoint in name]
        assert held and held[0] > 0, placed
    assert entry["size_vram"] > 0

    local = _generate(server.url, num_gpu=0)  # a reload with every layer on this CPU
    assert local == split
    assert "devices" not in httpx.get(server.url + "/api/ps").json()["models"][0]


@rpc
def test_worker_killed_mid_stream(workers: list[Worker], split_server: LiveServer) -> None:
    server = split_server
    _generate(server.url)  # loaded across both workers
    body = {"model": "bench", "prompt": PROMPT, "raw": True, "options": {**GREEDY, "num_predict": 2000}}
    lines: list[dict[str, object]] = []
    with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=600) as r:
        for raw in r.iter_lines():
            if not raw:
                continue
            lines.append(json.loads(raw))
            if len(lines) == 3:
                workers[1].kill()
    assert not lines[-1].get("done"), "the stream should not end as if it had finished"
    assert "error" in lines[-1], lines[-1]

    after = _generate(server.url)  # a new runner, on what is left
    assert after
    entry = httpx.get(server.url + "/api/ps").json()["models"][0]
    names = " ".join(d["name"] for d in entry.get("devices", []))
    assert workers[0].endpoint in names and workers[1].endpoint not in names
    assert f"skipping RPC worker {workers[1].endpoint}" in server.log()


@rpc
def test_wide_bind_warns(rpc_python: str, tmp_path: Path) -> None:
    log = tmp_path / "wide.log"
    worker = Worker(rpc_python, log, "--host", "0.0.0.0")
    try:
        time.sleep(0.5)
        text = log.read_text()
        assert "WARNING: the RPC protocol has no authentication" in text
        assert "Starting RPC server" in text
    finally:
        worker.kill()
