"""API keys (`POLLAMA_API_KEYS`): the official `ollama`, `openai` and `anthropic` clients against a
live server with keys, each refused (401 in its own API's shape) without one and served with one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

from server.api.api_keys import ApiKeys, presented_keys
from server.config import ConfigError, load_config
from tests.server.api.test_openai_api import CHATML, create
from tests.support.live_server import REPO, LiveServer

KEY = "pk-test-4f9c1d2e"
SECOND_KEY = "pk-second-77aa"
WRONG = "pk-wrong-0000"
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("api-keys") / "models"
    srv = LiveServer(models, env={"POLLAMA_API_KEYS": f"{KEY}, {SECOND_KEY}", "OLLAMA_KEEP_ALIVE": "5m"}).start()
    try:
        create(
            ollama.Client(host=srv.url, headers={"Authorization": f"Bearer {KEY}"}),
            "tiny",
            tiny_model_path,
            template=CHATML,
        )
        yield srv
    finally:
        srv.stop()


# ---- the check itself --------------------------------------------------------------------------


def test_keys_match_in_full_and_any_presented_one_counts() -> None:
    keys = ApiKeys.of([KEY, SECOND_KEY])
    assert keys.accepts([KEY]) and keys.accepts([SECOND_KEY]) and keys.accepts([WRONG, KEY])
    assert (
        not keys.accepts([KEY[:-1]])
        and not keys.accepts([KEY + "x"])
        and not keys.accepts([])
        and not keys.accepts([""])
    )
    assert not keys.accepts(["pk-tést"])  # not ASCII: compared as bytes, never an error
    assert KEY not in repr(keys) and "2 keys" in repr(keys)


def test_credentials_come_from_bearer_or_x_api_key() -> None:
    assert presented_keys({"Authorization": f"Bearer {KEY}"}) == [KEY]
    assert presented_keys({"Authorization": f"bearer  {KEY} "}) == [KEY]
    assert presented_keys({"X-Api-Key": KEY}) == [KEY]
    assert presented_keys({"Authorization": f"Basic {KEY}"}) == []
    assert presented_keys({"Authorization": "Bearer "}) == []


def test_config_reads_keys_from_the_value_or_a_file(tmp_path: Path) -> None:
    assert load_config({"POLLAMA_API_KEYS": f" {KEY},{SECOND_KEY},{KEY} "}, {}).api_keys == (KEY, SECOND_KEY)
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"# the team's keys\n{KEY}\n\n  {SECOND_KEY}  \n", encoding="utf-8")
    config = load_config({"POLLAMA_API_KEYS": str(keyfile)}, {})
    assert config.api_keys == (KEY, SECOND_KEY)
    assert KEY not in repr(config)
    assert load_config({}, {}).api_keys == ()
    with pytest.raises(ConfigError, match=r"POLLAMA_API_KEYS: cannot read the key file .*missing\.txt"):
        load_config({"POLLAMA_API_KEYS": str(tmp_path / "missing.txt")}, {})
    (tmp_path / "empty.txt").write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no key"):
        load_config({"POLLAMA_API_KEYS": str(tmp_path / "empty.txt")}, {})
    with pytest.raises(ConfigError, match="key 2 in the value") as bad:
        load_config({"POLLAMA_API_KEYS": f"{KEY},two words"}, {})
    assert "two words" not in str(bad.value)


def test_a_missing_key_file_stops_serve_with_a_message(tmp_path: Path) -> None:
    env = {"POLLAMA_API_KEYS": str(tmp_path / "nope" / "keys"), "OLLAMA_MODELS": str(tmp_path / "models")}
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve"], cwd=REPO, env={**_clean_env(), **env}, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    assert "Error: POLLAMA_API_KEYS: cannot read the key file" in done.stderr.decode()


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "POLLAMA_"))}


# ---- the three clients ----------------------------------------------------------------------


def test_ollama_client_without_key_is_refused_and_with_it_served(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=server.url).list()
    assert refused.value.status_code == 401 and "missing API key" in refused.value.error
    with pytest.raises(ollama.ResponseError) as wrong:
        ollama.Client(host=server.url, headers={"Authorization": f"Bearer {WRONG}"}).chat(model="tiny", messages=[])
    assert wrong.value.status_code == 401 and wrong.value.error == "unauthorized: invalid API key"
    monkeypatch.setenv("OLLAMA_API_KEY", SECOND_KEY)  # what ollama-python sends as a Bearer token
    client = ollama.Client(host=server.url)
    assert [m.model for m in client.list().models] == ["tiny:latest"]
    reply = client.chat(
        model="tiny", messages=[{"role": "user", "content": "hi"}], options={**GREEDY, "num_predict": 4}
    )
    assert reply.done and reply.eval_count
    chunks = list(client.generate(model="tiny", prompt="hi", options={**GREEDY, "num_predict": 3}, stream=True))
    assert chunks[-1].done


def test_openai_client_without_key_is_refused_and_with_it_served(server: LiveServer) -> None:
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key=WRONG, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        bad.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 401
    assert refused.value.body == {
        "message": "invalid API key",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    good = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in good.models.list()] == ["tiny:latest"]
    completion = good.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
    )
    assert completion.choices[0].finish_reason in ("length", "stop")
    stream = good.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0, stream=True
    )
    assert any(chunk.choices and chunk.choices[0].finish_reason for chunk in stream)


def test_anthropic_client_without_key_is_refused_and_with_it_served(server: LiveServer) -> None:
    bad = anthropic.Anthropic(base_url=server.url, api_key=WRONG, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        bad.messages.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 401
    body = refused.value.body
    assert isinstance(body, dict) and body["error"] == {"type": "authentication_error", "message": "invalid API key"}
    good = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)  # sends x-api-key
    message = good.messages.create(
        model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}], extra_body=GREEDY
    )
    assert message.stop_reason in ("max_tokens", "end_turn")
    bearer = anthropic.Anthropic(base_url=server.url, auth_token=SECOND_KEY, max_retries=0)  # sends Authorization
    with bearer.messages.stream(
        model="tiny", max_tokens=3, messages=[{"role": "user", "content": "hi"}], extra_body=GREEDY
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason in ("max_tokens", "end_turn")


# ---- what stays open, and what is never written down -------------------------------------------


def test_liveness_routes_and_preflights_need_no_key(server: LiveServer) -> None:
    assert httpx.get(server.url + "/").text == "Ollama is running"
    assert httpx.head(server.url + "/").status_code == 200
    assert httpx.get(server.url + "/api/version").json()["version"]
    preflight = httpx.options(
        server.url + "/api/chat",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 204 and "Authorization" in preflight.headers["access-control-allow-headers"]
    for method, path in (("GET", "/api/ps"), ("POST", "/api/show"), ("GET", "/metrics"), ("GET", "/no/such/route")):
        r = httpx.request(method, server.url + path, json={} if method == "POST" else None)
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json() == {"error": "unauthorized: missing API key: send it as 'Authorization: Bearer <key>'"}
    r = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and "pollama_requests_total" in r.text


def test_keys_never_reach_the_log(server: LiveServer) -> None:
    httpx.get(server.url + "/api/tags", headers={"Authorization": f"Bearer {WRONG}"})
    httpx.get(server.url + f"/api/tags?key={WRONG}", headers={"x-api-key": KEY})
    log = server.log_path.read_text(errors="replace")
    assert "GET /api/tags 401" in log and "GET /api/tags 200" in log  # the access log has the requests …
    for secret in (KEY, SECOND_KEY, WRONG):
        assert secret not in log  # … and not one key, right or wrong, nor the query string
