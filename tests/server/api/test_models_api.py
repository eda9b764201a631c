"""Model management through the official `ollama` client against a live `pollama serve`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import httpx
import ollama
import pytest

from server import OLLAMA_API_VERSION, __version__
from tests.fixtures.gguf_models import write_llama_model
from tests.support.live_server import LiveServer

TEMPLATE = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"


def upload(client: ollama.Client, path: Path) -> str:
    return client.create_blob(path)


def create_tiny(client: ollama.Client, name: str, model_path: Path, **kwargs: Any) -> list[str | None]:
    digest = upload(client, model_path)
    statuses = [p.status for p in client.create(model=name, files={"model.gguf": digest}, stream=True, **kwargs)]
    assert statuses[-1] == "success"
    return statuses


def test_full_lifecycle(live_server: LiveServer, tiny_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    digest = client.create_blob(tiny_model_path)
    assert digest == "sha256:" + hashlib.sha256(tiny_model_path.read_bytes()).hexdigest()

    statuses = [
        cast(str, p.status)  # the ollama client types every response field Optional
        for p in client.create(
            model="tiny",
            files={"model.gguf": digest},
            template=TEMPLATE,
            system="You are terse.",
            parameters={"temperature": 0.2, "stop": ["<|im_end|>", "###"], "num_ctx": 1024},
            license="MIT",
            messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            stream=True,
        )
    ]
    assert statuses[0] == "parsing GGUF"
    assert any(s.startswith("creating new layer sha256:") for s in statuses)
    assert statuses[-2:] == ["writing manifest", "success"]

    models = client.list().models
    assert [m.model for m in models] == ["tiny:latest"]
    entry = models[0]
    assert entry.details is not None and entry.size is not None
    assert entry.details.format == "gguf"
    assert entry.details.family == "llama"
    assert entry.details.quantization_level == "F32"
    assert entry.size > tiny_model_path.stat().st_size
    manifest_file = live_server.models / "manifests/registry.ollama.ai/library/tiny/latest"
    assert entry.digest == hashlib.sha256(manifest_file.read_bytes()).hexdigest()

    shown = client.show("tiny")
    assert shown.template == TEMPLATE
    assert shown.details is not None and shown.modelinfo is not None and shown.parameters is not None
    assert shown.capabilities is not None and shown.modelfile is not None
    assert shown.details.family == "llama"
    assert shown.modelinfo["general.architecture"] == "llama"
    assert isinstance(shown.modelinfo["general.parameter_count"], int)
    assert "general.name" not in shown.modelinfo and "tokenizer.chat_template" not in shown.modelinfo
    assert shown.modelinfo["tokenizer.ggml.tokens"] == []  # long arrays elided unless verbose
    lines = sorted(" ".join(line.split()) for line in shown.parameters.splitlines())
    assert lines == ["num_ctx 1024", 'stop "###"', 'stop "<|im_end|>"', "temperature 0.2"]
    assert "completion" in shown.capabilities
    assert shown.license == "MIT"
    assert "FROM " in shown.modelfile and "SYSTEM You are terse." in shown.modelfile
    raw = httpx.post(live_server.url + "/api/show", json={"model": "tiny", "verbose": True}).json()
    assert len(raw["model_info"]["tokenizer.ggml.tokens"]) > 5
    assert raw["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert raw["system"] == "You are terse."
    assert raw["tensors"][0].keys() == {"name", "type", "shape"}

    assert client.copy("tiny", "Copy/Of-Tiny:v1").status == "success"
    copied = {m.model: m.digest for m in client.list().models}
    assert copied["Copy/Of-Tiny:v1"] == copied["tiny:latest"]

    assert client.delete("tiny").status == "success"
    assert [m.model for m in client.list().models] == ["Copy/Of-Tiny:v1"]
    # the blobs are still referenced by the copy
    assert client.show("copy/of-tiny:V1").template == TEMPLATE
    client.delete("copy/of-tiny:v1")
    assert client.list().models == []
    blobs = list((live_server.models / "blobs").iterdir())
    assert blobs == [], "deleting the last model removes its blobs"


def test_show_modelfile_round_trips(live_server: LiveServer, tiny_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    create_tiny(
        client, "src", tiny_model_path, template=TEMPLATE, system="Be brief.", parameters={"top_k": 7, "stop": ["a b "]}
    )
    modelfile = client.show("src").modelfile
    assert modelfile is not None
    # Sent back as it is, its FROM is a path on the server's disk, which the server never opens
    # (Ollama ignores the field); an old client sends the uploaded blob's digest instead.
    from_line = next(line for line in modelfile.splitlines() if line.startswith("FROM /"))
    r = httpx.post(live_server.url + "/api/create", json={"model": "dst", "modelfile": modelfile, "stream": False})
    assert r.status_code == 400 and "the server does not read files from its disk" in r.json()["error"], r.text
    blob = "@" + from_line.rsplit("/", 1)[1]
    modelfile = modelfile.replace(from_line, f"FROM {blob}")
    r = httpx.post(live_server.url + "/api/create", json={"model": "dst", "modelfile": modelfile, "stream": False})
    assert r.status_code == 200, r.text
    a = httpx.post(live_server.url + "/api/show", json={"model": "src"}).json()
    b = httpx.post(live_server.url + "/api/show", json={"model": "dst"}).json()
    assert (a["template"], a["system"], a["parameters"]) == (b["template"], b["system"], b["parameters"])
    assert a["system"] == "Be brief." and 'stop                           "a b "' in a["parameters"]
    assert {m.model: m.digest for m in client.list().models}.keys() == {"src:latest", "dst:latest"}


def test_create_from_existing_model_merges(live_server: LiveServer, tiny_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    create_tiny(client, "base", tiny_model_path, template=TEMPLATE, parameters={"top_k": 7, "seed": 1})
    out = client.create(model="derived", from_="base", system="New system.", parameters={"seed": 42}, stream=False)
    assert out.status == "success"
    shown = client.show("derived")
    assert httpx.post(live_server.url + "/api/show", json={"model": "derived"}).json()["system"] == "New system."
    assert shown.template == TEMPLATE
    assert shown.parameters is not None and shown.details is not None
    params = {" ".join(line.split()) for line in shown.parameters.splitlines()}
    assert params == {"top_k 7", "seed 42"}
    assert shown.details.parent_model == "base:latest"


def test_create_autodetects_bundled_template(live_server: LiveServer, tiny_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    statuses = create_tiny(client, "auto", tiny_model_path)
    assert "using autodetected template chatml" in statuses
    shown = client.show("auto")
    assert shown.template is not None and shown.parameters is not None
    assert "<|im_start|>" in shown.template
    assert "<|im_end|>" in shown.parameters


def test_show_gives_a_model_without_a_template_the_default_one(
    live_server: LiveServer, tiny_model_path: Path, bert_model_path: Path, tmp_path: Path
) -> None:
    """Ollama's `GetModel` starts from `template.DefaultTemplate`: a bare GGUF shows `{{ .Prompt }}`."""
    client = ollama.Client(host=live_server.url)
    bare = write_llama_model(tmp_path / "bare.gguf", chat_template=None)
    create_tiny(client, "bare", bare)
    create_tiny(client, "bert", bert_model_path)
    create_tiny(client, "auto", tiny_model_path)  # a GGUF template that matches a bundled one
    for name in ("bare", "bert"):
        shown = client.show(name)
        assert shown.template == "{{ .Prompt }}", name
        assert shown.modelfile is not None and "\nTEMPLATE {{ .Prompt }}\n" in shown.modelfile, shown.modelfile
    assert "<|im_start|>" in (client.show("auto").template or "")
    # and it is what the model renders with
    prompt = httpx.post(
        live_server.url + "/api/generate",
        json={"model": "bare", "prompt": "say hi", "raw": False, "_debug_render_only": True},
        timeout=30,
    )
    assert prompt.status_code == 200 and prompt.json()["_debug_info"]["rendered_template"] == "say hi"


