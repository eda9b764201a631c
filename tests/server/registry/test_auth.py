"""Auth flows against mock registries (no sockets): Ollama's ed25519 challenge (`server/auth.go` `getAuthorizationToken`), Docker's token and Basic."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from nacl.exceptions import BadSignatureError

from server.registry import challenge as ch
from server.registry import keys
from server.registry.auth import Authenticator, plan_attempts
from server.registry.credentials import Credentials, from_docker_config, lookup
from server.registry.errors import Unauthorized

HEADER = re.compile(r"^(?P<pub>[A-Za-z0-9+/]+=*):(?P<sig>[A-Za-z0-9+/]+=*)$")


def registry_401(url: str, challenge: str) -> httpx.Response:
    return httpx.Response(401, headers={"WWW-Authenticate": challenge}, request=httpx.Request("GET", url))


def test_key_is_created_in_openssh_format(tmp_path: Path) -> None:
    pair = keys.ensure(tmp_path / ".ollama")
    private = (tmp_path / ".ollama" / "id_ed25519").read_bytes()
    public = (tmp_path / ".ollama" / "id_ed25519.pub").read_text()
    assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert re.fullmatch(r"ssh-ed25519 [A-Za-z0-9+/]+=*\n", public)
    assert stat.S_IMODE(os.stat(tmp_path / ".ollama" / "id_ed25519").st_mode) == 0o600
    assert public.strip() == pair.public_line
    assert keys.ensure(tmp_path / ".ollama").public_line == pair.public_line  # loaded, not replaced


def test_ollama_challenge_signature_verifies_and_header_is_exact(tmp_path: Path) -> None:
    pair = keys.ensure(tmp_path / ".ollama")
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v2/token"
        seen["url"] = str(request.url)
        seen["auth"] = request.headers["authorization"]
        return httpx.Response(200, json={"token": "tok-123"})

    auth = Authenticator(home=tmp_path, environ={}, key_source=lambda: pair)
    challenge = 'Bearer realm="https://registry.ollama.ai/v2/token",service="registry.ollama.ai",scope="repository:library/x:pull"'
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        before = int(time.time())
        header = auth.answer(
            client, registry_401("https://registry.ollama.ai/v2/library/x/manifests/latest", challenge)
        )
    assert header == "Bearer tok-123"
    assert auth.header_for("registry.ollama.ai") == "Bearer tok-123"

    m = HEADER.match(seen["auth"])
    assert m, seen["auth"]
    assert m["pub"] == pair.public_line.split(" ")[1]
    query = parse_qs(urlsplit(seen["url"]).query)
    assert query["service"] == ["registry.ollama.ai"] and query["scope"] == ["repository:library/x:pull"]
    assert before <= int(query["ts"][0]) <= int(time.time())
    nonce = query["nonce"][0]
    assert "=" not in nonce and len(base64.urlsafe_b64decode(nonce + "==")) == 16
    assert list(parse_qs(urlsplit(seen["url"]).query)) == sorted(query)  # Go's sorted encoding
    # The signature covers "GET,<url>,<base64(hex(sha256("")))>" and verifies with the public key.
    public = keys.public_key_from_blob(m["pub"])
    payload = ch.signing_payload("GET", seen["url"])
    public.verify(payload, base64.b64decode(m["sig"]))
    with pytest.raises(BadSignatureError):
        public.verify(payload + b"x", base64.b64decode(m["sig"]))


def test_signature_is_never_sent_to_another_host(tmp_path: Path) -> None:
    pair = keys.ensure(tmp_path / ".ollama")
    c = ch.parse('Bearer realm="https://evil.example/token",service="s"')
    assert c is not None
    attempts = plan_attempts(c, "https://registry.ollama.ai/v2/x", None, pair.authorization, ts=1, nonce=b"n" * 16)
    assert [a.name for a in attempts] == ["anonymous"]
    attempts = plan_attempts(
        c, "https://evil.example/v2/x", Credentials("u", "p"), pair.authorization, ts=1, nonce=b"n" * 16
    )
    assert [a.name for a in attempts] == ["basic", "ollama", "anonymous"]
    assert attempts[0].headers == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}


def test_docker_token_flow_with_basic_credentials(tmp_path: Path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.headers.get("authorization") != "Basic " + base64.b64encode(b"me:pw").decode():
            return httpx.Response(401)
        return httpx.Response(200, json={"access_token": "docker-tok"})

    auth = Authenticator(
        home=tmp_path,
        environ={"POLLAMA_REGISTRY_USERNAME": "me", "POLLAMA_REGISTRY_PASSWORD": "pw"},
        key_source=lambda: keys.ensure(tmp_path / ".ollama"),
    )
    challenge = 'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"'
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        header = auth.answer(client, registry_401("https://reg.example/v2/a/b/manifests/t", challenge))
    assert header == "Bearer docker-tok"
    assert parse_qs(calls[0].url.query.decode()) == {"service": ["reg"], "scope": ["repository:a/b:pull"]}


def test_no_credentials_is_a_clear_unauthorized(tmp_path: Path) -> None:
    auth = Authenticator(home=tmp_path, environ={}, key_source=lambda: keys.ensure(tmp_path / ".ollama"))
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(401))) as client:
        with pytest.raises(Unauthorized, match=r"unauthorized.*POLLAMA_REGISTRY_USERNAME"):
            auth.answer(client, registry_401("https://reg.example/v2/a/b/manifests/t", 'Basic realm="x"'))
        with pytest.raises(Unauthorized, match=r"unauthorized: access denied by reg.example.*docker login"):
            auth.answer(
                client,
                registry_401("https://reg.example/v2/a/b/manifests/t", 'Bearer realm="https://reg.example/token"'),
            )


def test_docker_config_auths(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"alice:pa:ss").decode()
    config = {
        "auths": {"https://ghcr.io/v1/": {"auth": encoded}, "localhost:5000": {"username": "bob", "password": "x"}}
    }
    assert from_docker_config(config, "ghcr.io") == Credentials("alice", "pa:ss")
    assert from_docker_config(config, "localhost:5000") == Credentials("bob", "x")
    assert from_docker_config(config, "other") is None
    assert from_docker_config({"auths": {"ghcr.io": {"auth": "!!!"}}}, "ghcr.io") is None
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps(config))
    env = {"POLLAMA_REGISTRY_USERNAME": "env", "POLLAMA_REGISTRY_PASSWORD": "pw"}
    assert lookup("ghcr.io", home=tmp_path, environ=env) == Credentials("alice", "pa:ss")
    assert lookup("my.registry:443", home=tmp_path, environ=env) == Credentials("env", "pw")
    # Key-authenticated registries never get a password meant for a private one.
    assert lookup("registry.ollama.ai", home=tmp_path, environ=env) is None
    assert lookup("hf.co", home=tmp_path, environ=env) is None


def test_public_key_blob_round_trip(tmp_path: Path) -> None:
    pair = keys.ensure(tmp_path)
    public = keys.public_key_from_blob(pair.public_blob_b64)
    assert bytes(public) == bytes(pair.private.verify_key) and len(bytes(public)) == 32
