"""The Developer view's endpoints, against a live server: the last requests and the log tail."""

from __future__ import annotations

from pathlib import Path

import httpx
import ollama

from tests.support.live_server import LiveServer

TEMPLATE = "{{ .Prompt }}"


def _requests(url: str, **params: object) -> dict:
    r = httpx.get(url + "/api/pollama/requests", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _logs(url: str, **params: object) -> dict:
    r = httpx.get(url + "/api/pollama/logs", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_generation_shows_with_its_model_status_and_tokens(live_server: LiveServer, tiny_model_path: Path) -> None:
    client = ollama.Client(host=live_server.url)
    digest = client.create_blob(tiny_model_path)
    client.create(model="tiny", files={"m.gguf": digest}, template=TEMPLATE)
    before = _requests(live_server.url)["last"]
    answer = client.generate(model="tiny", prompt="hello there", options={"num_predict": 5, "temperature": 0})
    streamed = list(
        client.generate(model="tiny", prompt="again", options={"num_predict": 3, "temperature": 0}, stream=True)
    )
    new = _requests(live_server.url, since=before)["requests"]
    generations = [r for r in new if r["route"] == "/api/generate"]
    assert [(r["method"], r["model"], r["status"]) for r in generations] == [("POST", "tiny", 200)] * 2
    plain, stream = generations
    assert plain["prompt_tokens"] == answer.prompt_eval_count > 0
    assert plain["eval_tokens"] == answer.eval_count == 5
    # a streamed answer is recorded at its end, with the counts of its last line
    assert stream["eval_tokens"] == streamed[-1].eval_count == 3
    assert stream["duration_ms"] > 0 and plain["seq"] < stream["seq"]
    # the compatible APIs run the same service: an OpenAI chat completion has its usage too
    import openai

    completion = openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused").chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert completion.usage is not None
    compat = [r for r in _requests(live_server.url)["requests"] if r["route"] == "/v1/chat/completions"]
    assert [(r["model"], r["prompt_tokens"], r["eval_tokens"]) for r in compat] == [
        ("tiny", completion.usage.prompt_tokens, completion.usage.completion_tokens)
    ]
    # requests that ran no model have none
    create = next(r for r in _requests(live_server.url)["requests"] if r["route"] == "/api/create")
    assert create["prompt_tokens"] is None and create["eval_tokens"] is None and create["model"] == ""


def test_a_404_shows_and_polls_of_the_view_do_not(live_server: LiveServer) -> None:
    r = httpx.post(live_server.url + "/api/chat", json={"model": "ghost", "messages": []})
    assert r.status_code == 404
    assert httpx.get(live_server.url + "/no/such/route").status_code == 404
    _logs(live_server.url)
    body = _requests(live_server.url)
    listed = [(r["route"], r["status"], r["model"]) for r in body["requests"]]
    assert ("/api/chat", 404, "ghost") in listed
    assert ("/no/such/route", 404, "") in listed
    assert not any(route.startswith("/api/pollama/") and route.endswith(("requests", "logs")) for route, *_ in listed)
    assert body["last"] == body["requests"][-1]["seq"]
    assert _requests(live_server.url, since=body["last"])["requests"] == []


def test_a_log_line_shows_and_since_gives_only_what_is_new(live_server: LiveServer) -> None:
    httpx.get(live_server.url + "/api/tags")
    first = _logs(live_server.url)
    lines = [e for e in first["logs"] if e["logger"] == "pollama.request" and "GET /api/tags 200" in e["message"]]
    assert lines and lines[-1]["level"] == "INFO"
    assert first["last"] >= lines[-1]["seq"]
    # the tail's own polls are not logged into it
    assert not any("/api/pollama/logs" in e["message"] for e in first["logs"])
    httpx.get(live_server.url + "/api/version")
    new = _logs(live_server.url, since=first["last"])["logs"]
    assert [e["message"].split(" ")[:3] for e in new] == [["GET", "/api/version", "200"]]
    # a level keeps that level and above: no request line is a warning
    assert not any(e["logger"] == "pollama.request" for e in _logs(live_server.url, level="WARNING")["logs"])


def test_bad_parameters_are_400(live_server: LiveServer) -> None:
    for path, params, words in (
        ("/api/pollama/logs", {"since": "x"}, "since must be a whole number"),
        ("/api/pollama/logs", {"since": "-1"}, "since must be 0 or more"),
        ("/api/pollama/logs", {"level": "loud"}, "level must be one of debug, info, warning, error"),
        ("/api/pollama/requests", {"since": "1.5"}, "since must be a whole number"),
    ):
        r = httpx.get(live_server.url + path, params=params)
        assert r.status_code == 400, (path, params)
        assert words in r.json()["error"]
