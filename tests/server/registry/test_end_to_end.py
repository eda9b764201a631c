"""End to end: a real `pollama serve`, a real registry, the official `ollama` client."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import httpx
import ollama
import pytest

from server.registry.parts import PartSizing
from server.store.manifest import MODEL
from tests.support.live_server import LiveServer, free_port
from tests.support.registry import FaultProxy, Faults, RegistryServer, upload_model


def model_files(models: Path, host: str, repo: str, tag: str) -> tuple[bytes, dict[str, bytes]]:
    manifest = (models / "manifests" / host / repo / tag).read_bytes()
    doc = json.loads(manifest)
    digests = [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]
    return manifest, {d: (models / "blobs" / d.replace(":", "-")).read_bytes() for d in digests}


def test_push_delete_pull_with_the_ollama_client(
    live_server: LiveServer, registry: RegistryServer, tiny_model_path: Path
) -> None:
    client = ollama.Client(host=live_server.url)
    name = f"{registry.host}/library/tiny:latest"
    digest = client.create_blob(tiny_model_path)
    assert client.create(model=name, files={"tiny.gguf": digest}).status == "success"
    before = model_files(live_server.models, registry.host, "library/tiny", "latest")
    model_id = next(m.digest for m in client.list().models if m.model == name)

    statuses = [p.status for p in client.push(name, insecure=True, stream=True)]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    client.delete(name)
    assert client.list().models == []

    progress = list(client.pull(name, insecure=True, stream=True))
    assert progress[0].status == "pulling manifest"
    assert [p.status for p in progress[-3:]] == ["verifying sha256 digest", "writing manifest", "success"]
    assert model_files(live_server.models, registry.host, "library/tiny", "latest") == before
    assert next(m.digest for m in client.list().models if m.model == name) == model_id
    details = client.show(name).details
    assert details is not None and details.format == "gguf"


def test_pull_errors_through_the_api(live_server: LiveServer, registry: RegistryServer) -> None:
    url = live_server.url
    r = httpx.post(
        f"{url}/api/pull", json={"model": f"{registry.host}/library/none", "insecure": True, "stream": False}
    )
    assert r.status_code == 404 and r.json() == {"error": "pull model manifest: file does not exist"}
    for bad in ("../../etc/passwd", "a/../../b", "x:../y", ""):
        r = httpx.post(f"{url}/api/pull", json={"model": bad})
        assert r.status_code == 400 and r.json() == {"error": "invalid model name"}, bad
    r = httpx.post(f"{url}/api/pull", json={"model": f"{registry.host}/library/none", "insecure": True})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    r = httpx.post(
        f"{url}/api/push", json={"model": f"{registry.host}/library/none", "insecure": True, "stream": False}
    )
    assert r.status_code == 404


def test_an_unreachable_registry_is_a_502_for_pull_push_and_create(
    live_server: LiveServer, tiny_model_path: Path
) -> None:
    """The registry failed, not pollama: Bad Gateway (the spec's `RegistryUnreachable`), found by the fuzz."""
    down = f"127.0.0.1:{free_port()}"
    client = ollama.Client(host=live_server.url)
    client.create(model=f"{down}/library/tiny", files={"m.gguf": client.create_blob(tiny_model_path)})
    for route, body in (
        ("/api/pull", {"model": f"{down}/library/ghost"}),
        ("/api/push", {"model": f"{down}/library/tiny"}),
        ("/api/create", {"model": "copy", "from": f"{down}/library/ghost"}),
    ):
        r = httpx.post(live_server.url + route, json={**body, "insecure": True, "stream": False}, timeout=60)
        assert r.status_code == 502, (route, r.text)
        assert f"cannot reach {down}" in r.json()["error"], route
    r = httpx.post(live_server.url + "/api/pull", json={"model": f"{down}/library/ghost", "insecure": True})
    assert r.status_code == 200  # a stream that has started ends with the error line instead
    assert f"cannot reach {down}" in json.loads(r.text.splitlines()[-1])["error"]
    assert [m.model for m in client.list().models] == [f"{down}/library/tiny:latest"]


def test_pull_through_http_proxy_from_environment(
    models_dir: Path, registry: RegistryServer, registry_client: httpx.Client
) -> None:
    upload_model(registry_client, registry.url, "library/m", "latest", [(MODEL, b"weights through a proxy")])
    proxy = FaultProxy(("127.0.0.1", registry.port)).start()
    server = LiveServer(models_dir, env={"HTTP_PROXY": f"http://{proxy.host}", "NO_PROXY": "", "no_proxy": ""}).start()
    try:
        # This host does not resolve: only the proxy can reach "it".
        r = httpx.post(
            f"{server.url}/api/pull",
            json={"model": "registry.invalid:5000/library/m", "insecure": True, "stream": False},
            timeout=60,
        )
        assert r.json() == {"status": "success"}, r.text
        assert any(b"http://registry.invalid:5000/v2/library/m/manifests/latest" in line for line in proxy.requests)
    finally:
        server.stop()
        proxy.stop()


def test_tls_failure_is_clear_and_ssl_cert_file_fixes_it(models_dir: Path, tmp_path: Path) -> None:
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.support.live_server import free_port

    cert, key = _self_signed(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        for env, expected in (({}, "could not be verified"), ({"SSL_CERT_FILE": str(cert)}, "file does not exist")):
            server = LiveServer(models_dir, env=env).start()
            try:
                r = httpx.post(
                    f"{server.url}/api/pull", json={"model": f"127.0.0.1:{port}/library/m", "stream": False}, timeout=60
                )
                assert expected in r.json()["error"], r.text
                if not env:
                    assert "SSL_CERT_FILE" in r.json()["error"]
            finally:
                server.stop()
    finally:
        httpd.shutdown()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_serve_creates_the_ed25519_key(live_server: LiveServer, temp_home: Path) -> None:
    private = temp_home / ".ollama" / "id_ed25519"
    deadline = time.monotonic() + 10
    while not private.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert private.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (temp_home / ".ollama" / "id_ed25519.pub").read_text().startswith("ssh-ed25519 AAAA")


@pytest.mark.slow_pull
def test_pull_resumes_after_sigkill(
    models_dir: Path, registry: RegistryServer, registry_client: httpx.Client, bench_q8_model_path: Path
) -> None:
    """SIGKILL partway through a ~260 MB blob; after restart only the rest (plus at most one part) is fetched."""
    upload_model(registry_client, registry.url, "library/bench", "latest", [(MODEL, bench_q8_model_path)])
    total = bench_q8_model_path.stat().st_size
    part_size = PartSizing().part_size(total)  # 32 MB (Ollama's sizing would make it 100 MB)
    proxy = FaultProxy(("127.0.0.1", registry.port), Faults(rate=40_000_000)).start()
    name = f"{proxy.host}/library/bench"
    server = LiveServer(models_dir).start()
    try:
        seen = 0
        with httpx.stream("POST", f"{server.url}/api/pull", json={"model": name, "insecure": True}, timeout=120) as r:
            for line in r.iter_lines():
                event = json.loads(line)
                if event.get("total") == total:
                    seen = event.get("completed", 0)
                    if seen > 0.4 * total:
                        server.kill()
                        break
        assert 0.4 * total < seen < total
        server.start()
        proxy.reset_counters()
        proxy.faults.rate = 0
        r = httpx.post(f"{server.url}/api/pull", json={"model": name, "insecure": True, "stream": False}, timeout=120)
        assert r.json() == {"status": "success"}, r.text
        fetched = proxy.bytes_down
        assert fetched <= (total - seen) + part_size, (fetched, total, seen)
        digest = hashlib.sha256(bench_q8_model_path.read_bytes()).hexdigest()
        assert (models_dir / "blobs" / f"sha256-{digest}").stat().st_size == total
        assert not [p for p in (models_dir / "blobs").iterdir() if "partial" in p.name]
    finally:
        server.stop()
        proxy.stop()