def bad(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    assert text in r.json()["error"], r.json()


def test_bad_inputs_leave_the_store_unchanged(live_server: LiveServer, tiny_model_path: Path, tmp_path: Path) -> None:
    url = live_server.url
    client = ollama.Client(host=url)
    create_tiny(client, "keep", tiny_model_path, template=TEMPLATE)
    before = sorted(p.relative_to(live_server.models) for p in live_server.models.rglob("*"))

    bad(httpx.post(url + "/api/create", content=b""), 400, "missing request body")
    bad(httpx.post(url + "/api/create", content=b"{nope"), 400, "invalid JSON")
    bad(httpx.post(url + "/api/create", content=b"[1,2]"), 400, "must be a JSON object")
    bad(httpx.post(url + "/api/show", json={"model": 5}), 400, "expected string")
    bad(httpx.post(url + "/api/show", json={}), 400, "model is required")
    bad(httpx.post(url + "/api/show", json={"model": "missing"}), 404, "model 'missing' not found")
    for name in ("../x", "a//b", "x" * 81, "bad name", "", "../../etc/passwd"):
        r = httpx.post(url + "/api/create", json={"model": name, "from": "keep"})
        bad(r, 400, "invalid model name")
    bad(
        httpx.post(url + "/api/create", json={"model": "m", "files": {"../evil.gguf": "sha256:" + "0" * 64}}),
        400,
        "file path must be relative",
    )
    bad(
        httpx.post(url + "/api/create", json={"model": "m", "files": {"/abs.gguf": "sha256:" + "0" * 64}}),
        400,
        "file path must be relative",
    )
    bad(httpx.post(url + "/api/create", json={"model": "m", "files": {"a.gguf": ""}}), 400, "invalid digest format")
    bad(
        httpx.post(url + "/api/create", json={"model": "m", "files": {"a.gguf": "sha256:../../x"}}),
        400,
        "invalid digest format",
    )
    bad(httpx.post(url + "/api/create", json={"model": "m"}), 400, "neither 'from' or 'files' was specified")
    bad(
        httpx.post(url + "/api/create", json={"model": "m", "from": "keep", "parameters": {"num_ctx": "big"}}),
        400,
        'option "num_ctx" must be of type int',
    )
    bad(
        httpx.post(url + "/api/create", json={"model": "m", "from": "keep", "template": "{{ .Prompt"}),
        400,
        "template error",
    )
    # A missing base model is pulled first, as Ollama does; from a registry that is not there, that fails.
    r = httpx.post(
        url + "/api/create", json={"model": "m", "from": "127.0.0.1:9/library/nope", "stream": False}, timeout=60
    )
    assert r.status_code >= 400 and r.json()["error"], r.text
    bad(
        httpx.post(url + "/api/create", json={"model": "m", "modelfile": "FROM keep\nBOGUS x\n"}),
        400,
        "(line 2): command must be one of",
    )
    bad(
        httpx.post(url + "/api/create", json={"model": "m", "modelfile": "FROM keep\nPARAMETER foo 1\n"}),
        400,
        "unknown parameter 'foo'",
    )

    # digest mismatch on upload
    data = b"not what the digest says"
    bad(httpx.post(url + "/api/blobs/sha256:" + "a" * 64, content=data), 400, "digest mismatch")
    bad(httpx.post(url + "/api/blobs/sha256:short", content=data), 400, "invalid digest format")
    bad(httpx.post(url + "/api/blobs/sha256-" + "g" * 64, content=data), 400, "invalid digest format")
    r = httpx.post(url + "/api/blobs/..%2F..%2Fetc", content=data)  # never reaches a handler
    assert r.status_code == 404
    r = httpx.head(url + "/api/blobs/sha256:" + "b" * 64)
    assert r.status_code == 404

    # a non-GGUF and a truncated GGUF in files
    for payload in (b"just some text, definitely not a model" * 10, tiny_model_path.read_bytes()[:300_000]):
        digest = "sha256:" + hashlib.sha256(payload).hexdigest()
        assert httpx.post(url + f"/api/blobs/{digest}", content=payload).status_code == 201
        r = httpx.post(url + "/api/create", json={"model": "broken", "files": {"model.gguf": digest}, "stream": False})
        assert r.status_code == 400, r.text
        assert "GGUF" in r.json()["error"]
        httpx.post(url + f"/api/blobs/{digest}", content=payload)  # idempotent

    manifests = sorted(p for p in live_server.models.rglob("*") if "manifests" in p.parts and p.is_file())
    for onto_itself in ("keep:latest", "KEEP", "Keep:LATEST"):  # Ollama's case-shuffled copy: 200, one manifest
        r = httpx.post(url + "/api/copy", json={"source": "keep", "destination": onto_itself})
        assert r.status_code == 200 and r.content == b"", r.text
    assert sorted(p for p in live_server.models.rglob("*") if "manifests" in p.parts and p.is_file()) == manifests
    bad(httpx.post(url + "/api/copy", json={"source": "../x", "destination": "y"}), 400, 'source "../x" is invalid')
    bad(
        httpx.post(url + "/api/copy", json={"source": "keep", "destination": "a//b"}),
        400,
        'destination "a//b" is invalid',
    )
    bad(httpx.post(url + "/api/copy", json={"source": "ghost", "destination": "y"}), 404, 'model "ghost" not found')
    bad(httpx.request("DELETE", url + "/api/delete", json={"model": "ghost"}), 404, "model 'ghost' not found")
    bad(httpx.request("DELETE", url + "/api/delete", json={"model": "a/../b"}), 400, 'name "a/../b" is invalid')

    after = sorted(p.relative_to(live_server.models) for p in live_server.models.rglob("*"))
    uploaded = [p for p in after if p not in before]
    assert all(p.parent.name == "blobs" for p in uploaded), uploaded  # only the uploaded blobs are new
    assert [m.model for m in client.list().models] == ["keep:latest"]


def test_ollama_client_raises_typed_errors(live_server: LiveServer) -> None:
    client = ollama.Client(host=live_server.url)
    with pytest.raises(ollama.ResponseError) as info:
        client.show("nothing-here")
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("nothing-here")
    assert info.value.status_code == 404


def test_routes_and_plain_errors(live_server: LiveServer) -> None:
    url = live_server.url
    r = httpx.get(url + "/")
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "Ollama is running", "text/plain; charset=utf-8")
    assert httpx.head(url + "/").status_code == 200
    r = httpx.get(url + "/api/version")
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json() == {"version": OLLAMA_API_VERSION}
    assert httpx.get(url + "/api/pollama/version").json() == {"version": __version__, "ollama_api": OLLAMA_API_VERSION}
    assert httpx.get(url + "/api/tags").json() == {"models": []}
    assert httpx.head(url + "/api/tags").status_code == 200
    assert httpx.get(url + "/api/ps").json() == {"models": []}
    assert httpx.get(url + "/api/status").json() == {"cloud": {"disabled": True, "source": "none"}}
    r = httpx.get(url + "/api/nope")
    assert (r.status_code, r.text) == (404, "404 page not found")
    r = httpx.get(url + "/api/show")
    assert (r.status_code, r.text) == (405, "405 method not allowed")


async def test_status_names_the_environment_when_it_disables_cloud(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.app import create_app
    from server.config import load_config

    monkeypatch.setenv("OLLAMA_NO_CLOUD", "1")
    app = create_app(load_config(settings={}))
    async with app.test_app() as test_app:
        r = await test_app.test_client().get("/api/status")
        assert await r.get_json() == {"cloud": {"disabled": True, "source": "env"}}


def test_json_body_size_limit(models_dir: Path) -> None:
    server = LiveServer(models_dir, env={}).start()
    try:
        huge = b'{"model":"' + b"x" * (65 * 1024 * 1024) + b'"}'
        r = httpx.post(server.url + "/api/show", content=huge, timeout=60)
        assert r.status_code == 413
        assert "too large" in r.json()["error"]
        assert httpx.get(server.url + "/").status_code == 200
    finally:
        server.stop()


def test_cors_and_host_checks(live_server: LiveServer) -> None:
    url = live_server.url
    r = httpx.get(url + "/api/tags", headers={"Origin": "http://localhost:3000"})
    assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "Origin" in r.headers["vary"]
    r = httpx.get(url + "/api/tags", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.text == ""
    r = httpx.options(
        url + "/v1/chat/completions",
        headers={
            "Origin": "vscode-webview://abc",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-stainless-os",
        },
    )
    assert r.status_code == 204
    assert "X-Stainless-Os" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-max-age"] == "43200"
    r = httpx.options(
        url + "/v1/messages",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "anthropic-version,x-api-key,anthropic-dangerous-direct-browser-access",
        },
    )
    allowed = {h.lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert (
        r.status_code == 204
        and {"anthropic-version", "x-api-key", "anthropic-dangerous-direct-browser-access"} <= allowed
    )
    assert r.headers["access-control-allow-methods"] == "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
    # same-host origin is not CORS
    assert httpx.get(url + "/api/tags", headers={"Origin": url}).status_code == 200
    # DNS rebinding: a foreign Host header is refused on a loopback-bound server
    assert httpx.get(url + "/api/tags", headers={"Host": "evil.example"}).status_code == 403
    for host in ("localhost:11434", "foo.localhost", "box.local", "svc.internal", "10.0.0.5", "[::1]:80"):
        assert httpx.get(url + "/api/tags", headers={"Host": host}).status_code == 200, host


def test_extra_origins_and_wildcard(models_dir: Path) -> None:
    server = LiveServer(models_dir, env={"OLLAMA_ORIGINS": "chrome-extension://*,https://app.example"}).start()
    try:
        for origin in ("chrome-extension://abcdef", "https://app.example"):
            r = httpx.get(server.url + "/api/tags", headers={"Origin": origin})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        assert httpx.get(server.url + "/api/tags", headers={"Origin": "moz-extension://x"}).status_code == 403
    finally:
        server.stop()
    server = LiveServer(models_dir, env={"OLLAMA_ORIGINS": "*"}).start()
    try:
        r = httpx.get(server.url + "/api/tags", headers={"Origin": "https://anything.example"})
        assert r.headers["access-control-allow-origin"] == "*"
    finally:
        server.stop()


def test_port_in_use_gives_a_clear_message(live_server: LiveServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    second = LiveServer(tmp_path / "other", port=live_server.port)
    env = second.env()
    proc = subprocess.run([sys.executable, "-m", "app", "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "is another Ollama or pollama server running?" in proc.stderr


def test_invalid_env_stops_startup(tmp_path: Path) -> None:
    import subprocess
    import sys

    server = LiveServer(tmp_path / "m", env={"OLLAMA_NUM_PARALLEL": "lots"})
    proc = subprocess.run(
        [sys.executable, "-m", "app", "serve"], env=server.env(), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert "OLLAMA_NUM_PARALLEL" in proc.stderr


def test_streaming_create_is_ndjson(live_server: LiveServer, tiny_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    digest = client.create_blob(tiny_model_path)
    with httpx.stream(
        "POST", live_server.url + "/api/create", json={"model": "s", "files": {"m.gguf": digest}, "template": TEMPLATE}
    ) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1] == {"status": "success"}


def test_reuploading_an_existing_blob_keeps_the_client_working(live_server: LiveServer, tiny_model_path: Path) -> None:
    """The server answers 200 without reading the body; the connection must not be poisoned."""
    data = tiny_model_path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=live_server.url) as c:
        assert c.post(f"/api/blobs/{digest}", content=data).status_code == 201
        for _ in range(5):
            assert c.post(f"/api/blobs/{digest}", content=data).status_code == 200
            assert c.get("/api/tags").status_code == 200
    client = ollama.Client(host=live_server.url)
    for _ in range(3):
        assert client.create_blob(tiny_model_path) == digest
        assert client.list().models == []
